"""Bar-grid detection: which grid a series' bars open on, and which grid a D1 bar covers.

`detect_grid` reads the grid off stored bar opens, per stretch between US DST switches: each
stretch is matched against two candidates, the UTC grid at the series' dominant phase and the
New York 17:00 grid. When one candidate fits every stretch the series has that one grid; when
stretches disagree, `MixedGrid` holds each stretch's own.

`detect_day_cover` tells which grid a D1 bar covers by comparing its prices with the H1 bars.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

from xau_pipeline.market.bar_grid import (
    DAY,
    EPOCH,
    HOUR,
    SWITCH_ZONE,
    BarGrid,
    Prices,
    _aware,
    new_york_close_grid,
    utc_grid,
)


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


def _merge_same_grid(stretches: Sequence[Stretch]) -> list[Stretch]:
    """Neighbouring stretches on the same grid as one. Stretches run from switch to switch; the first
    and last stay open-ended."""
    merged: list[Stretch] = []
    for stretch in stretches:
        if merged and merged[-1].grid.same_as(stretch.grid):
            last = merged[-1]
            merged[-1] = Stretch(last.start, stretch.end, last.bars + stretch.bars, last.grid, last.fits)
        else:
            merged.append(stretch)
    return merged


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
    merged = _merge_same_grid(stretches)
    if len(merged) == 1:
        return GridDetection(merged[0].grid, len(opens), tuple(stretches))
    return GridDetection(MixedGrid(bar, tuple(merged)), len(opens), tuple(stretches))


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
