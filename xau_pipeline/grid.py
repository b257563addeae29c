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

`detect_grid` reads the grid off stored bar opens, per stretch between US DST switches: each
stretch is matched against two candidates, the UTC grid at the series' dominant phase and the
New York 17:00 grid. When one candidate fits every stretch the series has that one grid; when
stretches disagree, `MixedGrid` holds each stretch's own.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property, lru_cache
from itertools import pairwise
from typing import Protocol
from zoneinfo import ZoneInfo

from xau_pipeline.utc import EPOCH

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
NEW_YORK = "America/New_York"
# The zone whose DST switches cut a series into stretches, and the anchor FX and metals feeds use.
SWITCH_ZONE = NEW_YORK
NEW_YORK_CLOSE = time(17)

__all__ = [
    "BarGrid",
    "DayCover",
    "Grid",
    "GridDetection",
    "MixedGrid",
    "Stretch",
    "detect_day_cover",
    "detect_grid",
    "dst_switches",
    "new_york_close_grid",
    "utc_grid",
]


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


@dataclass(frozen=True)
class Stretch:
    """One stretch between DST switches: [start, end) in UTC, its bars and the grid they fit."""

    start: datetime
    end: datetime
    bars: int
    grid: BarGrid
    # How many of the stretch's bars lie on each candidate grid (by description).
    fits: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class MixedGrid:
    """Different grids in different stretches (each stretch's [start, end) in UTC, ascending, adjoining)."""

    bar: timedelta
    stretches: tuple[Stretch, ...]

    @property
    def is_utc(self) -> bool:
        return False

    @property
    def phase(self) -> timedelta:
        raise ValueError("a mixed grid has no fixed UTC phase")

    def grid_at(self, moment: datetime) -> BarGrid:
        starts = [s.start for s in self.stretches]
        i = max(0, bisect_right(starts, moment) - 1)
        return self.stretches[i].grid

    def _pieces(self, start: datetime, end: datetime) -> Iterable[tuple[datetime, datetime, BarGrid]]:
        for i, stretch in enumerate(self.stretches):
            lo = start if i == 0 else max(start, stretch.start)
            hi = end if i == len(self.stretches) - 1 else min(end, self.stretches[i + 1].start)
            if lo < hi:
                yield lo, hi, stretch.grid

    def slots(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        out: list[tuple[datetime, datetime]] = []
        for lo, hi, grid in self._pieces(_aware(start, "start"), _aware(end, "end")):
            for slot in grid.slots(lo, hi):
                if out and slot[0] < out[-1][1]:
                    out[-1] = (out[-1][0], slot[0])  # a slot cut short where the next grid begins
                out.append(slot)
        return out

    def contains(self, moment: datetime) -> bool:
        return self.grid_at(moment).contains(moment)

    def slot_of(self, moment: datetime) -> tuple[datetime, datetime]:
        return self.grid_at(moment).slot_of(moment)

    def slot_closing_at(self, moment: datetime) -> datetime | None:
        return self.grid_at(moment - timedelta(microseconds=1)).slot_closing_at(moment)

    def describe(self) -> str:
        return "mixed: " + "; ".join(
            f"{s.start:%Y-%m-%d}..{s.end:%Y-%m-%d} {s.grid.describe()}" for s in self.stretches
        )

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True)
class GridDetection:
    """The grid read off a series' bars: `grid` (one BarGrid, or a MixedGrid) and the stretches seen."""

    grid: BarGrid | MixedGrid
    bars: int
    stretches: tuple[Stretch, ...] = field(default=())

    @property
    def uniform(self) -> bool:
        return isinstance(self.grid, BarGrid)

    def describe(self) -> str:
        return f"{self.grid.describe()} (from {self.bars} bars, {len(self.stretches)} DST stretch(es))"


def dst_switches(start: datetime, end: datetime, zone: str = SWITCH_ZONE) -> list[datetime]:
    """The instants in (start, end] at which `zone`'s UTC offset changes, ascending (to the hour)."""
    tz = ZoneInfo(zone)
    out: list[datetime] = []
    day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    offset = day.astimezone(tz).utcoffset()
    while day < end:
        nxt = day + DAY
        nxt_offset = nxt.astimezone(tz).utcoffset()
        if nxt_offset != offset:
            hour = day
            while hour.astimezone(tz).utcoffset() == offset:
                hour += HOUR
            if start < hour <= end:
                out.append(hour)
            offset = nxt_offset
        day = nxt
    return out


