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
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from xau_pipeline.clock import iso_utc, utc_now
from xau_pipeline.defs.candles.twelvedata_pool import POOL, pool_limits
from xau_pipeline.interfaces.dataframes import newest_candles, parse_time
from xau_pipeline.interfaces.doctor import (
    EXIT_FAILURE,
    run_doctor,
    symbol_histories,
)
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import stored_name
from xau_pipeline.market.timeframes import TIMEFRAMES, Timeframe, timeframe
from xau_pipeline.read_api_links import parse_port
from xau_pipeline.redact import one_line
from xau_pipeline.settings import Settings, SettingsError
from xau_pipeline.store.candle_query import DEFAULT_LIMIT, MAX_LIMIT
from xau_pipeline.store.candle_store import CandleStore, SchemaNotCurrentError, StoreUnavailableError
from xau_pipeline.store.credit_budget import KINDS, credits_by_kind, credits_left
from xau_pipeline.store.database import safe_url
from xau_pipeline.store.gap_window import GapWindowTooLongError, check_gap_window, gap_window
from xau_pipeline.store.gaps import GRID_MISMATCH, NEVER_FETCHED, NOT_PUBLISHED, PROVIDER_EMPTY

EXIT_USAGE = 2

FORMATS = ("table", "csv", "json")


