"""The window a gap report covers: its defaults and its limit, the same for the CLI and the HTTP API.

A gap report lists every missing slot, so a window holds at most MAX_GAP_SLOTS bar slots (ten years
and a few days of M15, about 0.1 s to check; as many H1, H4 or D1 slots cover 4, 16 and 96 times
as long) and spans at most MAX_GAP_SPAN whatever the bar, as the calendar is built a year at a time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from xau_pipeline.clock import iso_utc

DEFAULT_GAP_WINDOW = timedelta(days=7)
MAX_GAP_SLOTS = timedelta(days=3660) // timedelta(minutes=15)
MAX_GAP_SPAN = timedelta(days=4 * 3660)


class GapWindowTooLongError(ValueError):
    """A gap window longer than the most checked at once; its message is one line saying so."""

    def __init__(self, timeframe: str, start: datetime, end: datetime, longest: timedelta):
        self.longest = longest
        super().__init__(
            f"the window {iso_utc(start)} to {iso_utc(end)} is longer than {longest.days} days, the most "
            f"{timeframe} gaps are checked for at once: ask in parts"
        )


def longest_gap_window(bar: timedelta) -> timedelta:
    """The longest window a gap report of bars of `bar` covers."""
    return min(bar * MAX_GAP_SLOTS, MAX_GAP_SPAN)


def check_gap_window(timeframe: str, bar: timedelta, start: datetime, end: datetime) -> None:
    """Raise GapWindowTooLongError when [start, end) is longer than a gap report covers."""
    longest = longest_gap_window(bar)
    if end - start > longest:
        raise GapWindowTooLongError(timeframe, start, end, longest)


def gap_window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The window of a gap report asked for with `start` and `end` either left out: the end is
    now (or DEFAULT_GAP_WINDOW after a start in the future), the start DEFAULT_GAP_WINDOW before
    the end."""
    if end is None:
        end = now if start is None or start <= now else start + DEFAULT_GAP_WINDOW
    if start is None:
        start = end - DEFAULT_GAP_WINDOW
    return start, end
