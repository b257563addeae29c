"""Where notices go: a webhook (a Slack-compatible JSON body `{"text": ...}`) and e-mail over SMTP.

Each channel describes itself without its secrets (the webhook's path and query, which often hold
its token; the SMTP password), and every error it reports is redacted of them.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import unquote, urlsplit

import requests
from tenacity import Retrying, stop_after_attempt, wait_exponential

from xau_pipeline.redact import MASK, one_line
from xau_pipeline.settings import SMTP_SCHEMES, Settings, smtp_parts

TIMEOUT_SECONDS = 10.0
# Tries per notice and channel in one tick, waiting 1 s, then 2 s, between them; a notice still not
# taken is tried again at the next tick.
ATTEMPTS = 3
BACKOFF_SECONDS = 1.0


@dataclass(frozen=True)
class Notice:
    subject: str
    text: str


class Channel(Protocol):
    name: str

    def describe(self) -> str: ...

    def secrets(self) -> tuple[str, ...]: ...

    def send(self, notice: Notice) -> None: ...


class WebhookChannel:
    """POSTs `{"text": subject + text}` (Slack's incoming webhooks, Mattermost, Teams workflows, ...)."""

    name = "webhook"

    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS):
        self.url, self.timeout = url, timeout
        self._parts = urlsplit(url)

    def describe(self) -> str:
        parts = self._parts
        port = f":{parts.port}" if parts.port else ""
        hidden = f"/{MASK}" if parts.path.strip("/") or parts.query else ""
        return f"{parts.scheme}://{parts.hostname}{port}{hidden}"

    def secrets(self) -> tuple[str, ...]:
        parts = self._parts
        found = [self.url, parts.query, parts.password or ""]
        if parts.path.strip("/"):
            found += [parts.path, parts.path.strip("/")]
        return tuple(s for s in found if s)

    def send(self, notice: Notice) -> None:
        response = requests.post(
            self.url,
            json={"text": f"{notice.subject}\n{notice.text}"},
            timeout=self.timeout,
            headers={"User-Agent": "xau-pipeline alerts"},
        )
        response.close()
        if response.status_code >= 300:
            raise RuntimeError(f"HTTP {response.status_code} from {self.describe()}")


class EmailChannel:
    """Sends each notice as a plain-text e-mail: smtps:// over TLS, smtp:// with STARTTLS when the
    server offers it, logging in when the URL names a user (never unencrypted but on loopback)."""

    name = "email"

    def __init__(self, url: str, recipients: Sequence[str], sender: str, timeout: float = TIMEOUT_SECONDS):
        self.url, self.recipients, self.sender, self.timeout = url, tuple(recipients), sender, timeout
        self._parts = smtp_parts(url)

    @property
    def port(self) -> int:
        return self._parts.port or SMTP_SCHEMES[self._parts.scheme]

    def describe(self) -> str:
        return f"{self._parts.scheme}://{self._parts.hostname}:{self.port} to {', '.join(self.recipients)}"

    def secrets(self) -> tuple[str, ...]:
        password = self._parts.password or ""
        return tuple(s for s in (self.url, password, unquote(password)) if s)

    def send(self, notice: Notice) -> None:
        message = EmailMessage()
        message["Subject"] = notice.subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message.set_content(notice.text)
        host = self._parts.hostname or ""
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self._parts.scheme == "smtps":
            smtp = smtplib.SMTP_SSL(host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, self.port, timeout=self.timeout)
        with smtp:
            smtp.ehlo()
            encrypted = self._parts.scheme == "smtps"
            if not encrypted and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                encrypted = True
            if self._parts.username and not encrypted and not is_loopback(host):
                raise RuntimeError(
                    f"{host} offers no STARTTLS: the password is not sent unencrypted (use smtps:// or a server "
                    "offering STARTTLS)"
                )
            if self._parts.username:
                smtp.login(unquote(self._parts.username), unquote(self._parts.password or ""))
            smtp.send_message(message)


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine (a password may cross a loopback connection unencrypted)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configured_channels(settings: Settings) -> list[Channel]:
    """The channels the settings turn on (none: alerts are off)."""
    channels: list[Channel] = []
    if settings.alert_webhook_url:
        channels.append(WebhookChannel(settings.alert_webhook_url))
    if settings.alert_smtp_url and settings.alert_email_from:
        channels.append(EmailChannel(settings.alert_smtp_url, settings.alert_email_to, settings.alert_email_from))
    return channels


def deliver(
    channel: Channel,
    notice: Notice,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF_SECONDS,
    secrets: Sequence[str | None] = (),
) -> str | None:
    """Send `notice`, retrying with exponential backoff; None when delivered, else why not (one line,
    without the channel's secrets or `secrets`)."""
    try:
        for attempt in Retrying(
            stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=backoff, max=8 * backoff), reraise=True
        ):
            with attempt:
                channel.send(notice)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        # Longest first, so a secret inside another is masked whole.
        hidden = sorted({s for s in (*channel.secrets(), *secrets) if s}, key=len, reverse=True)
        return one_line(f"{attempts} attempt(s) failed: {reason}", *hidden)
    return None
