"""`xau-pipeline`: the command line beside the Dagster UI.

Every failure is one `error: ...` line on stderr: exit status 2 for a usage or configuration
error, 1 when the database cannot be reached. The database password is never printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timedelta, timezone

from xau_pipeline.store.database import database_url, safe_url

EXIT_USAGE = 2
EXIT_FAILURE = 1

UTC = timezone.utc
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
        {"timestamp": _iso(row.timestamp), **{c: _price(getattr(row, c)) for c in ("open", "high", "low", "close", "volume")}}
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
    print(
        f"kept for schedules:  {settings.reserved_for_schedules} "
        f"({settings.schedule_share:.0%} of the daily limit)"
    )
    print(f"left for backfill and repair: {max(settings.per_day - settings.reserved_for_schedules - unscheduled, 0)}")
    return 0


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
    candles.add_argument("--limit", metavar="N", default=str(DEFAULT_LIMIT), help=f"at most N candles (default {DEFAULT_LIMIT}, max {MAX_LIMIT})")
    candles.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    candles.add_argument("--symbol", default="XAUUSD", help="stored symbol name (default XAUUSD)")
    candles.set_defaults(run=_candles)

    gaps = commands.add_parser("gaps", help="expected bars with no stored candle, and why")
    gaps.add_argument("timeframe", metavar="TIMEFRAME", help="M15, H1, H4 or D1")
    gaps.add_argument("--start", metavar="DATE", help=f"window start (default: 7 days before the end; {dates})")
    gaps.add_argument("--end", metavar="DATE", help=f"window end, exclusive (default: now; {dates})")
    gaps.add_argument("--symbol", default="XAUUSD", help="stored symbol name (default XAUUSD)")
    gaps.set_defaults(run=_gaps)

    commands.add_parser("credits", help="Twelve Data credits used and left today").set_defaults(run=_credits)
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
