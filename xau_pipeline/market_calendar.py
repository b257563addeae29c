"""Which bar slots a feed can be expected to fill: used to size request windows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
WEEK = timedelta(days=7)
# Epoch is a Thursday; the first Sunday 00:00 UTC after it.
FIRST_SUNDAY = datetime(1970, 1, 4, tzinfo=timezone.utc)

# Spot gold trades Sunday 18:00 to Friday 17:00 New York time: Sun 23:00-Fri 22:00 UTC in
# winter, an hour earlier in summer (US DST). The union, Sun 22:00-Fri 22:00 UTC, bounds both.
FX_WEEK_OPEN = timedelta(days=0, hours=22)
FX_WEEK_CLOSE = timedelta(days=5, hours=22)


def floor_to_grid(t: datetime, bar: timedelta) -> datetime:
    """The slot boundary at or before `t` on the grid of `bar` aligned to the Unix epoch."""
    return t - (t - EPOCH) % bar


def ceil_to_grid(t: datetime, bar: timedelta) -> datetime:
    floor = floor_to_grid(t, bar)
    return floor if floor == t else floor + bar


def overlaps_fx_week(slot_open: datetime, bar: timedelta) -> bool:
    """Whether [slot_open, slot_open + bar) overlaps the weekly session bound Sun 22:00 - Fri 22:00 UTC."""
    offset = (slot_open - FIRST_SUNDAY) % WEEK
    slot_end = offset + bar
    # The slot may straddle the week boundary; check this week's session and next week's.
    return (offset < FX_WEEK_CLOSE and slot_end > FX_WEEK_OPEN) or slot_end > WEEK + FX_WEEK_OPEN


def window_end_for_bars(start: datetime, limit: datetime, bar: timedelta, max_bars: int) -> datetime:
    """The latest end <= `limit` such that [start, end) holds at most `max_bars` expected slots."""
    count = 0
    slot = ceil_to_grid(start, bar)
    while slot < limit:
        if overlaps_fx_week(slot, bar):
            count += 1
            if count > max_bars:
                return slot
        slot += bar
    return limit


def expected_slots(start: datetime, end: datetime, bar: timedelta) -> int:
    """How many slots opening in [start, end) may hold a bar."""
    count = 0
    slot = ceil_to_grid(start, bar)
    while slot < end:
        count += overlaps_fx_week(slot, bar)
        slot += bar
    return count
