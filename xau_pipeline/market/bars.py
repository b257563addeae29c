"""The pipeline's own vocabulary: a bar, a fetched window, a time interval.

Shared by the Twelve Data client, the candle store and ingest, so none of them imports another's types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Bar:
    """One OHLC candle; `open_time` is the bar's open, UTC-aware; prices exactly as sent."""

    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None = None


@dataclass
class FetchedWindow:
    """A window we asked for and when its answer came. Bars opening in [start, closed_until) are
    settled: final, or absent for good (None: those that had closed by `fetched_at`)."""

    start: datetime
    end: datetime
    fetched_at: datetime
    bars: int
    closed_until: datetime | None = None


def subtract(window: Interval, covered: list[Interval]) -> list[Interval]:
    """The parts of `window` (half-open) not inside any of the `covered` intervals."""
    start, end = window
    missing: list[Interval] = []
    cursor = start
    for c_start, c_end in sorted(covered):
        if c_end <= cursor or c_start >= end:
            continue
        if c_start > cursor:
            missing.append((cursor, c_start))
        cursor = max(cursor, c_end)
        if cursor >= end:
            break
    if cursor < end:
        missing.append((cursor, end))
    return missing
