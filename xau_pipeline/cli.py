"""`xau-pipeline`: the command line beside the Dagster UI.

Every failure is one `error: ...` line on stderr: exit status 2 for a usage or configuration
error, 1 when the database cannot be reached. The database password is never printed.
`doctor` instead prints one `ok`/`FAIL` line per check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime, timedelta

from xau_pipeline.store.database import database_url, safe_url

EXIT_USAGE = 2
EXIT_FAILURE = 1

UTC = UTC
DEFAULT_LIMIT = 100
MAX_LIMIT = 5000
DEFAULT_GAP_WINDOW = timedelta(days=7)
FORMATS = ("table", "csv", "json")


class UsageError(Exception):
    """A bad argument or setting: exit status 2."""


class Unavailable(Exception):
    """The database cannot be reached: exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line too (still exit status 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _price(value) -> str:
    return "" if value is None else format(value, "f")


# ---- shared argument handling ----------------------------------------------------------------


def _timeframe(name: str):
    from xau_pipeline.timeframes import timeframe

    try:
        return timeframe(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    from xau_pipeline.read import parse_time

    try:
        start = None if args.start is None else parse_time(args.start, "--start")
        end = None if args.end is None else parse_time(args.end, "--end")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if start is not None and end is not None and start > end:
        raise UsageError(f"--start {_iso(start)} is after --end {_iso(end)}")
    return start, end


def _url() -> str:
    try:
        return database_url()
    except Exception as exc:  # ValueError or SQLAlchemy's ArgumentError for an unparsable URL
        raise UsageError(f"bad XAU_DATABASE_URL: {exc}") from None


def _store():
    from xau_pipeline.store.candle_store import CandleStore, StoreUnavailableError

    try:
        return CandleStore(_url())
    except StoreUnavailableError as exc:
        raise Unavailable(str(exc)) from None


# ---- commands ----------------------------------------------------------------------------------


def _migrate(args: argparse.Namespace) -> int:
    from xau_pipeline.store.migrate import current_revision

    store = _store()
    print(f"{safe_url(store.url)}: schema at revision {current_revision(store.engine)}")
    return 0


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        raise UsageError(f"--limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"--limit must be from 1 to {MAX_LIMIT}, got {limit}")
    return limit


def _candles(args: argparse.Namespace) -> int:
    from xau_pipeline.read import newest_candles

    tf = _timeframe(args.timeframe)
    start, end = _window(args)
    limit = _limit(args.limit)
    store = _store()
    frame = newest_candles(tf, start, end, symbol=args.symbol, database_url=store.url, limit=limit)
    rows = [
        {
            "timestamp": _iso(row.timestamp),
            **{c: _price(getattr(row, c)) for c in ("open", "high", "low", "close", "volume")},
        }
        for row in frame.itertuples(index=False)
    ]
    columns = ["timestamp", "open", "high", "low", "close", "volume"]
    if args.format == "json":
        for row in rows:
            row["volume"] = row["volume"] or None
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        cells = [[row[c] or "-" for c in columns] for row in rows]
        widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths))))
        for line in cells:
            print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths))))
        if not cells:
            print(f"(no {args.symbol.replace('/', '').upper()} {tf.name} candles stored in that window)")
    return 0


