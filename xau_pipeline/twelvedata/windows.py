"""Interval arithmetic for incremental fetches: what is missing, and how to ask for it."""

from __future__ import annotations

from datetime import datetime, timedelta

from xau_pipeline.market_calendar import expected_slots, window_end_for_bars

Interval = tuple[datetime, datetime]

# Twelve Data returns at most 5000 bars per call (outputsize 1-5000).
MAX_BARS_PER_CALL = 5000


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


def plan_requests(gaps: list[Interval], bar: timedelta, max_bars: int = MAX_BARS_PER_CALL) -> list[Interval]:
    """Request windows covering every gap, each expected to hold at most `max_bars` bars.

    A call costs one credit whatever its size, so neighbouring gaps share a call whenever
    the span between them still fits; bars refetched in between are harmless (upsert).
    """
    requests: list[Interval] = []
    for gap_start, gap_end in sorted(gaps):
        if requests:
            last_start, last_end = requests[-1]
            if expected_slots(last_start, gap_end, bar) <= max_bars:
                requests[-1] = (last_start, max(last_end, gap_end))
                continue
        cursor = gap_start
        while cursor < gap_end:
            window_end = window_end_for_bars(cursor, gap_end, bar, max_bars)
            requests.append((cursor, window_end))
            cursor = window_end
    return requests