class UsageError(Exception):
    """A bad argument or setting: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line too (still exit status 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def _price(value: object) -> str:
    return "" if value is None else format(value, "f")


# ---- shared argument handling ----------------------------------------------------------------


def _timeframe(name: str) -> Timeframe:
    try:
        return timeframe(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    try:
        start = None if args.start is None else parse_time(args.start, "--start")
        end = None if args.end is None else parse_time(args.end, "--end")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if start is not None and end is not None and start > end:
        raise UsageError(f"--start {iso_utc(start)} is after --end {iso_utc(end)}")
    return start, end


def _store(settings: Settings) -> CandleStore:
    """The candle store, its schema known to be current."""
    store = CandleStore(settings.database_url)
    store.require_current_schema()
    return store


# ---- commands ----------------------------------------------------------------------------------


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    store = CandleStore(settings.database_url)
    print(f"{safe_url(store.url)}: schema at revision {store.migrate()}")
    return 0


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        raise UsageError(f"--limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"--limit must be from 1 to {MAX_LIMIT}, got {limit}")
    return limit


def _candles(args: argparse.Namespace, settings: Settings) -> int:
    tf = _timeframe(args.timeframe)
    start, end = _window(args)
    limit = _limit(args.limit)
    store = _store(settings)
    frame = newest_candles(tf, start, end, symbol=args.symbol, store=store, limit=limit, final_only=args.final_only)
    records: list[Any] = list(frame.itertuples(index=False))  # pandas.Timestamp is a datetime
    rows: list[dict[str, str | None]] = [
        {
            "timestamp": iso_utc(row.timestamp),
            **{c: _price(getattr(row, c)) for c in ("open", "high", "low", "close", "volume")},
            "final": "yes" if row.final else "no",
        }
        for row in records
    ]
    columns = ["timestamp", "open", "high", "low", "close", "volume", "final"]
    if args.format == "json":
        for row, record in zip(rows, records):
            row["volume"] = row["volume"] or None
            row["final"] = bool(record.final)  # type: ignore[assignment]
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
            print(f"(no {stored_name(args.symbol)} {tf.name} candles stored in that window)")
    return 0


def _gaps(args: argparse.Namespace, settings: Settings) -> int:
    tf = _timeframe(args.timeframe)
    start, end = _window(args)
    symbol = stored_name(args.symbol)
    calendar_name = settings.calendar_of(symbol)
    now = utc_now()
    start, end = gap_window(start, end, now)
    try:
        check_gap_window(tf.name, tf.bar, start, end)
    except GapWindowTooLongError as exc:
        raise UsageError(str(exc)) from None
    store = _store(settings)
    report = store.gaps(symbol, tf, calendar(calendar_name), (start, end), now)
    phase_minutes = int(report.phase.total_seconds()) // 60
    shown = (NEVER_FETCHED, PROVIDER_EMPTY, NOT_PUBLISHED) + ((GRID_MISMATCH,) if report.count(GRID_MISMATCH) else ())
    reasons = ", ".join(f"{reason} {report.count(reason)}" for reason in shown)
    print(f"{symbol} {tf.name} from {iso_utc(start)} to {iso_utc(end)} (calendar {calendar_name})")
    print(f"expected:    {report.expected}")
    print(f"stored:      {report.present}")
    print(f"missing:     {report.missing} ({reasons})")
    print(f"off-session: {report.off_session}")
    if report.grid is None or report.grid.is_utc:
        print(f"phase:       +{phase_minutes // 60:02d}:{phase_minutes % 60:02d} from 00:00 UTC")
    else:
        print("phase:       none fixed in UTC (the grid is anchored in a zone)")
    if report.grid is not None:
        print(f"grid:        {report.grid.describe()}")
    cover = store.day_cover(symbol, start, end) if tf.name == "D1" else None
    if cover is not None and cover.compared:
        print(f"day:         {cover.describe()}")
    if report.mismatch is not None:
        print(report.mismatch.line)
    for gap in report.real_gaps:
        print(f"{iso_utc(gap.slot)}  {gap.reason}")
    return 0


def _credits(args: argparse.Namespace, settings: Settings) -> int:
    budget = settings.budget
    store = _store(settings)
    now = utc_now()
    usage = store.credits_used_today(now)
    used = credits_by_kind(usage)
    left = credits_left(budget, used)
    kinds = list(KINDS) + sorted(set(usage) - set(KINDS))
    width = max(len(kind) for kind in kinds)
    print(f"Twelve Data credits on {now:%Y-%m-%d} (UTC day)")
    for kind in kinds:
        credits, calls = usage.get(kind, (0, 0))
        print(f"  {kind.ljust(width)}  {credits:>6}  ({calls} call{'s' if calls != 1 else ''})")
    print(f"used:                {sum(used.values())} of {budget.per_day}")
    print(f"left today:          {left['schedule']}")
    print(f"kept for schedules:  {budget.reserved_for_schedules} ({budget.schedule_share:.0%} of the daily limit)")
    print(f"left for backfill and repair: {left['backfill']}")
    limits = pool_limits(budget.per_minute, max_concurrent_runs=-1)
    print(
        f"{POOL} pool:     {limits.twelvedata} runs at a time, {limits.catch_up} of them catch-up, for "
        f'{budget.per_minute} credits a minute (at most the instance\'s max_concurrent_runs; docs/architecture.md, "Credits: the budget and the pool")'
    )
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    now = utc_now()
    if settings.launched is not None:
        print(
            f"settings of the `{settings.launched.command}` running from this folder ({settings.launched.path}): "
            f"Twelve Data at {settings.api_base_url}"
        )
    print(f"history since {settings.history_start}: closed bars the calendar expects, and how many are stored")
    store = _store(settings)
    histories = symbol_histories(store, settings, now)
    for symbol, progress, eta in histories:
        for p in progress:
            print(
                f"  {symbol.api_symbol} {p.timeframe:<3}  {p.share:6.1%}  {p.stored:>9,} of {p.expected:>9,}  "
                f"{p.credits_to_go} credit(s) to go"
            )
        print(f"  {symbol.api_symbol}: {eta}")
    print("live: the newest bars (stale once a bar that closed over 10 minutes ago is missing)")
    for symbol, _progress, _eta in histories:
        for tf in TIMEFRAMES:
            state = store.freshness(symbol.name, tf, calendar(symbol.calendar), now)
            print(f"  {symbol.api_symbol} {tf.name:<3}  {state.line}")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    # uvicorn and FastAPI load here, not for every command.
    from xau_pipeline.interfaces.http.server import serve

    try:
        port = settings.read_api_port if args.port is None else parse_port(args.port)
        host = args.host or settings.read_api_host
        serve(
            settings.database_url,
            host,
            port,
            settings.read_api_token,
            symbols=settings.symbols,
            history_start=settings.history_start,
        )
    except ValueError as exc:
        raise UsageError(f"serve: {exc}") from None
    return 0


# ---- doctor ------------------------------------------------------------------------------------


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
    candles.add_argument(
        "--final-only", action="store_true", help="only final bars (leave out those that may still change)"
    )
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
        "status", help="how complete each series' history is, and when the catch-up will be done"
    ).set_defaults(run=_status)
    doctor = commands.add_parser(
        "doctor",
        help="check the database, its schema, the API key, the API, today's credits, the history and the alert channels",
    )
    doctor.add_argument(
        "--send-test-alert", action="store_true", help="send a test notice to each alert channel (exit 1 if one fails)"
    )
    doctor.set_defaults(run=run_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    secrets: tuple[str, ...] = ()  # a SettingsError's message is redacted by Settings
    try:
        if args.run is run_doctor:
            return run_doctor(args)
        settings = Settings.from_env()
        secrets = settings.secrets
        return args.run(args, settings)
    except (UsageError, SettingsError) as exc:
        status, message = EXIT_USAGE, str(exc)
    except (StoreUnavailableError, SchemaNotCurrentError) as exc:
        status, message = EXIT_FAILURE, str(exc)
    except sa.exc.DBAPIError as exc:
        status, message = EXIT_FAILURE, f"database error: {getattr(exc, 'orig', None) or exc}"
    print(f"error: {one_line(message, *secrets)}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