def _calendar_of(symbol: str):
    from xau_pipeline.symbols import DEFAULT_CALENDAR, configured_symbols
    from xau_pipeline.trading_calendar import calendar

    try:
        names = {s.name: s.calendar for s in configured_symbols()}
        name = names.get(symbol, DEFAULT_CALENDAR)
        return name, calendar(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _gaps(args: argparse.Namespace) -> int:
    from xau_pipeline.store.gaps import NEVER_FETCHED, NOT_CLOSED, PROVIDER_EMPTY, find_gaps

    tf = _timeframe(args.timeframe)
    start, end = _window(args)
    symbol = args.symbol.replace("/", "").upper()
    calendar_name, trading_calendar = _calendar_of(symbol)
    now = _now()
    if end is None:
        end = now if start is None or start <= now else start + DEFAULT_GAP_WINDOW
    if start is None:
        start = end - DEFAULT_GAP_WINDOW
    store = _store()
    with store.engine.connect() as connection:
        report = find_gaps(connection, symbol, tf.name, tf.bar, trading_calendar, start, end, now)
    phase_minutes = int(report.phase.total_seconds()) // 60
    reasons = ", ".join(f"{reason} {report.count(reason)}" for reason in (NEVER_FETCHED, PROVIDER_EMPTY, NOT_CLOSED))
    print(f"{symbol} {tf.name} from {_iso(start)} to {_iso(end)} (calendar {calendar_name})")
    print(f"expected:    {report.expected}")
    print(f"stored:      {report.stored}")
    print(f"missing:     {report.missing} ({reasons})")
    print(f"off-session: {report.off_session}")
    print(f"phase:       +{phase_minutes // 60:02d}:{phase_minutes % 60:02d} from 00:00 UTC")
    for gap in report.gaps:
        print(f"{_iso(gap.slot)}  {gap.reason}")
    return 0


def _credits(args: argparse.Namespace) -> int:
    from xau_pipeline.credit_budget import KINDS, BudgetSettings, usage_today

    try:
        settings = BudgetSettings.from_env()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    store = _store()
    now = _now()
    usage = {row.kind: (int(row.credits), int(row.calls)) for row in usage_today(store.engine, now)}
    kinds = list(KINDS) + sorted(set(usage) - set(KINDS))
    width = max(len(kind) for kind in kinds)
    used = sum(credits for credits, _ in usage.values())
    unscheduled = sum(credits for kind, (credits, _) in usage.items() if kind != "schedule")
    print(f"Twelve Data credits on {now:%Y-%m-%d} (UTC day)")
    for kind in kinds:
        credits, calls = usage.get(kind, (0, 0))
        print(f"  {kind.ljust(width)}  {credits:>6}  ({calls} call{'s' if calls != 1 else ''})")
    print(f"used:                {used} of {settings.per_day}")
    print(f"left today:          {max(settings.per_day - used, 0)}")
    print(f"kept for schedules:  {settings.reserved_for_schedules} ({settings.schedule_share:.0%} of the daily limit)")
    print(f"left for backfill and repair: {max(settings.per_day - settings.reserved_for_schedules - unscheduled, 0)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from xau_pipeline.api.links import api_host, api_port
    from xau_pipeline.api.server import configured_token, serve

    try:
        port = api_port(args.port)
        serve(_url(), args.host or api_host(), port, configured_token())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0


# ---- doctor ------------------------------------------------------------------------------------

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


def _doctor_database(url: str | None, url_error: str | None):
    """(check, engine or None): can we connect and run a query?"""
    if url is None:
        return _Check("database", False, f"bad XAU_DATABASE_URL: {url_error}"), None
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    shown = safe_url(url)
    # A plain engine: CandleStore would migrate as a side effect.
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": int(DOCTOR_TIMEOUT_SECONDS)})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        return _Check("database", False, f"{shown} unreachable: {_reason(exc)}"), None
    return _Check("database", True, f"{shown} reachable"), engine


def _doctor_migrations(engine) -> _Check:
    if engine is None:
        return _Check("migrations", False, "not checked: the database is unreachable")
    from alembic.script import ScriptDirectory

    from xau_pipeline.store.migrate import alembic_config, current_revision, head_revision

    try:
        current, head = current_revision(engine), head_revision()
    except Exception as exc:
        return _Check("migrations", False, f"cannot read the schema revision: {_reason(exc)}")
    if current == head:
        return _Check("migrations", True, f"schema at head revision {head}")
    if current is None:
        import sqlalchemy as sa

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


def _doctor_api_key() -> _Check:
    import os

    if (os.environ.get("TWELVE_DATA_API_KEY") or "").strip():
        return _Check("api key", True, "TWELVE_DATA_API_KEY is set")
    return _Check("api key", False, "TWELVE_DATA_API_KEY is not set (a free key: https://twelvedata.com/pricing)")


def _doctor_api() -> _Check:
    import os

    import requests

    from xau_pipeline.twelvedata.client import DEFAULT_BASE_URL

    base = (os.environ.get("TWELVE_DATA_BASE_URL") or "").strip() or DEFAULT_BASE_URL
    # A plain GET of the base URL, without the key: it costs no credit, and any HTTP answer
    # (even 404) shows that something is listening there.
    try:
        response = requests.get(base, timeout=DOCTOR_TIMEOUT_SECONDS, headers={"User-Agent": "xau-pipeline doctor"})
    except requests.Timeout:
        return _Check("api", False, f"{base} did not answer within {DOCTOR_TIMEOUT_SECONDS:g} s")
    except requests.ConnectionError as exc:
        cause = exc.args[0] if exc.args else exc
        reason = getattr(cause, "reason", None) or cause
        return _Check(
            "api", False, f"{base} unreachable: {_reason(reason) if isinstance(reason, BaseException) else reason}"
        )
    except requests.RequestException as exc:
        return _Check("api", False, f"{base} unusable: {type(exc).__name__}: {_reason(exc)}")
    response.close()
    return _Check("api", True, f"{base} reachable (HTTP {response.status_code} to a keyless GET, no credit spent)")


def _doctor_credits(engine) -> _Check:
    from xau_pipeline.credit_budget import KINDS, BudgetSettings, usage_today

    try:
        settings = BudgetSettings.from_env()
    except ValueError as exc:
        return _Check("credits", False, str(exc))
    if engine is None:
        return _Check("credits", False, "not checked: the database is unreachable")
    import sqlalchemy as sa

    try:
        if not sa.inspect(engine).has_table("api_calls"):
            return _Check("credits", False, "not checked: no credit ledger (api_calls) yet; run: xau-pipeline migrate")
        usage = {row.kind: int(row.credits) for row in usage_today(engine, _now())}
    except Exception as exc:
        return _Check("credits", False, f"cannot read today's ledger: {_reason(exc)}")
    used = sum(usage.values())
    left = max(settings.per_day - used, 0)
    unscheduled_left = max(settings.per_day - settings.reserved_for_schedules - (used - usage.get("schedule", 0)), 0)
    left_by_kind = {
        "schedule": left,
        "backfill": min(left, unscheduled_left),
        "repair": min(left, unscheduled_left, max(settings.repair_cap - usage.get("repair", 0), 0)),
    }
    kinds = list(KINDS) + sorted(set(usage) - set(KINDS))
    spent = ", ".join(f"{kind} {usage.get(kind, 0)}" for kind in kinds)
    open_to = ", ".join(f"{kind} {left_by_kind[kind]}" for kind in KINDS)
    return _Check(
        "credits",
        left > 0,
        f"{left} of {settings.per_day} left today (UTC day); left for: {open_to}; used: {spent}",
    )


def _doctor(args: argparse.Namespace) -> int:
    import os

    try:
        url, url_error = database_url(), None
    except Exception as exc:
        url, url_error = None, _reason(exc)
    database, engine = _doctor_database(url, url_error)
    try:
        checks = [database, _doctor_migrations(engine), _doctor_api_key(), _doctor_api(), _doctor_credits(engine)]
    finally:
        if engine is not None:
            engine.dispose()
    key = (os.environ.get("TWELVE_DATA_API_KEY") or "").strip()
    for check in checks:
        check.detail = _one_line(check.detail, url)
        # No check prints the key; this only guards against one pasted into a URL or setting.
        # (A key of a few characters would match ordinary words, and no real key is that short.)
        if len(key) >= 6:
            check.detail = check.detail.replace(key, "***")
        print(check.line())
    return 0 if all(check.passed for check in checks) else EXIT_FAILURE


# ---- entry point ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xau-pipeline", description="XAU/USD candle pipeline tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the database migrations (XAU_DATABASE_URL)").set_defaults(run=_migrate)

    dates = "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], UTC unless an offset is given"

    candles = commands.add_parser("candles", help="print stored candles, newest first")
    candles.add_argument("timeframe", metavar="TIMEFRAME", help="M15, H1, H4 or D1")
    candles.add_argument("--start", metavar="DATE", help=f"first bar open to include ({dates})")
    candles.add_argument("--end", metavar="DATE", help=f"bars opening at or after this are left out ({dates})")
    candles.add_argument(
        "--limit",
        metavar="N",
        default=str(DEFAULT_LIMIT),
        help=f"at most N candles (default {DEFAULT_LIMIT}, max {MAX_LIMIT})",
    )
    candles.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    candles.add_argument("--symbol", default="XAUUSD", help="stored symbol name (default XAUUSD)")
    candles.set_defaults(run=_candles)

    gaps = commands.add_parser("gaps", help="expected bars with no stored candle, and why")
    gaps.add_argument("timeframe", metavar="TIMEFRAME", help="M15, H1, H4 or D1")
    gaps.add_argument("--start", metavar="DATE", help=f"window start (default: 7 days before the end; {dates})")
    gaps.add_argument("--end", metavar="DATE", help=f"window end, exclusive (default: now; {dates})")
    gaps.add_argument("--symbol", default="XAUUSD", help="stored symbol name (default XAUUSD)")
    gaps.set_defaults(run=_gaps)

    serve = commands.add_parser("serve", help="serve the read-only HTTP API (and the chart pages)")
    serve.add_argument("--host", help="address to bind (default XAU_API_HOST or 127.0.0.1; others need XAU_API_TOKEN)")
    serve.add_argument("--port", help="port (default XAU_API_PORT or 8000)")
    serve.set_defaults(run=_serve)

    commands.add_parser("credits", help="Twelve Data credits used and left today").set_defaults(run=_credits)
    commands.add_parser(
        "doctor", help="check the database, its schema, the API key, the API and today's credits"
    ).set_defaults(run=_doctor)
    return parser


def _one_line(message: str, url: str | None) -> str:
    """`message` on one line, with the database password (if any) masked."""
    if url:
        try:
            from sqlalchemy.engine import make_url

            password = make_url(url).password
        except Exception:
            password = None
        if password:
            message = message.replace(str(password), "***")
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        status, message = EXIT_USAGE, str(exc)
    except Unavailable as exc:
        status, message = EXIT_FAILURE, str(exc)
    except Exception as exc:
        import sqlalchemy as sa

        if not isinstance(exc, sa.exc.DBAPIError):
            raise
        status, message = EXIT_FAILURE, f"database error: {getattr(exc, 'orig', None) or exc}"
    try:
        url = database_url()
    except Exception:
        url = None
    print(f"error: {_one_line(message, url)}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
