"""A claim on one series for one request window: its coverage re-read under an advisory lock, and what the answered call brought stored in the same transaction (see ingest.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from xau_pipeline.market.bars import Bar, FetchedWindow, Interval, subtract
from xau_pipeline.market.quarantine_rule import Rejected
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.store import credit_budget, quarantine, series_grid
from xau_pipeline.store.coverage import (
    covered_intervals,
    record_windows,
)
from xau_pipeline.store.upsert import UpsertCounts, upsert_bars

# Transaction-scoped: one process at a time works on (re-reads, fetches, stores) a series' window.
CLAIM_SERIES = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:series, 1))")


class WindowClaim:
    """A series claimed for one window, inside the transaction that will store the window's answer."""

    def __init__(self, connection: sa.Connection, symbol: str, timeframe: Timeframe):
        self.connection = connection
        self.symbol = symbol
        self.timeframe = timeframe

    def missing(self, start: datetime, end: datetime) -> list[Interval]:
        """Parts of [start, end) never fetched closed, as of now (after the claim)."""
        covered = covered_intervals(self.connection, self.symbol, self.timeframe.name, start, end)
        return subtract((start, end), covered)

    def stored_phase(self) -> timedelta | None:
        """The grid offset the stored bars show, None when none is stored."""
        row = self.connection.execute(
            series_grid.DOMINANT_PHASE,
            {
                "symbol": self.symbol,
                "timeframe": self.timeframe.name,
                "bar_seconds": int(self.timeframe.bar.total_seconds()),
            },
        ).first()
        return timedelta(seconds=row.phase_seconds) if row else None

    def store(
        self,
        bars: list[Bar],
        rejected: list[Rejected],
        window: FetchedWindow,
        fetched_at: datetime,
        run_id: str | None,
        settlement: tuple[int, str, int] | None,
        final_before: datetime | None = None,
    ) -> UpsertCounts:
        """The window's bars (those opening before `final_before` final, the rest provisional),
        quarantined bars, coverage and ledger settlement (id, outcome, credits); committed together
        when the claim ends."""
        counts = upsert_bars(self.connection, self.symbol, self.timeframe.name, bars, final_before=final_before)
        quarantine.record_rejected(self.connection, self.symbol, self.timeframe.name, rejected, fetched_at, run_id)
        record_windows(self.connection, self.symbol, self.timeframe.name, self.timeframe.bar, [window])
        if settlement is not None:
            credit_budget.settle_call(self.connection, *settlement)
        return counts
