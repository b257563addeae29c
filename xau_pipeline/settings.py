"""Every setting the pipeline reads from the environment, read once into one typed object.

The code location (definitions.py) and the command line each call `Settings.from_env()` once and
hand the result to what they build; nothing else reads the environment. The API key is not here:
it reaches the Twelve Data resource as a Dagster `EnvVar`, so only its name is ever shown.
Without XAU_DATABASE_URL, the command line uses the embedded database of a `make run`/`make demo`
started from this folder, and that pipeline's settings (launch_settings.py) under its own variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from email.utils import parseaddr
from urllib.parse import SplitResult, urlsplit

from xau_pipeline import launch_settings
from xau_pipeline.launch_settings import LaunchedPipeline
from xau_pipeline.market.symbols import Symbol, parse_symbols
from xau_pipeline.read_api_links import DEFAULT_HOST, DEFAULT_PORT, api_base_url, parse_port
from xau_pipeline.redact import redact, url_password
from xau_pipeline.store.credit_budget import BudgetSettings
from xau_pipeline.store.database import configured_database_url, embedded_data_dir
from xau_pipeline.twelvedata.client import DEFAULT_BASE_URL

DEFAULT_SYMBOLS = "XAU/USD"
DEFAULT_DAGSTER_RETENTION_DAYS = 14  # the default of dagster_retention_days below

# Dagster's own variables the project runs with, everywhere it runs Dagster (`make run`, deploy/,
# the tests, the benchmarks): a ranged step's events, its per-day check evaluations included, are
# written up to this many at a time. DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS is not among
# them: with it, Dagster's PostgreSQL storage never shows a failed or running partition as such.
DAGSTER_ENVIRONMENT = {"DAGSTER_EVENT_BATCH_SIZE": "1000"}


BUDGET_VARIABLES = (
    "TWELVE_DATA_CREDITS_PER_MINUTE",
    "TWELVE_DATA_CREDITS_PER_DAY",
    "XAU_SCHEDULE_CREDIT_SHARE",
    "XAU_REPAIR_CREDIT_SHARE",
)


ALERT_VARIABLES = (
    "XAU_ALERT_WEBHOOK_URL",
    "XAU_ALERT_SMTP_URL",
    "XAU_ALERT_EMAIL_TO",
    "XAU_ALERT_EMAIL_FROM",
)
# Every environment variable `Settings.from_env` reads (test_settings_variables.py checks it reads no
# other). deploy/ forwards each to the run containers, but XAU_PGDATA (LOCAL_ONLY_VARIABLES).
SETTING_VARIABLES = (
    "XAU_DATABASE_URL",
    "XAU_PGDATA",
    "TWELVE_DATA_API_KEY",
    "TWELVE_DATA_BASE_URL",
    *BUDGET_VARIABLES,
    "XAU_SYMBOLS",
    "XAU_HISTORY_START",
    "XAU_MAX_JUMP",
    "XAU_M15_TOLERANCE",
    "XAU_API_HOST",
    "XAU_API_PORT",
    "XAU_API_TOKEN",
    "XAU_CATCH_UP",
    "XAU_DAGSTER_RETENTION_DAYS",
    *ALERT_VARIABLES,
)


def apply_dagster_environment(environ: MutableMapping[str, str] = os.environ) -> None:
    """Sets each of `DAGSTER_ENVIRONMENT` the caller's environment does not set already."""
    for name, value in DAGSTER_ENVIRONMENT.items():
        environ.setdefault(name, value)


# Read only when XAU_DATABASE_URL is unset: where `make run`'s embedded PostgreSQL keeps its port.
LOCAL_ONLY_VARIABLES = ("XAU_PGDATA",)
# Those that may hold a password, key or token: deploy/ keeps them in a secret, never in plain values.
SECRET_VARIABLES = (
    "XAU_DATABASE_URL",
    "TWELVE_DATA_API_KEY",
    "XAU_API_TOKEN",
    "XAU_ALERT_WEBHOOK_URL",
    "XAU_ALERT_SMTP_URL",
)
SMTP_SCHEMES = {"smtp": 587, "smtps": 465}
# What `make run`/`make demo` shares with the command line beside it (launch_settings.py): every
# setting but the secrets, the local ones and the alert channels (their SMTP URL is a secret).
SHARED_VARIABLES = tuple(
    name for name in SETTING_VARIABLES if name not in (*SECRET_VARIABLES, *LOCAL_ONLY_VARIABLES, *ALERT_VARIABLES)
)


