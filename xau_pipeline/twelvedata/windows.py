"""Request windows: how to ask Twelve Data for missing spans in as few calls as its 5000-bar pages allow."""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from xau_pipeline.market.bars import Interval

if TYPE_CHECKING:
    from xau_pipeline.market.bar_grid import Grid
    from xau_pipeline.market.market_hours import TradingCalendar

# Twelve Data returns at most 5000 bars per call (outputsize 1-5000).
MAX_BARS_PER_CALL = 5000


def merge_gaps(
    gaps: list[Interval],
    bar: timedelta,
    calendar: TradingCalendar,
    max_bars: int = MAX_BARS_PER_CALL,
    grid: Grid | None = None,
    keep_closed: bool = False,
) -> list[Interval]:
    """Gaps joined into spans wherever the joined span still fits one call.

    A call costs one credit whatever its size, so neighbouring gaps share a call; bars
    refetched in between are harmless (the upsert leaves them unchanged). Gaps in which the
    market is closed throughout are dropped, unless `keep_closed` (the feed showed it sends bars
    there: a page filled before its window's start). With the series' `grid` (xau_pipeline.market.bar_grid) the
    sizes count its slots; without, the UTC grid at phase 0 (a page filled early is handled by
    the client, which then ends the next window at the page's oldest bar).
    """
    spans: list[Interval] = []
    for gap_start, gap_end in sorted(gaps):
        if not keep_closed and not calendar.sessions(gap_start, gap_end + bar):
            # No bar opening in the gap can overlap a session, whatever the bar grid's phase (a
            # zoned grid's bar outlasts `bar` only on a DST Sunday night, when no market here opens).
            continue
        if spans and calendar.count_expected(spans[-1][0], gap_end, bar, grid=grid) <= max_bars:
            spans[-1] = (spans[-1][0], max(spans[-1][1], gap_end))
        else:
            spans.append((gap_start, gap_end))
    return spans


class WindowPlanner:
    """Request windows for one span, newest first, each expected to hold at most `max_bars` bars.

    Windows run backwards from the span's end because Twelve Data, when a range holds more
    than outputsize bars, keeps the newest: whatever a full page leaves out ends the next window.
    """

    def __init__(
        self,
        span: Interval,
        bar: timedelta,
        calendar: TradingCalendar,
        max_bars: int = MAX_BARS_PER_CALL,
        grid: Grid | None = None,
    ):
        self.start, self.end = span
        self.max_bars = max_bars
        self.grid = grid
        self._slots = calendar.expected_slots(self.start, self.end, bar, grid=grid)

    @property
    def expected_calls(self) -> int:
        return -(-len(self._slots) // self.max_bars)

    def calls_reaching(self, start: datetime) -> int:
        """Calls that fetch the span's newest windows, end first, until one reaches back to `start`."""
        calls, cursor = 0, self.end
        while cursor > max(self.start, start):
            cursor = self.window_ending_at(cursor)[0]
            calls += 1
        return calls

    def window_ending_at(self, end: datetime) -> Interval:
        """The longest window ending at `end` that holds at most `max_bars` expected slots."""
        newest = bisect_left(self._slots, end)
        oldest = newest - self.max_bars
        return (self.start if oldest <= 0 else self._slots[oldest], end)
