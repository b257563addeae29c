"""Bar grids: where a series' bars open, detected from the bars themselves, never hard-coded.

A grid is a bar length plus an anchor: a zone and a local time of day at which a bar opens,
such as ``UTC 00:00`` or ``America/New_York 17:00``. Bars open at the anchor and every bar length
after it, counted in the zone's *local* time: a 4h grid anchored at 17:00 New York opens at 17, 21,
01, 05, 09 and 13 New York time, which is 22/02/06/10/14/18 UTC in winter and 21/01/05/09/13/17 UTC
in summer; a 1day grid anchored there opens at 17:00 New York (22:00 or 21:00 UTC) and runs to the
next 17:00, so the bar opening Sunday evening covers Sunday evening together with Monday.

A zoned grid's bar is as long as the local clock says: on the Sunday of a DST switch the New York
4h bar opening 01:00 is 3 hours long in March and 5 in November (both while gold is closed). An
open that falls in a repeated local hour is the first of the two instants (fold=0). Grids whose
bar divides an hour (M15, H1) are the same in every zone with whole-hour offsets, so they stay UTC
grids, which the gap query enumerates in SQL (the fast path).

Which grid a series' bars are on is read off the bars themselves: grid_detection.py.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

from xau_pipeline.clock import EPOCH

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
NEW_YORK = "America/New_York"
# The zone whose DST switches cut a series into stretches, and the anchor FX and metals feeds use.
SWITCH_ZONE = NEW_YORK
NEW_YORK_CLOSE = time(17)

__all__ = ["BarGrid", "Grid", "new_york_close_grid", "utc_grid"]


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value!r}")
    return value.astimezone(UTC)


class Grid(Protocol):
    """What everything reasoning about slots needs of a grid."""

    @property
    def bar(self) -> timedelta: ...

    @property
    def is_utc(self) -> bool: ...

    @property
    def phase(self) -> timedelta: ...

    def slots(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """(open, close) of every slot opening in [start, end), UTC, ascending."""
        ...

    def contains(self, moment: datetime) -> bool:
        """Whether a bar may open at `moment` on this grid."""
        ...

    def slot_closing_at(self, moment: datetime) -> datetime | None:
        """The open of the slot that closes exactly at `moment`, if one does."""
        ...

    def slot_of(self, moment: datetime) -> tuple[datetime, datetime]:
        """The slot [open, close) holding `moment`."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class BarGrid:
    """Bars of length `bar` opening at `anchor` (local time of day in `zone`) and every `bar` after it.

    `bar` must divide a day. For a UTC grid the anchor is equivalent to a phase after the epoch
    grid (`phase`); for other zones slots are counted in local time (DST-correct).
    """

    bar: timedelta
    zone: str = "UTC"
    anchor: time = time(0)

    def __post_init__(self) -> None:
        if self.bar <= timedelta(0) or DAY % self.bar:
            raise ValueError(f"a grid's bar must divide a day, got {self.bar!r}")
        if self.zone != "UTC":
            ZoneInfo(self.zone)  # raises for an unknown zone

    # ---- identity ------------------------------------------------------------------------------

    @property
    def is_utc(self) -> bool:
        """True when the grid is a fixed UTC phase (any zone is, for bars dividing an hour)."""
        return self.zone == "UTC" or HOUR % self.bar == timedelta(0)

    @cached_property
    def phase(self) -> timedelta:
        """The offset after the UTC epoch grid (UTC grids only)."""
        if not self.is_utc:
            raise ValueError(f"{self.describe()} has no fixed UTC phase")
        # In another zone the bar divides an hour, so the zone's whole-hour offsets drop out.
        return _time_offset(self.anchor) % self.bar

    def same_as(self, other: BarGrid) -> bool:
        if self.bar != other.bar:
            return False
        if self.is_utc and other.is_utc:
            return self.phase == other.phase
        return (
            self.zone == other.zone and _time_offset(self.anchor) % self.bar == _time_offset(other.anchor) % other.bar
        )

    def describe(self) -> str:
        """`4h anchored America/New_York 17:00`, `1day anchored UTC 00:00`."""
        return f"{_bar_label(self.bar)} anchored {self.zone} {self.anchor:%H:%M}"

    def __str__(self) -> str:
        return self.describe()

    # ---- slots ---------------------------------------------------------------------------------

    def slots(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        start, end = _aware(start, "start"), _aware(end, "end")
        if start >= end:
            return []
        if self.is_utc:
            phase = self.phase
            k = -((EPOCH + phase - start) // self.bar)
            t = EPOCH + phase + k * self.bar
            out = []
            while t < end:
                out.append((t, t + self.bar))
                t += self.bar
            return out
        opens = self._zoned_opens(start - 2 * DAY, end + 2 * DAY)
        lo, hi = bisect_left(opens, start), bisect_left(opens, end)
        return [(opens[i], opens[i + 1]) for i in range(lo, hi)]

    def opens(self, start: datetime, end: datetime) -> list[datetime]:
        return [o for o, _ in self.slots(start, end)]

    def contains(self, moment: datetime) -> bool:
        moment = _aware(moment, "moment")
        if self.is_utc:
            return (moment - EPOCH - self.phase) % self.bar == timedelta(0)
        opens = self._zoned_opens(moment - 2 * DAY, moment + 2 * DAY)
        i = bisect_left(opens, moment)
        return i < len(opens) and opens[i] == moment

    def slot_closing_at(self, moment: datetime) -> datetime | None:
        moment = _aware(moment, "moment")
        if self.is_utc:
            return moment - self.bar if self.contains(moment) else None
        opens = self._zoned_opens(moment - 2 * DAY, moment + 2 * DAY)
        i = bisect_left(opens, moment)
        return opens[i - 1] if 0 < i < len(opens) and opens[i] == moment else None

    def slot_of(self, moment: datetime) -> tuple[datetime, datetime]:
        """The slot [open, close) holding `moment`."""
        moment = _aware(moment, "moment")
        if self.is_utc:
            k = (moment - EPOCH - self.phase) // self.bar
            t = EPOCH + self.phase + k * self.bar
            return t, t + self.bar
        opens = self._zoned_opens(moment - 2 * DAY, moment + 2 * DAY)
        i = bisect_right(opens, moment) - 1
        return opens[i], opens[i + 1]

    def _zoned_opens(self, start: datetime, end: datetime) -> list[datetime]:
        """Every open in [start, end) (UTC, ascending, deduplicated), by local calendar day."""
        zone = ZoneInfo(self.zone)
        per_day = DAY // self.bar
        first = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date() + timedelta(days=1)
        return [t for t in _zoned_day_opens(self.zone, self.anchor, self.bar, per_day, first, last) if start <= t < end]


@lru_cache(maxsize=16384)
def _zoned_day_opens_cached(
    zone_name: str, anchor: time, bar: timedelta, per_day: int, day_ordinal: int
) -> tuple[datetime, ...]:
    """The UTC opens of the `per_day` bars counted from `anchor` on one local day (cached per day)."""
    zone = ZoneInfo(zone_name)
    day = date.fromordinal(day_ordinal)
    base = datetime.combine(day, anchor)
    out = []
    for j in range(per_day):
        local = base + j * bar  # naive wall-clock time; may run into the next calendar day
        out.append(local.replace(tzinfo=zone).astimezone(UTC))
    return tuple(out)


def _zoned_day_opens(zone: str, anchor: time, bar: timedelta, per_day: int, first: date, last: date) -> list[datetime]:
    seen: set[datetime] = set()
    out: list[datetime] = []
    for ordinal in range(first.toordinal(), last.toordinal() + 1):
        for t in _zoned_day_opens_cached(zone, anchor, bar, per_day, ordinal):
            if t not in seen:
                seen.add(t)
                out.append(t)
    out.sort()
    return out


def _time_offset(at: time) -> timedelta:
    return timedelta(hours=at.hour, minutes=at.minute, seconds=at.second)


def _bar_label(bar: timedelta) -> str:
    if bar % DAY == timedelta(0):
        return f"{bar // DAY}day"
    if bar % HOUR == timedelta(0):
        return f"{bar // HOUR}h"
    return f"{int(bar.total_seconds() // 60)}min"


def utc_grid(bar: timedelta, phase: timedelta = timedelta(0)) -> BarGrid:
    """The UTC grid `phase` after the epoch grid (what a bare `phase` meant before grids)."""
    offset = phase % bar
    return BarGrid(bar, "UTC", (datetime.min + offset).time())


def new_york_close_grid(bar: timedelta) -> BarGrid:
    """The grid anchored at 17:00 New York, as many FX and metals feeds build H4 and D1."""
    return BarGrid(bar, NEW_YORK, NEW_YORK_CLOSE)


# ------------------------------------------------------------------------------------------------
# Mixed grids and detection
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# The day a D1 bar holds, read off the H1 bars
# ------------------------------------------------------------------------------------------------

# A D1 bar's OHLC beside its H1 bars: (open, high, low, close).
Prices = tuple[Decimal, Decimal, Decimal, Decimal]
