"""`xau-pipeline doctor`: each thing the pipeline needs, checked and explained in a line (the database, its schema, the API key and the API, the day's credits, the history, the alert channels)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import requests
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from xau_pipeline.clock import iso_utc, utc_now
from xau_pipeline.defs.alerts.channels import Notice, configured_channels, deliver
from xau_pipeline.defs.automation.catch_up_sensor import SeriesProgress, eta_text, history_progress, progress_line
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.redact import one_line
from xau_pipeline.settings import ALERT_VARIABLES, BUDGET_VARIABLES, Settings, SettingsError
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.credit_budget import KINDS, credits_by_kind, credits_left
from xau_pipeline.store.database import safe_url
from xau_pipeline.store.migrate import alembic_config, current_revision, head_revision

EXIT_FAILURE = 1
DOCTOR_TIMEOUT_SECONDS = 5.0


class _Check:
    """One `ok`/`FAIL` line of `xau-pipeline doctor`."""

    def __init__(self, name: str, passed: bool, detail: str):
        self.name, self.passed, self.detail = name, passed, detail

    def line(self) -> str:
        return f"{'ok' if self.passed else 'FAIL':<4}  {self.name}: {self.detail}"


def _reason(exc: BaseException) -> str:
    """The cause of a failure, on one line: the driver's message for a database error."""
    orig = getattr(exc, "orig", None)
    text = str(orig or exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _doctor_database(url: str, url_error: str | None) -> tuple[_Check, sa.Engine | None]:
    """(check, engine or None): can we connect and run a query?"""
    if url_error is not None:
        return _Check("database", False, url_error), None
    shown = safe_url(url)
    # A plain engine: nothing but a connection and SELECT 1.
    engine = sa.create_engine(
        url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": int(DOCTOR_TIMEOUT_SECONDS)}
    )
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        return _Check("database", False, f"{shown} unreachable: {_reason(exc)}"), None
    return _Check("database", True, f"{shown} reachable"), engine


def _doctor_migrations(engine: sa.Engine | None) -> _Check:
    if engine is None:
        return _Check("migrations", False, "not checked: the database is unreachable")
    try:
        current, head = current_revision(engine), head_revision()
    except Exception as exc:
        return _Check("migrations", False, f"cannot read the schema revision: {_reason(exc)}")
    if current == head:
        return _Check("migrations", True, f"schema at head revision {head}")
    if current is None:
        try:
            tables = sa.inspect(engine).has_table("candles")
        except Exception:
            tables = False
        what = "no schema revision recorded, though a candles table exists" if tables else "no schema yet"
        return _Check("migrations", False, f"{what} (head revision is {head}); run: xau-pipeline migrate")
    try:
        known = ScriptDirectory.from_config(alembic_config()).get_revision(current) is not None
    except Exception:
        known = False
    if not known:
        return _Check(
            "migrations",
            False,
            f"schema at revision {current}, unknown to this xau_pipeline (head {head}): was it migrated by a newer version?",
        )
    return _Check("migrations", False, f"schema at revision {current}, behind head {head}; run: xau-pipeline migrate")


def _doctor_api_key(settings: Settings) -> _Check:
    if settings.api_key_set:
        return _Check("api key", True, "TWELVE_DATA_API_KEY is set")
    if settings.launched is not None:
        launched = settings.launched
        return _Check("api key", True, f"the `{launched.command}` running from this folder uses {launched.api_key}")
    return _Check("api key", False, "TWELVE_DATA_API_KEY is not set (a free key: https://twelvedata.com/pricing)")


def _doctor_api(settings: Settings, problem: str | None) -> _Check:
    if problem is not None:
        return _Check("api", False, problem)
    base = settings.api_base_url
    # A plain GET of the base URL, without the key: it costs no credit, and any HTTP answer
    # (even 404) shows that something is listening there.
    try:
        response = requests.get(base, timeout=DOCTOR_TIMEOUT_SECONDS, headers={"User-Agent": "xau-pipeline doctor"})
    except requests.Timeout:
        return _Check("api", False, f"{base} did not answer within {DOCTOR_TIMEOUT_SECONDS:g} s")
    except requests.ConnectionError as exc:
        cause = exc.args[0] if exc.args else exc
        reason = getattr(cause, "reason", None) or cause
        detail = _reason(reason) if isinstance(reason, BaseException) else reason
        return _Check("api", False, f"{base} unreachable: {detail}")
    except requests.RequestException as exc:
        return _Check("api", False, f"{base} unusable: {type(exc).__name__}: {_reason(exc)}")
    response.close()
    return _Check("api", True, f"{base} reachable (HTTP {response.status_code} to a keyless GET, no credit spent)")


def _doctor_credits(engine: sa.Engine | None, settings: Settings, problem: str | None) -> _Check:
    if problem is not None:
        return _Check("credits", False, problem)
    if engine is None:
        return _Check("credits", False, "not checked: the database is unreachable")
    budget = settings.budget
    try:
        if not sa.inspect(engine).has_table("api_calls"):
            return _Check("credits", False, "not checked: no credit ledger (api_calls) yet; run: xau-pipeline migrate")
        usage = CandleStore(settings.database_url).credits_used_today(utc_now())
    except Exception as exc:
        return _Check("credits", False, f"cannot read today's ledger: {_reason(exc)}")
    used = credits_by_kind(usage)
    left = credits_left(budget, used)
    kinds = list(KINDS) + sorted(set(used) - set(KINDS))
    spent = ", ".join(f"{kind} {used.get(kind, 0)}" for kind in kinds)
    open_to = ", ".join(f"{kind} {left[kind]}" for kind in KINDS)
    return _Check(
        "credits",
        left["schedule"] > 0,
        f"{left['schedule']} of {budget.per_day} left today (UTC day); left for: {open_to}; used: {spent}",
    )


def _doctor_history(engine: sa.Engine | None, settings: Settings) -> _Check:
    if engine is None:
        return _Check("history", False, "not checked: the database is unreachable")
    try:
        if not sa.inspect(engine).has_table("candles"):
            return _Check("history", False, "not checked: no candles table yet; run: xau-pipeline migrate")
        histories = symbol_histories(CandleStore(settings.database_url), settings, utc_now())
    except Exception as exc:
        return _Check("history", False, f"cannot read the stored history: {_reason(exc)}")
    # Catching up is not a fault: the check fails only when the history cannot be read.
    return _Check(
        "history",
        True,
        f"since {settings.history_start}: "
        + "; ".join(f"{symbol.api_symbol} {progress_line(progress, eta)}" for symbol, progress, eta in histories),
    )


def _alert_problems(problems: list[SettingsError]) -> str | None:
    """Every alert setting that cannot work, on one line (but the recipients reported missing their SMTP
    URL only because that URL was itself at fault and set aside)."""
    found = [p for p in problems if set(p.variables) & set(ALERT_VARIABLES)]
    smtp_at_fault = any("XAU_ALERT_SMTP_URL" in p.variables for p in found)
    shown = [
        str(p)
        for p in found
        if not (smtp_at_fault and "XAU_ALERT_SMTP_URL" not in p.variables and "no XAU_ALERT_SMTP_URL" in str(p))
    ]
    return "; ".join(shown) or None


def _doctor_alerts(settings: Settings, problem: str | None, send_test: bool) -> list[_Check]:
    """Which alert channels are on (without their secrets); with `send_test`, one test notice to each."""
    if problem is not None:
        return [_Check("alerts", False, problem)]
    channels = configured_channels(settings)
    if not channels:
        off = "off: neither XAU_ALERT_WEBHOOK_URL nor XAU_ALERT_SMTP_URL is set"
        return [_Check("alerts", not send_test, off + ("; no test notice to send" if send_test else ""))]
    checks = [_Check("alerts", True, "on: " + "; ".join(f"{c.name} {c.describe()}" for c in channels))]
    if send_test:
        notice = Notice(
            "[xau-pipeline] test notice",
            f"A test notice from `xau-pipeline doctor --send-test-alert` at {iso_utc(utc_now())}: this channel works.",
        )
        for channel in channels:
            error = deliver(channel, notice, attempts=1)
            detail = f"test notice sent to {channel.describe()}" if error is None else f"{channel.describe()}: {error}"
            checks.append(_Check(f"alert {channel.name}", error is None, detail))
    return checks


def run_doctor(args: argparse.Namespace) -> int:
    # Settings that cannot work are each reported by the check they belong to, the rest still run.
    settings, problems = Settings.from_env_lenient()
    by_variable = {name: f"{problem}" for problem in problems for name in problem.variables}
    others = [
        str(p)
        for p in problems
        if not set(p.variables) & {"XAU_DATABASE_URL", "TWELVE_DATA_BASE_URL", *BUDGET_VARIABLES, *ALERT_VARIABLES}
    ]
    database, engine = _doctor_database(settings.database_url, by_variable.get("XAU_DATABASE_URL"))
    try:
        checks = [
            database,
            _doctor_migrations(engine),
            _doctor_api_key(settings),
            _doctor_api(settings, by_variable.get("TWELVE_DATA_BASE_URL")),
            _doctor_credits(
                engine, settings, next((by_variable[v] for v in BUDGET_VARIABLES if v in by_variable), None)
            ),
            _doctor_history(engine, settings),
            *_doctor_alerts(
                settings,
                _alert_problems(problems),
                args.send_test_alert,
            ),
        ]
    finally:
        if engine is not None:
            engine.dispose()
    checks += [_Check("settings", False, problem) for problem in others]
    # No check prints the key; this guards against one pasted into a URL or setting.
    secrets = (
        *settings.secrets,
        *(secret for channel in configured_channels(settings) for secret in channel.secrets()),
    )
    for check in checks:
        check.detail = one_line(check.detail, *secrets)
        print(check.line())
    return 0 if all(check.passed for check in checks) else EXIT_FAILURE


def symbol_histories(
    store: CandleStore, settings: Settings, now: datetime
) -> list[tuple[Symbol, list[SeriesProgress], str]]:
    """Each symbol's progress per series and when its history will be complete."""
    used = credits_by_kind(store.credits_used_today(now))
    backfill_left = credits_left(settings.budget, used)["backfill"]
    start = datetime.combine(settings.history_start, datetime.min.time(), UTC)
    histories = []
    for symbol in settings.symbols:
        progress = history_progress(store, symbol, start, now)
        eta = eta_text(sum(p.credits_to_go for p in progress), settings.budget, backfill_left, now)
        histories.append((symbol, progress, eta))
    return histories