def _dominant_phase(opens: Sequence[datetime], bar: timedelta) -> timedelta:
    counts = Counter((t - EPOCH) % bar for t in opens)
    return min(counts, key=lambda phase: (-counts[phase], phase))


def detect_grid(opens: Sequence[datetime], bar: timedelta) -> GridDetection:
    """The grid stored bar `opens` (UTC-aware) lie on.

    Bars dividing an hour: the UTC grid at the dominant phase. Longer bars: per stretch between
    New York DST switches, the candidate (UTC at the series' dominant phase, or New York 17:00)
    on which most of the stretch's bars lie; where both fit equally (in winter, a UTC 4h grid at
    22/02/... UTC is the New York one) the stretch agrees with both. One candidate that fits every
    stretch is the series' grid (UTC first when both do); otherwise each stretch keeps its own.
    No bars: the UTC grid at phase 0.
    """
    opens = sorted(_aware(t, "open") for t in opens)
    if not opens:
        return GridDetection(utc_grid(bar), 0)
    phase = _dominant_phase(opens, bar)
    utc = utc_grid(bar, phase)
    if utc.is_utc and HOUR % bar == timedelta(0):
        return GridDetection(utc, len(opens))
    new_york = new_york_close_grid(bar)
    bounds = [opens[0], *dst_switches(opens[0], opens[-1]), opens[-1] + bar]
    new_york_opens = set(new_york.opens(opens[0], opens[-1] + bar))
    stretches: list[Stretch] = []
    utc_everywhere = new_york_everywhere = True
    for lo, hi in pairwise(bounds):
        part = opens[bisect_left(opens, lo) : bisect_left(opens, hi)]
        if not part:
            continue
        on_utc = sum(utc.contains(t) for t in part)
        on_ny = sum(t in new_york_opens for t in part)
        best_count = max(on_utc, on_ny)
        chosen = utc if on_utc >= on_ny else new_york
        if best_count * 2 < len(part):
            # Neither candidate holds most of the stretch: its own dominant UTC phase.
            chosen = utc_grid(bar, _dominant_phase(part, bar))
            best_count = sum(chosen.contains(t) for t in part)
        utc_everywhere &= on_utc == best_count
        new_york_everywhere &= on_ny == best_count
        fits = ((utc.describe(), on_utc), (new_york.describe(), on_ny))
        stretches.append(Stretch(lo, hi, len(part), chosen, fits))
    for candidate, everywhere in ((utc, utc_everywhere), (new_york, new_york_everywhere)):
        if everywhere:
            # A stretch both candidates fit equally is recorded with the series' grid.
            agreed = tuple(Stretch(s.start, s.end, s.bars, candidate, s.fits) for s in stretches)
            return GridDetection(candidate, len(opens), agreed)
    # Mixed. A stretch both candidates fit equally takes New York 17:00 when another stretch needed
    # it (the UTC phase that coincides with it there fits no stretch of its own).
    if any(s.grid == new_york for s in stretches):
        stretches = [
            Stretch(s.start, s.end, s.bars, new_york, s.fits)
            if dict(s.fits)[utc.describe()] == dict(s.fits)[new_york.describe()] == s.bars
            else s
            for s in stretches
        ]
    # Stretches run from switch to switch; the first and last stay open-ended.
    merged: list[Stretch] = []
    for stretch in stretches:
        if merged and merged[-1].grid.same_as(stretch.grid):
            last = merged[-1]
            merged[-1] = Stretch(last.start, stretch.end, last.bars + stretch.bars, last.grid, last.fits)
        else:
            merged.append(stretch)
    if len(merged) == 1:
        return GridDetection(merged[0].grid, len(opens), tuple(stretches))
    return GridDetection(MixedGrid(bar, tuple(merged)), len(opens), tuple(stretches))


# ------------------------------------------------------------------------------------------------
# The day a D1 bar holds, read off the H1 bars
# ------------------------------------------------------------------------------------------------

