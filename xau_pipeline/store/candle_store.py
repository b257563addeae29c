"""The candle store: the one way into the candle database, every write one transaction.

Assets, checks, the repair sensor, the command line and `load_candles` all go through a
CandleStore; the SQL lives beside it in this package. The schema is migrated explicitly
(`migrate()`: at start-up by `make run`/`make demo`, by `xau-pipeline migrate`, by the deployment's
code server), never as a side effect of opening a store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg2
import sqlalchemy as sa

from xau_pipeline.clock import utc_now
from xau_pipeline.market.bar_grid import Grid
from xau_pipeline.market.bars import Bar, FetchedWindow, Interval, subtract
from xau_pipeline.market.grid_detection import DayCover, GridDetection
from xau_pipeline.market.market_hours import TradingCalendar
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.store import credit_budget, gaps, migrate, quality, quarantine, series_grid
from xau_pipeline.store.candle_query import OHLC, candle_query
from xau_pipeline.store.coverage import (
    covered_intervals,
    first_covered,
    last_asked,
    oldest_fetched_since,
    record_windows,
)
from xau_pipeline.store.credit_budget import BudgetSettings, CreditBudget
from xau_pipeline.store.database import engine_for, safe_url
from xau_pipeline.store.errors import SchemaNotCurrentError, StoreUnavailableError
from xau_pipeline.store.freshness import Freshness, series_freshness
from xau_pipeline.store.tables import candles
from xau_pipeline.store.upsert import UpsertCounts, upsert_bars
from xau_pipeline.store.window_claim import CLAIM_SERIES, WindowClaim

__all__ = ["CandleStore", "SchemaNotCurrentError", "StoreUnavailableError", "WindowClaim"]

# Schema revisions already seen at head, per URL, in this process: checked once, not per call.
_current: set[str] = set()
_current_lock = threading.Lock()


# A lost server shows as SQLAlchemy's wrapped errors, or as psycopg2's own from raw-cursor COPYs.
CONNECTION_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, psycopg2.OperationalError, psycopg2.InterfaceError)


class CandleStore:
    """Candles, fetch coverage and the API call ledger in PostgreSQL."""

    def __init__(self, url: str):
        self.url = url
        self.engine = engine_for(url)

    def __repr__(self) -> str:
        return f"CandleStore({safe_url(self.url)!r})"

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as connection:
                yield connection
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailableError(
                f"cannot reach the candle database at {safe_url(self.url)}: {str(getattr(exc, 'orig', exc)).strip()}"
            ) from None

    # -- schema ------------------------------------------------------------------------------

    def migrate(self) -> str:
        """Upgrade the schema to head (safe when several processes start at once); returns the revision."""
        try:
            revision = migrate.migrate(self.engine)
        except sa.exc.OperationalError as exc:
            raise StoreUnavailableError(
                f"cannot reach the candle database at {safe_url(self.url)}: {str(exc.orig).strip()}"
            ) from None
        with _current_lock:
            _current.add(self.url)
        return revision

    def schema_revision(self) -> str | None:
        """The schema revision recorded in the database (None before the first migration)."""
        with self._connect() as connection:
            return migrate.current_revision(connection)

    def require_current_schema(self) -> None:
        """Raise SchemaNotCurrentError unless the schema is at head (checked once per process)."""
        if self.url in _current:
            return
        current, head = self.schema_revision(), migrate.head_revision()
        if current != head:
            found = "no schema yet" if current is None else f"schema revision {current}"
            raise SchemaNotCurrentError(
                f"the candle database at {safe_url(self.url)} has {found}, this version needs {head}: "
                "run `xau-pipeline migrate` (make run does it at start-up)"
            )
        with _current_lock:
            _current.add(self.url)

    # -- candles and coverage -----------------------------------------------------------------

    def covered(self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime) -> list[Interval]:
        """Intervals of open times within reach of [start, end) whose bars were fetched closed."""
        with self._connect() as connection:
            return covered_intervals(connection, symbol, timeframe.name, start, end)

    def first_covered(self, symbol: str, timeframe: Timeframe) -> datetime | None:
        """Where the series' oldest window fetched closed begins; None when nothing was fetched closed."""
        with self._connect() as connection:
            return first_covered(connection, symbol, timeframe.name)

    def oldest_fetched_since(self, symbol: str, timeframe: Timeframe, since: datetime) -> datetime | None:
        """Where the oldest window fetched at or after `since` begins; None when none was."""
        with self._connect() as connection:
            return oldest_fetched_since(connection, symbol, timeframe.name, since)

    def last_asked(self, symbol: str, timeframe: Timeframe, slot: datetime, since: datetime) -> datetime | None:
        """When an answer reaching the bar opening at `slot` last came, if at or after `since`."""
        with self._connect() as connection:
            return last_asked(connection, symbol, timeframe.name, slot, since)

    def missing(self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime) -> list[Interval]:
        """Parts of [start, end) whose bars were never fetched after closing."""
        with self._connect() as connection:
            covered = covered_intervals(connection, symbol, timeframe.name, start, end)
        return subtract((start, end), covered)

    def write(self, symbol: str, timeframe: Timeframe, bars: list[Bar], windows: list[FetchedWindow]) -> UpsertCounts:
        """Upsert `bars` and record the `windows` they came from, all or nothing."""
        with self._transaction("writing candles") as connection:
            counts = upsert_bars(connection, symbol, timeframe.name, bars)
            record_windows(connection, symbol, timeframe.name, timeframe.bar, windows)
        return counts

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except CONNECTION_ERRORS as exc:
            orig = getattr(exc, "orig", None) or exc
            raise StoreUnavailableError(
                f"the candle database at {safe_url(self.url)} was lost while {doing}: "
                f"{str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__}; "
                "that transaction was rolled back, nothing of it was written"
            ) from None

    @contextmanager
    def claim_window(self, symbol: str, timeframe: Timeframe) -> Iterator[WindowClaim]:
        """Claim a series for one window: re-read its coverage, fetch and store under the claim, in
        one transaction. Another process claiming the same series waits, then sees what was stored."""
        with self._transaction(f"storing a {symbol} {timeframe.name} window") as connection:
            connection.execute(CLAIM_SERIES, {"series": f"{symbol}/{timeframe.name}"})
            yield WindowClaim(connection, symbol, timeframe)

    def settle_abandoned_calls(self) -> int:
        """Settle as lost the `pending` ledger rows of processes that died (their credits stay counted)."""
        with self._transaction("settling abandoned calls") as connection:
            return credit_budget.settle_abandoned(connection)

    def quarantined(
        self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime, limit: int = 20
    ) -> tuple[int, list[sa.Row]]:
        """Quarantined bars of a series in [start, end): how many, and the newest `limit`."""
        with self._connect() as connection:
            return quarantine.quarantined(connection, symbol, timeframe.name, start, end, limit)

    def read(self, query: sa.Select) -> list[sa.Row]:
        """The rows of a SELECT on the candle tables (see read.py)."""
        with self._connect() as connection:
            return list(connection.execute(query))

    def newest(self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime, limit: int = 5) -> list[sa.Row]:
        """The newest stored candles opening in [start, end), newest first."""
        return self.read(candle_query(symbol, timeframe.name, start, end, limit=limit, columns=OHLC))

    def summary(
        self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime
    ) -> tuple[int, datetime | None, datetime | None]:
        """How many candles are stored opening in [start, end), and the first and last open."""
        query = sa.select(sa.func.count(), sa.func.min(candles.c.timestamp), sa.func.max(candles.c.timestamp)).where(
            candles.c.symbol == symbol,
            candles.c.timeframe == timeframe.name,
            candles.c.timestamp >= start,
            candles.c.timestamp < end,
        )
        count, first, last = self.read(query)[0]
        return count, first, last

    def freshness(self, symbol: str, timeframe: Timeframe, calendar: TradingCalendar, now: datetime) -> Freshness:
        """Whether the series is fresh, waiting for publication or stale, and when its next bar is due."""
        with self._connect() as connection:
            return series_freshness(connection, symbol, timeframe, calendar, now)

    def newest_open(self, symbol: str, timeframe: Timeframe) -> datetime | None:
        """The open of the newest stored bar of a series."""
        with self._connect() as connection:
            return quality.newest_stored(connection, symbol, timeframe.name)

    # -- gaps and quality ----------------------------------------------------------------------

    def gaps(
        self,
        symbol: str,
        timeframe: Timeframe,
        calendar: TradingCalendar,
        window: tuple[datetime, datetime],
        now: datetime,
        *,
        grid: Grid | None = None,
        phase: timedelta | None = None,
    ) -> gaps.GapReport:
        """Expected bars of `window` [start, end) with no stored candle, classified (see store/gaps.py).

        The slots lie on `grid` if given, else on the UTC grid `phase`, else on the detected grid."""
        with self._connect() as connection:
            return gaps.find_gaps(
                connection, symbol, timeframe.name, timeframe.bar, calendar, *window, now, phase, grid
            )

    def stored_share(
        self, symbol: str, timeframe: Timeframe, calendar: TradingCalendar, start: datetime, now: datetime
    ) -> tuple[int, int]:
        """(expected, stored) closed bars of [start, now) on the series' detected grid (see store/gaps.py)."""
        with self._connect() as connection:
            grid = series_grid.detect_series_grid(connection, symbol, timeframe.name, timeframe.bar).grid
            return gaps.stored_share(connection, grid, symbol, timeframe.name, timeframe.bar, calendar, start, now)

    def invalid_bars(
        self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime, max_jump: Decimal
    ) -> list[sa.Row]:
        """Stored bars of [start, end) breaking the OHLC rules (see store/quality.py)."""
        with self._connect() as connection:
            return quality.invalid_ohlc(connection, symbol, timeframe.name, start, end, max_jump)

    def m15_mismatches(
        self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime, comparison: quality.M15Comparison
    ) -> tuple[list[quality.Mismatch], int, int]:
        """Bars of [start, end) that disagree with their M15 bars (see store/quality.py): the mismatches,
        how many bars were compared and how many skipped as incomplete."""
        by_day = self.m15_mismatches_by_day(symbol, timeframe, start, end, comparison, lambda _: "")
        return by_day.get("", ([], 0, 0))

    def m15_mismatches_by_day(
        self,
        symbol: str,
        timeframe: Timeframe,
        start: datetime,
        end: datetime,
        comparison: quality.M15Comparison,
        day_of: Callable[[datetime], str] | None = None,
    ) -> dict[str, tuple[list[quality.Mismatch], int, int]]:
        """m15_mismatches per `day_of` (default: UTC day, `YYYY-MM-DD`) of [start, end), in one query;
        days without bars absent."""
        with self._connect() as connection:
            return quality.m15_mismatches_by_day(
                connection, symbol, timeframe.name, timeframe.bar, start, end, comparison, day_of or utc_day
            )

    def bars_per_day(self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime) -> dict[str, int]:
        """How many candles are stored per UTC day (`YYYY-MM-DD`) of [start, end); days without any absent."""
        with self._connect() as connection:
            rows = connection.execute(
                BARS_PER_DAY, {"symbol": symbol, "timeframe": timeframe.name, "start": start, "end": end}
            )
            return {f"{row.day:%Y-%m-%d}": row.bars for row in rows}

    # -- the credit ledger ---------------------------------------------------------------------

    def credit_budget(
        self,
        settings: BudgetSettings,
        kind: str,
        run_id: str | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        run_allotment: int | None = None,
    ) -> CreditBudget:
        """The shared Twelve Data credit budget, drawn on by `kind` of work for one run (at most
        `run_allotment` credits for the run, when given)."""
        return CreditBudget(self.engine, settings, kind, run_id, log=log, run_allotment=run_allotment)

    def credits_used_today(self, now: datetime) -> dict[str, tuple[int, int]]:
        """(credits, calls) by kind of work for the UTC day of `now`."""
        with self._connect() as connection:
            return credit_budget.usage_today(connection, now)

    def ledger_usage(self) -> tuple[datetime, dict[str, tuple[int, int]]]:
        """The ledger's time and (credits, calls) by kind of work for its UTC day (credit_budget.ledger_usage)."""
        with self._connect() as connection:
            return credit_budget.ledger_usage(connection)

    def calls_of_run(self, run_id: str, symbol: str, interval: str) -> list[sa.Row]:
        """The ledger rows of one run's calls for one series, oldest first."""
        with self._connect() as connection:
            return credit_budget.calls_of_run(connection, run_id, symbol, interval)

    # -- bar grids (xau_pipeline.market.bar_grid) ------------------------------------------------------------

    def grid(self, symbol: str, timeframe: Timeframe, since: datetime | None = None) -> GridDetection:
        """The series' bar grid as its stored bars (from `since`) show it; `.grid` is what to pass on.

        Recomputed from the stored bars on every call (one aggregate for M15/H1; the opens for H4/D1,
        tens of milliseconds), so it follows the feed without a table to keep in step.
        """
        with self._connect() as connection:
            return series_grid.detect_series_grid(connection, symbol, timeframe.name, timeframe.bar, since)

    def recent_grid(self, symbol: str, timeframe: Timeframe, now: datetime) -> Grid:
        """The grid the series' newest bars lie on (series_grid.recent_grid)."""
        with self._connect() as connection:
            return series_grid.recent_grid(connection, symbol, timeframe.name, timeframe.bar, now)

    def day_cover(self, symbol: str, start: datetime | None = None, end: datetime | None = None) -> DayCover:
        """The day each D1 bar of [start, end) holds, read off the H1 bars (default: the last 400 days)."""
        end = end or utc_now()
        with self._connect() as connection:
            return quality.day_cover(connection, symbol, start or end - timedelta(days=400), end)

    # -- per-day figures ------------------------------------------------------------------------

    def day_summaries(
        self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime, newest: int = 5
    ) -> dict[str, DaySummary]:
        """Per UTC day of [start, end) holding bars: how many, the first and last open, the `newest` bars (one query)."""
        with self._connect() as connection:
            rows = connection.execute(
                DAY_SUMMARIES,
                {"symbol": symbol, "timeframe": timeframe.name, "start": start, "end": end, "newest": newest},
            )
            days: dict[str, DaySummary] = {}
            for row in rows:
                key = f"{row.day:%Y-%m-%d}"
                day = days.get(key) or days.setdefault(key, DaySummary(row.bars, row.first_bar, row.last_bar, []))
                day.newest.append((row.timestamp, row.open, row.high, row.low, row.close))
            return days