class SettingsError(ValueError):
    """A setting that cannot work; `variables` names the environment variables at fault."""

    def __init__(self, message: str, *variables: str):
        super().__init__(message)
        self.variables = variables


@dataclass(frozen=True)
class Settings:
    """The pipeline's configuration (see README: configuration)."""

    # May hold a password: left out of the repr (safe_url shows it masked).
    database_url: str = field(repr=False)
    # Whether XAU_DATABASE_URL is set (it may hold a password: then only its name is shown).
    database_url_from_env: bool = False
    api_base_url: str = DEFAULT_BASE_URL
    api_key_set: bool = False
    symbols: tuple[Symbol, ...] = field(default_factory=lambda: parse_symbols(DEFAULT_SYMBOLS))
    history_start: date = date(2024, 1, 1)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    max_jump: Decimal = Decimal("0.05")
    m15_tolerance: Decimal = Decimal("0.0005")
    # The read-only HTTP API (`xau-pipeline serve`): where it binds, and its bearer token.
    read_api_host: str = DEFAULT_HOST
    read_api_port: int = DEFAULT_PORT
    read_api_token: str | None = field(default=None, repr=False)
    # Whether the history catch-up sensor starts on (XAU_CATCH_UP); it can still be turned on in the UI.
    catch_up: bool = True
    # Alert channels (xau_pipeline.defs.alerts): off when unset. The URLs may hold a token or a password.
    alert_webhook_url: str | None = field(default=None, repr=False)
    alert_smtp_url: str | None = field(default=None, repr=False)
    alert_email_to: tuple[str, ...] = ()
    alert_email_from: str | None = None
    # Days Dagster's run, event and tick history is kept whole before the maintenance job prunes it
    # (XAU_DAGSTER_RETENTION_DAYS; xau_pipeline/maintenance).
    dagster_retention_days: int = DEFAULT_DAGSTER_RETENTION_DAYS
    # The `make run`/`make demo` whose embedded database and settings these are, when read from its file.
    launched: LaunchedPipeline | None = None
    # What no message may show: the database password, the API key and the API token as set.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def read_api_url(self) -> str:
        """http://host:port of the read API as configured (a wildcard bind shown as 127.0.0.1)."""
        return api_base_url(self.read_api_host, self.read_api_port)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable; a SettingsError names the first one that cannot work."""
        env = os.environ if environ is None else environ
        secrets = secrets_of(env)
        try:
            launched = _launched(env)
            if launched is not None:
                env = launch_settings.Layered(env, launched.variables)
            return cls._read(env, launched, secrets)
        except SettingsError as exc:
            raise _redacted(exc, secrets) from None

    @classmethod
    def _read(cls, env: Mapping[str, str], launched: LaunchedPipeline | None, secrets: tuple[str, ...]) -> Settings:
        default = cls(database_url="")

        def get(name: str, default: str) -> str:
            return (env.get(name) or "").strip() or default

        try:
            database_url = configured_database_url(env)
        except Exception as exc:  # ValueError, or SQLAlchemy's ArgumentError for an unparsable URL
            raise SettingsError(f"bad XAU_DATABASE_URL: {exc}", "XAU_DATABASE_URL") from None
        try:
            budget = BudgetSettings(
                per_minute=int(get("TWELVE_DATA_CREDITS_PER_MINUTE", str(default.budget.per_minute))),
                per_day=int(get("TWELVE_DATA_CREDITS_PER_DAY", str(default.budget.per_day))),
                schedule_share=float(get("XAU_SCHEDULE_CREDIT_SHARE", str(default.budget.schedule_share))),
                repair_share=float(get("XAU_REPAIR_CREDIT_SHARE", str(default.budget.repair_share))),
            )
        except ValueError as exc:
            raise SettingsError(f"bad credit budget setting: {exc}", *BUDGET_VARIABLES) from None
        try:
            symbols = parse_symbols(get("XAU_SYMBOLS", DEFAULT_SYMBOLS))
        except ValueError as exc:
            raise SettingsError(f"bad XAU_SYMBOLS: {exc}", "XAU_SYMBOLS") from None
        return cls(
            database_url=database_url,
            database_url_from_env=bool((env.get("XAU_DATABASE_URL") or "").strip()),
            api_base_url=_http_url("TWELVE_DATA_BASE_URL", get("TWELVE_DATA_BASE_URL", default.api_base_url)),
            api_key_set=bool((env.get("TWELVE_DATA_API_KEY") or "").strip()),
            symbols=symbols,
            history_start=_date("XAU_HISTORY_START", get("XAU_HISTORY_START", default.history_start.isoformat())),
            budget=budget,
            max_jump=_positive_decimal("XAU_MAX_JUMP", get("XAU_MAX_JUMP", str(default.max_jump))),
            m15_tolerance=_positive_decimal("XAU_M15_TOLERANCE", get("XAU_M15_TOLERANCE", str(default.m15_tolerance))),
            read_api_host=get("XAU_API_HOST", default.read_api_host),
            read_api_port=_port("XAU_API_PORT", get("XAU_API_PORT", str(default.read_api_port))),
            read_api_token=(env.get("XAU_API_TOKEN") or "").strip() or None,
            catch_up=_switch("XAU_CATCH_UP", get("XAU_CATCH_UP", "on" if default.catch_up else "off")),
            **_alert_settings(get),
            dagster_retention_days=_positive_int(
                "XAU_DAGSTER_RETENTION_DAYS", get("XAU_DAGSTER_RETENTION_DAYS", str(default.dagster_retention_days))
            ),
            launched=launched,
            secrets=secrets,
        )

    @classmethod
    def from_env_lenient(cls, environ: Mapping[str, str] | None = None) -> tuple[Settings, list[SettingsError]]:
        """Settings with each variable that cannot work replaced by its default, and what was wrong."""
        env = dict(os.environ if environ is None else environ)
        secrets = secrets_of(env)
        problems: list[SettingsError] = []
        try:
            launched = _launched(env)
        except SettingsError as exc:
            problems.append(_redacted(exc, secrets))
            launched = None
        below = dict(launched.variables) if launched is not None else {}
        while True:
            try:
                return cls._read(launch_settings.Layered(env, below), launched, secrets), problems
            except SettingsError as exc:
                problems.append(_redacted(exc, secrets))
                for name in exc.variables:
                    env.pop(name, None)
                    below.pop(name, None)

    def calendar_of(self, stored_symbol: str) -> str:
        """The calendar policy of a stored symbol name (`XAUUSD`); the default for one not configured."""
        for symbol in self.symbols:
            if symbol.name == stored_symbol:
                return symbol.calendar
        return Symbol(stored_symbol).calendar


def shared_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The SHARED_VARIABLES set in the environment, for `make run` to write beside its database."""
    env = os.environ if environ is None else environ
    return {name: value for name in SHARED_VARIABLES if (value := (env.get(name) or "").strip())}


