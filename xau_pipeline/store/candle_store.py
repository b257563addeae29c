"""The candle store: one object per database, every write one transaction."""

from __future__ import annotations

import threading
from datetime import datetime

import sqlalchemy as sa

from xau_pipeline.bars import Bar, FetchedWindow, Interval, subtract
from xau_pipeline.store.coverage import covered_intervals, record_windows
from xau_pipeline.store.database import engine_for, safe_url
from xau_pipeline.store.migrate import migrate
from xau_pipeline.store.tables import candles
from xau_pipeline.store.upsert import UpsertCounts, upsert_bars
from xau_pipeline.timeframes import Timeframe

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


class StoreUnavailableError(RuntimeError):
    """The database could not be reached or migrated."""


class CandleStore:
    """Candles and fetch coverage in PostgreSQL, migrated to head on first use."""

    def __init__(self, url: str):
        self.url = url
        self.engine = engine_for(url)
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        with _migrate_lock:
            if self.url in _migrated:
                return
            try:
                migrate(self.engine)
            except sa.exc.OperationalError as exc:
                raise StoreUnavailableError(
                    f"cannot reach the candle database at {safe_url(self.url)}: {exc.orig}".strip()
                ) from None
            _migrated.add(self.url)

    def missing(self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime) -> list[Interval]:
        """Parts of [start, end) whose bars were never fetched after closing."""
        with self.engine.connect() as connection:
            covered = covered_intervals(connection, symbol, timeframe.name, start, end)
        return subtract((start, end), covered)

    def write(self, symbol: str, timeframe: Timeframe, bars: list[Bar], windows: list[FetchedWindow]) -> UpsertCounts:
        """Upsert `bars` and record the `windows` they came from, all or nothing."""
        with self.engine.begin() as connection:
            counts = upsert_bars(connection, symbol, timeframe.name, bars)
            record_windows(connection, symbol, timeframe.name, timeframe.bar, windows)
        return counts

    def newest(self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime, limit: int = 5) -> list[sa.Row]:
        """The newest stored candles opening in [start, end), newest first."""
        query = (
            sa.select(candles.c.timestamp, candles.c.open, candles.c.high, candles.c.low, candles.c.close)
            .where(
                candles.c.symbol == symbol,
                candles.c.timeframe == timeframe.name,
                candles.c.timestamp >= start,
                candles.c.timestamp < end,
            )
            .order_by(candles.c.timestamp.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(query))

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
        with self.engine.connect() as connection:
            count, first, last = connection.execute(query).one()
        return count, first, last
