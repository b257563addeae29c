"""Typed Twelve Data failures, each with a message a data engineer can act on, and which one an
answer stands for (`classify_error`; the evidence: ../shared/reference/twelvedata-evidence.md)."""

from __future__ import annotations

import re
from datetime import datetime

from xau_pipeline.clock import next_utc_midnight


class TwelveDataError(Exception):
    """Any failure talking to Twelve Data. Messages never contain the API key."""

    retryable = False


class AuthenticationError(TwelveDataError):
    """401: the key is missing or wrong. Retrying cannot help."""


class PlanNotAllowedError(TwelveDataError):
    """The plan behind the key does not allow this request (403, or 404 "available starting with the … plan")."""


class InvalidRequestError(TwelveDataError):
    """400: a parameter we sent was rejected — a bug on our side."""


class UnknownSymbolError(InvalidRequestError):
    """400/404: Twelve Data does not know the symbol."""


class DailyLimitError(TwelveDataError):
    """429 for the day: no more credits until the daily reset at 00:00 UTC."""

    def __init__(self, message: str, resets_at: datetime):
        super().__init__(message)
        self.resets_at = resets_at


class MinuteLimitError(TwelveDataError):
    """429 for the minute: wait for the next minute, then retry."""

    retryable = True


class TransientError(TwelveDataError):
    """5xx, HTML or malformed bodies, timeouts, dropped connections: retried with backoff."""

    retryable = True


class MalformedAnswerError(TransientError):
    """A whole answer that cannot be read (not JSON, not UTF-8, no `values`, too large): tried twice at most."""


class RedirectRefusedError(TwelveDataError):
    """A 3xx answer: redirects are never followed (the key must not travel to another host)."""


class ServiceUnavailableError(TwelveDataError):
    """Transient failures that outlasted every retry."""


# "Unknown symbol" by meaning: the symbol parameter is missing/invalid, or a symbol was not found.
UNKNOWN_SYMBOL = re.compile(
    r"\bsymbol\b[^.]*\b(?:not found|missing or invalid|is invalid|invalid|not supported|unknown|does not exist)\b"
    r"|\b(?:unknown|invalid|unsupported)\s+symbol\b"
)


# A symbol outside the key's plan: code 404 "This symbol is available starting with the Grow or
# Venture plan. …" (XAG/USD on the free plan), not 403.
PLAN_GATED = re.compile(r"\bavailable starting with (?:the )?(?P<plans>.+?) plans?\b")


def _plain(message: str) -> str:
    return message.replace("*", "").lower()


def is_unknown_symbol(message: str) -> bool:
    """Whether an error message says the symbol is unknown (not merely mentions a symbol)."""
    return bool(UNKNOWN_SYMBOL.search(_plain(message)))


def _plan_names(message: str, found: re.Match[str]) -> str:
    """The plan names as the message spells them ("Grow or Venture")."""
    plain = message.replace("*", "")
    return plain[found.start("plans") : found.end("plans")]


def classify_error(status: int, body: object, now: datetime, symbol: str = "") -> TwelveDataError | None:
    """The error an answer stands for, by the body's `code` first and then the HTTP status; None if ok."""
    code, message = status, ""
    if isinstance(body, dict) and (body.get("status") == "error" or "code" in body):
        try:
            code = int(body.get("code") or status)
        except (TypeError, ValueError):
            code = status
        message = str(body.get("message") or "")
    elif status == 200:
        return None
    lowered = _plain(message)
    if code == 401:
        return AuthenticationError(
            "Twelve Data rejected the API key (401). Check TWELVE_DATA_API_KEY; retrying cannot help."
        )
    if code in (400, 403, 404) and (gated := PLAN_GATED.search(lowered)):
        plans = _plan_names(message, gated)
        return PlanNotAllowedError(
            f"Twelve Data's plan for this key does not include {symbol or 'this symbol'}: it needs the {plans} plan "
            f"(code {code}): {message}"
        )
    if code == 403:
        return PlanNotAllowedError(f"Twelve Data refused the request for this plan (403): {message}")
    if code == 429:
        if "for the day" in lowered:
            resets_at = next_utc_midnight(now)
            return DailyLimitError(
                f"Twelve Data's daily API credits are used up: {message} "
                f"The allowance resets at {resets_at:%Y-%m-%d %H:%M} UTC.",
                resets_at,
            )
        return MinuteLimitError(f"Twelve Data's per-minute credits are used up: {message}")
    if code in (400, 404) and is_unknown_symbol(message):
        return UnknownSymbolError(f"Twelve Data does not know the symbol {symbol!r} (code {code}): {message}")
    if code >= 500:
        return TransientError(f"Twelve Data had a server error (code {code}): {message or 'no message'}")
    if 400 <= code < 500:
        hint = " (check TWELVE_DATA_BASE_URL)" if code == 404 else ""
        return InvalidRequestError(f"Twelve Data rejected the request (code {code}){hint}: {message or 'no message'}")
    return TransientError(f"Twelve Data answered with unexpected code {code}: {message}")