def _launched(env: Mapping[str, str]) -> LaunchedPipeline | None:
    """The settings file of the `make run`/`make demo` whose embedded database is used (none with XAU_DATABASE_URL)."""
    if (env.get("XAU_DATABASE_URL") or "").strip():
        return None
    try:
        launched = launch_settings.read(embedded_data_dir(env))
    except launch_settings.LaunchSettingsError as exc:
        raise SettingsError(str(exc), "XAU_PGDATA") from None
    if launched is None:
        return None
    shared = {name: launched.variables[name] for name in SHARED_VARIABLES if name in launched.variables}
    return replace(launched, variables=shared)


def _redacted(exc: SettingsError, secrets: tuple[str, ...]) -> SettingsError:
    """`exc` with every secret of the environment masked in its message."""
    return SettingsError(redact(str(exc), *secrets), *exc.variables)


def secrets_of(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values in `env` no message may show: the password in XAU_DATABASE_URL, the API key and token."""
    values = (
        url_password((env.get("XAU_DATABASE_URL") or "").strip()),
        (env.get("TWELVE_DATA_API_KEY") or "").strip(),
        (env.get("XAU_API_TOKEN") or "").strip(),
    )
    return tuple(value for value in values if value)


def _http_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {value!r}", name)
    return value.rstrip("/")


def _date(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SettingsError(f"{name} must be a date like 2024-01-01, got {value!r}", name) from None


def _switch(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "1", "true", "yes"):
        return True
    if lowered in ("off", "0", "false", "no"):
        return False
    raise SettingsError(f"{name} must be on or off, got {value!r}", name)


def _positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number of days, got {value!r}", name) from None
    if number < 1:
        raise SettingsError(f"{name} must be at least 1, got {value!r}", name)
    return number


def _port(name: str, value: str) -> int:
    try:
        return parse_port(value)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}", name) from None


def _positive_decimal(name: str, value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise SettingsError(f"{name} must be a number, got {value!r}", name) from None
    if not number.is_finite() or number <= 0:
        raise SettingsError(f"{name} must be a positive number, got {value!r}", name)
    return number


def _alert_settings(get) -> dict:
    """The alert channels' settings, checked; no message shows a URL (it may hold a token or password)."""
    webhook = get("XAU_ALERT_WEBHOOK_URL", "") or None
    if webhook is not None:
        parts = urlsplit(webhook)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(
                "XAU_ALERT_WEBHOOK_URL must be an http:// or https:// URL (its value is not shown: it may hold a "
                "token)",
                "XAU_ALERT_WEBHOOK_URL",
            )
    smtp = get("XAU_ALERT_SMTP_URL", "") or None
    recipients = tuple(part.strip() for part in get("XAU_ALERT_EMAIL_TO", "").split(",") if part.strip())
    sender = get("XAU_ALERT_EMAIL_FROM", "") or None
    if smtp is None:
        stray = [
            name for name, value in (("XAU_ALERT_EMAIL_TO", recipients), ("XAU_ALERT_EMAIL_FROM", sender)) if value
        ]
        if stray:
            raise SettingsError(f"{' and '.join(stray)} set, but no XAU_ALERT_SMTP_URL to send by", *stray)
    else:
        smtp_parts(smtp)
        if not recipients:
            raise SettingsError(
                "XAU_ALERT_SMTP_URL is set but XAU_ALERT_EMAIL_TO names no recipient", "XAU_ALERT_EMAIL_TO"
            )
        for address in recipients:
            _mailbox("XAU_ALERT_EMAIL_TO", address)
        if sender is None:
            raise SettingsError("XAU_ALERT_SMTP_URL is set but XAU_ALERT_EMAIL_FROM is not", "XAU_ALERT_EMAIL_FROM")
        _mailbox("XAU_ALERT_EMAIL_FROM", sender)
    return {
        "alert_webhook_url": webhook,
        "alert_smtp_url": smtp,
        "alert_email_to": recipients,
        "alert_email_from": sender,
    }


def smtp_parts(url: str) -> SplitResult:
    """XAU_ALERT_SMTP_URL split, checked: smtp:// or smtps://, a host, a valid port if any."""
    parts = urlsplit(url)
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        raise SettingsError(
            "XAU_ALERT_SMTP_URL must be smtp://[user:password@]host[:port] or smtps://... (its value is not shown: "
            "it may hold a password)",
            "XAU_ALERT_SMTP_URL",
        )
    try:
        _port_number = parts.port  # raises ValueError for a port out of range
    except ValueError:
        raise SettingsError(
            f"XAU_ALERT_SMTP_URL has a bad port (host {parts.hostname}); expected 1-65535", "XAU_ALERT_SMTP_URL"
        ) from None
    return parts


def _mailbox(name: str, address: str) -> None:
    _display, mailbox = parseaddr(address)
    if "@" not in mailbox or mailbox.startswith("@") or mailbox.endswith("@"):
        raise SettingsError(f"{name} must be e-mail addresses like ops@example.com, got {address!r}", name)