@dataclass
class DaySummary:
    """One UTC day of one series as stored."""

    bars: int
    first: datetime
    last: datetime
    newest: list[tuple[datetime, Decimal, Decimal, Decimal, Decimal]]


def utc_day(moment: datetime) -> str:
    """The daily partition key (`YYYY-MM-DD`, UTC) holding `moment`."""
    return f"{moment.astimezone(UTC):%Y-%m-%d}"


BARS_PER_DAY = sa.text(
    """
    SELECT date_trunc('day', "timestamp" AT TIME ZONE 'UTC') AS day, count(*) AS bars
    FROM candles
    WHERE symbol = :symbol AND timeframe = :timeframe AND "timestamp" >= :start AND "timestamp" < :end
    GROUP BY 1
    """
)

DAY_SUMMARIES = sa.text(
    """
    SELECT day, timestamp, open, high, low, close, bars, first_bar, last_bar FROM (
        SELECT date_trunc('day', "timestamp" AT TIME ZONE 'UTC') AS day, "timestamp", open, high, low, close,
               row_number() OVER (PARTITION BY date_trunc('day', "timestamp" AT TIME ZONE 'UTC')
                                  ORDER BY "timestamp" DESC) AS position,
               count(*) OVER days AS bars, min("timestamp") OVER days AS first_bar, max("timestamp") OVER days AS last_bar
        FROM candles
        WHERE symbol = :symbol AND timeframe = :timeframe AND "timestamp" >= :start AND "timestamp" < :end
        WINDOW days AS (PARTITION BY date_trunc('day', "timestamp" AT TIME ZONE 'UTC'))
    ) ranked
    WHERE position <= :newest
    ORDER BY day, "timestamp" DESC
    """
)