# A D1 bar's OHLC beside its H1 bars: (open, high, low, close).
Prices = tuple[Decimal, Decimal, Decimal, Decimal]
# How far (relative) a D1 price may lie from its H1 aggregate and still match it.
DAY_MATCH_TOLERANCE = Decimal("0.000001")


def day_candidates() -> tuple[BarGrid, ...]:
    """Where a day may begin: 00:00 to 23:00 UTC, and 17:00 New York (which moves with US DST)."""
    return (*(BarGrid(DAY, "UTC", time(h)) for h in range(24)), new_york_close_grid(DAY))


@dataclass(frozen=True)
class DayCover:
    """The day each stored D1 bar holds, as its H1 bars show it.

    `grid` is where such a day opens (None: no candidate fits most bars). `dated` is True when the
    bars are stored at 00:00 UTC of their bare date rather than at the open of the day they hold
    (a day not starting at 00:00 UTC): the bar dated D holds the day of `grid` holding D 12:00 UTC.
    """

    grid: BarGrid | None
    dated: bool
    matched: int
    compared: int

    def slot_of_bar(self, stored: datetime) -> tuple[datetime, datetime]:
        """The [open, close) of the day the D1 bar stored at `stored` holds."""
        if self.grid is None:
            return stored, stored + DAY
        return self.grid.slot_of(stored + DAY / 2)

    def describe(self) -> str:
        if self.grid is None:
            return (
                f"grid mismatch: the D1 bars fit no day boundary tried (00:00-23:00 UTC, 17:00 New York): "
                f"{self.matched} of {self.compared} bar(s) with H1 bars match their best fit. Not compared with M15."
            )
        held = f"each holds the day of the {self.grid.describe()} grid"
        if not self.dated:
            return f"D1 bars stored at their open; {held} ({self.matched} of {self.compared} checked against H1)"
        return (
            f"D1 bars stored at 00:00 UTC of the date Twelve Data gives them; {held} holding that date's noon "
            f"UTC ({self.matched} of {self.compared} checked against H1)"
        )


def _matches(day: Prices, hours: Sequence[Prices]) -> bool:
    if not hours:
        return False
    aggregate = (hours[0][0], max(h[1] for h in hours), min(h[2] for h in hours), hours[-1][3])
    return all(abs(a - b) <= DAY_MATCH_TOLERANCE * abs(b) for a, b in zip(day, aggregate))


def detect_day_cover(days: Sequence[tuple[datetime, Prices]], hours: Sequence[tuple[datetime, Prices]]) -> DayCover:
    """Which day each stored D1 bar (`days`: open or date, and OHLC) holds, from the H1 bars
    (`hours`, ascending): the candidate boundary whose days' H1 aggregates match most D1 bars.

    Ties go to a boundary the stored opens lie on, then to 00:00 UTC and the boundary nearest it.
    Bars without H1 bars are not compared.
    """
    hour_opens = [t for t, _ in hours]
    candidates = day_candidates()
    counts = dict.fromkeys(candidates, 0)
    compared = 0
    for stored, prices in days:
        noon = _aware(stored, "open") + DAY / 2
        seen = False
        for candidate in candidates:
            lo, hi = candidate.slot_of(noon)
            part = [p for _, p in hours[bisect_left(hour_opens, lo) : bisect_left(hour_opens, hi)]]
            seen |= bool(part)
            counts[candidate] += _matches(prices, part)
        compared += seen

    stored_opens = [_aware(t, "open") for t, _ in days]

    def rank(candidate: BarGrid) -> tuple[int, bool, int]:
        # Where hours are missing (a closed market) several boundaries fit: the one the stored
        # opens lie on first, then 00:00 UTC and its nearest neighbours.
        on_opens = all(candidate.contains(t) for t in stored_opens)
        after = candidate.anchor.hour if candidate.zone == "UTC" else 12
        return (-counts[candidate], not on_opens, min(after, 24 - after))

    best = min(candidates, key=rank)
    if compared == 0:
        return DayCover(utc_grid(DAY), False, 0, 0)
    if counts[best] * 2 <= compared:
        return DayCover(None, False, counts[best], compared)
    dated = not all(best.contains(t) for t in stored_opens)
    return DayCover(best, dated, counts[best], compared)
