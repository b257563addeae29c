"""When a market is open, and which bar slots a feed can therefore be expected to fill.

Three policies, by name (`CALENDAR_NAMES`):

* ``cme_gold`` (the default for XAU/USD): CME Globex metals hours, Sunday 18:00 to Friday 17:00
  New York time with a 17:00-18:00 New York break Monday-Thursday; closed Good Friday, Christmas
  Day and New Year's Day; early closes on US holidays. Built from pandas_market_calendars'
  ``CMEGlobex_Gold`` schedule (one session per CME trade date, open the previous evening at 17:00
  Chicago, close 16:00 Chicago; the daily break is the gap between a close and the next open)
  plus the corrections in `xau_pipeline.calendar_overrides`: a per-year table of CME metals
  holiday hours for 2019-2027 (checked against real XAU/USD bars) that replaces the library's
  holiday closes, the same pattern projected after 2027, and Christmas Eve outside the table.
* ``fx_24x5``: Sunday 17:00 to Friday 17:00 New York time, continuous, no holidays.
* ``24x7``: always open.

Every datetime in and out is timezone-aware (naive ones raise ValueError); outputs are UTC.
Sessions are half-open [open, close) intervals. A bar slot [t, t + bar) lies on the grid
t = 1970-01-01 00:00 UTC + phase + k * bar and is *expected* when it overlaps a session; or, given
a `xau_pipeline.grid` grid anchored in a zone, on that grid's slots (counted in local time).

Internally times are int64 microseconds since the epoch and sessions numpy arrays, cached per
calendar year, so a ten-year M15 count is a few vectorised operations over ~2,600 sessions.
``cme_gold``'s sessions for 2000-2035 are also stored, as that same build wrote them
(`cme_gold_sessions.npz`, rewritten by `make calendar-table`), so a run's process reads them
without importing pandas; test_trading_calendar.py fails when the file and the build disagree.
"""

from __future__ import annotations

import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np

from xau_pipeline import calendar_overrides
from xau_pipeline.utc import EPOCH

if TYPE_CHECKING:
    from xau_pipeline.grid import Grid

UTC = UTC
NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")

CALENDAR_NAMES: tuple[str, ...] = ("cme_gold", "fx_24x5", "24x7")

_MICROSECOND = timedelta(microseconds=1)
# Sessions are looked up by calendar year; this margin covers a session that opens in the year
# before the one its CME trade date (or fx week's Sunday) falls in, and vice versa.
_YEAR_LOOKUP_MARGIN = timedelta(days=7)
# Far enough to stand for "forever" in µs, small enough that adding a bar cannot overflow int64.
_FOREVER_US = 2**62
# cme_gold's sessions of these years as `CmeGoldCalendar.library_years` builds them: importing pandas
# and pandas_market_calendars and building a schedule costs a process ~0.6 s, reading these ~1 ms.
CME_SESSIONS_TABLE = Path(__file__).with_name("cme_gold_sessions.npz")
CME_TABLE_YEARS = (2000, 2035)

__all__ = ["CALENDAR_NAMES", "TradingCalendar", "calendar", "slot_grid"]


# --------------------------------------------------------------------------------------------
# Conversions and the slot grid
# --------------------------------------------------------------------------------------------


def _to_us(value: datetime, what: str) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value!r}")
    return (value - EPOCH) // _MICROSECOND


def _from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


def _bar_us(bar: timedelta) -> int:
    if not isinstance(bar, timedelta):
        raise TypeError(f"bar must be a timedelta, got {type(bar).__name__}")
    bar_us = bar // _MICROSECOND
    if bar_us <= 0:
        raise ValueError(f"bar must be positive, got {bar!r}")
    return bar_us


def _phase_us(phase: timedelta, bar_us: int) -> int:
    """The grid's offset from the epoch, reduced into [0, bar)."""
    if not isinstance(phase, timedelta):
        raise TypeError(f"phase must be a timedelta, got {type(phase).__name__}")
    return (phase // _MICROSECOND) % bar_us


def _first_k_at_or_after(t_us: int, phase_us: int, bar_us: int) -> int:
    """The smallest k with phase + k * bar >= t."""
    return -((phase_us - t_us) // bar_us)


def _grid_k_range(start: datetime, end: datetime, bar: timedelta, phase: timedelta) -> tuple[int, int, int, int]:
    """(k_lo, k_hi_exclusive, phase_us, bar_us) of the grid slots opening in [start, end)."""
    start_us = _to_us(start, "start")
    end_us = _to_us(end, "end")
    bar_us = _bar_us(bar)
    phase_us = _phase_us(phase, bar_us)
    k_lo = _first_k_at_or_after(start_us, phase_us, bar_us)
    k_hi = _first_k_at_or_after(end_us, phase_us, bar_us)
    return k_lo, max(k_lo, k_hi), phase_us, bar_us


def slot_grid(start: datetime, end: datetime, bar: timedelta, phase: timedelta = timedelta(0)) -> list[datetime]:
    """Every slot open t = epoch + phase + k * bar with start <= t < end, UTC-aware, ascending."""
    k_lo, k_hi, phase_us, bar_us = _grid_k_range(start, end, bar, phase)
    return [_from_us(phase_us + k * bar_us) for k in range(k_lo, k_hi)]


# --------------------------------------------------------------------------------------------
# Session arrays
# --------------------------------------------------------------------------------------------

_EMPTY = np.empty(0, dtype=np.int64)


def _merge(opens: np.ndarray, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (by open) sessions with overlapping or touching ones merged; empty ones dropped."""
    keep = closes > opens
    if not keep.all():
        opens, closes = opens[keep], closes[keep]
    if len(opens) <= 1:
        return opens, closes
    # Sessions are sorted by open; one starts a new group when it opens after every earlier close.
    running_close = np.maximum.accumulate(closes)
    new_group = np.empty(len(opens), dtype=bool)
    new_group[0] = True
    new_group[1:] = opens[1:] > running_close[:-1]
    if new_group.all():
        return opens, closes
    starts = np.flatnonzero(new_group)
    return opens[starts], np.maximum.reduceat(closes, starts)


class TradingCalendar(ABC):
    """A trading-hours policy: its sessions, and the bar slots expected to hold data."""

    name: str

    # ---- what a policy provides ------------------------------------------------------------

    @abstractmethod
    def _sessions_us(self, lo_us: int, hi_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted, merged (open, close) µs arrays including every session overlapping [lo, hi).
        May include sessions outside that range."""

    # ---- the public API ----------------------------------------------------------------------

    def sessions(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """Trading sessions as UTC [open, close) intervals clipped to [start, end): sorted,
        non-overlapping, merged where they touch."""
        start_us = _to_us(start, "start")
        end_us = _to_us(end, "end")
        if start_us >= end_us:
            return []
        opens, closes = self._overlapping(start_us, end_us)
        return [(_from_us(max(o, start_us)), _from_us(min(c, end_us))) for o, c in zip(opens.tolist(), closes.tolist())]

    def is_open(self, t: datetime) -> bool:
        """Whether `t` lies inside a session (opens are inside, closes are not)."""
        t_us = _to_us(t, "t")
        opens, closes = self._sessions_us(t_us, t_us + 1)
        i = int(np.searchsorted(opens, t_us, side="right")) - 1
        return i >= 0 and t_us < int(closes[i])

    def expected_slots(
        self, start: datetime, end: datetime, bar: timedelta, phase: timedelta = timedelta(0), grid: Grid | None = None
    ) -> list[datetime]:
        """The grid slots [t, t + bar) with start <= t < end that overlap a session, UTC, ascending.

        With `grid` (xau_pipeline.grid), its slots (`bar` and `phase` are then ignored); a zoned
        grid's slot runs to the next open, which is what its local clock makes of `bar`.
        """
        if grid is not None:
            if not grid.is_utc:
                return [slot for slot, _close in self.expected_slot_bounds(start, end, grid)]
            bar, phase = grid.bar, grid.phase
        lows, highs, phase_us, bar_us = self._slot_k_ranges(start, end, bar, phase)
        slots: list[datetime] = []
        for k_lo, k_hi in zip(lows.tolist(), highs.tolist()):
            slots.extend(_from_us(phase_us + k * bar_us) for k in range(k_lo, k_hi))
        return slots

    def count_expected(
        self, start: datetime, end: datetime, bar: timedelta, phase: timedelta = timedelta(0), grid: Grid | None = None
    ) -> int:
        """len(expected_slots(start, end, bar, phase, grid)), without building the list for UTC grids."""
        if grid is not None:
            if not grid.is_utc:
                return len(self.expected_slot_bounds(start, end, grid))
            bar, phase = grid.bar, grid.phase
        lows, highs, _, _ = self._slot_k_ranges(start, end, bar, phase)
        return int((highs - lows).sum())

    def count_expected_per_slot(
        self, start: datetime, end: datetime, bar: timedelta, slot: timedelta, phase: timedelta = timedelta(0)
    ) -> dict[datetime, int]:
        """How many expected `bar` slots (UTC grid, phase 0) opening in [start, end) lie in each slot of
        the coarser UTC grid of `slot` at `phase` (its open -> count; slots holding none left out)."""
        lows, highs, phase_us, bar_us = self._slot_k_ranges(start, end, bar, timedelta(0))
        if not len(lows):
            return {}
        ks = np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi in zip(lows.tolist(), highs.tolist())])
        opens = phase_us + ks * bar_us
        coarse = opens - (opens - phase // _MICROSECOND) % _bar_us(slot)
        held, counts = np.unique(coarse, return_counts=True)
        return {_from_us(t): n for t, n in zip(held.tolist(), counts.tolist())}

    def expected_slot_bounds(self, start: datetime, end: datetime, grid: Grid) -> list[tuple[datetime, datetime]]:
        """(open, close) of the `grid` slots opening in [start, end) that overlap a session, UTC, ascending."""
        slots = grid.slots(start, end)
        if not slots:
            return []
        slot_opens = np.array([_to_us(o, "slot") for o, _ in slots], dtype=np.int64)
        slot_closes = np.array([_to_us(c, "slot") for _, c in slots], dtype=np.int64)
        opens, closes = self._overlapping(int(slot_opens[0]), int(slot_closes[-1]))
        if len(opens) == 0:
            return []
        # The first session closing after the slot opens must open before the slot closes.
        i = np.searchsorted(closes, slot_opens, side="right")
        inside = i < len(opens)
        overlaps = np.zeros(len(slots), dtype=bool)
        overlaps[inside] = opens[i[inside]] < slot_closes[inside]
        return [slot for slot, keep in zip(slots, overlaps.tolist()) if keep]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # ---- shared machinery ---------------------------------------------------------------------

    def _overlapping(self, lo_us: int, hi_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Exactly the sessions overlapping [lo, hi) (unclipped)."""
        opens, closes = self._sessions_us(lo_us, hi_us)
        first = int(np.searchsorted(closes, lo_us, side="right"))  # first close > lo
        last = int(np.searchsorted(opens, hi_us, side="left"))  # opens < hi
        return opens[first:last], closes[first:last]

    def _slot_k_ranges(
        self, start: datetime, end: datetime, bar: timedelta, phase: timedelta
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Disjoint, ascending half-open ranges [low, high) of grid indices k of expected slots."""
        k_start, k_end, phase_us, bar_us = _grid_k_range(start, end, bar, phase)
        if k_start >= k_end:
            return _EMPTY, _EMPTY, phase_us, bar_us
        # Slots opening in [start, end) cover [first slot, last slot + bar).
        first_us = phase_us + k_start * bar_us
        stop_us = phase_us + k_end * bar_us  # = last slot open + bar
        opens, closes = self._overlapping(first_us, stop_us)
        if len(opens) == 0:
            return _EMPTY, _EMPTY, phase_us, bar_us
        # Slot k overlaps [o, c) iff o - bar < t_k < c, i.e. (o - phase) // bar <= k < ceil((c - phase) / bar).
        lows = np.maximum((opens - phase_us) // bar_us, k_start)
        highs = np.minimum(-((phase_us - closes) // bar_us), k_end)
        # One slot can overlap two sessions (e.g. an H4 slot across the daily break): sessions are
        # sorted and disjoint, so their ranges only ever overlap the one before; start after it.
        if len(lows) > 1:
            lows[1:] = np.maximum(lows[1:], np.maximum.accumulate(highs)[:-1])
        highs = np.maximum(highs, lows)
        return lows, highs, phase_us, bar_us


class _YearCachedCalendar(TradingCalendar):
    """A calendar whose sessions are built per calendar year and cached."""

    def __init__(self) -> None:
        self._years: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    @abstractmethod
    def _build_years(self, first: int, last: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """(opens, closes) µs arrays, sorted, for each year in [first, last]."""

    def _year_arrays(self, first: int, last: int) -> list[tuple[np.ndarray, np.ndarray]]:
        missing = [y for y in range(first, last + 1) if y not in self._years]
        if missing:
            with self._lock:
                missing = [y for y in missing if y not in self._years]
                if missing:
                    # One build for the whole missing span: a schedule call costs about the same
                    # for one year as for ten.
                    self._years.update(self._build_years(missing[0], missing[-1]))
        return [self._years[y] for y in range(first, last + 1)]

    def _sessions_us(self, lo_us: int, hi_us: int) -> tuple[np.ndarray, np.ndarray]:
        first = (_from_us(lo_us) - _YEAR_LOOKUP_MARGIN).year
        last = (_from_us(max(hi_us, lo_us)) + _YEAR_LOOKUP_MARGIN).year
        parts = self._year_arrays(first, last)
        if len(parts) == 1:
            return parts[0]
        opens = np.concatenate([p[0] for p in parts])
        closes = np.concatenate([p[1] for p in parts])
        return _merge(opens, closes)


# --------------------------------------------------------------------------------------------
# The policies
# --------------------------------------------------------------------------------------------


def _local_us(day: date, at: time, tz: ZoneInfo) -> int:
    return _to_us(datetime.combine(day, at, tzinfo=tz), "local time")


class CmeGoldCalendar(_YearCachedCalendar):
    """CME Globex metals (GC) hours from pandas_market_calendars plus the project's overrides."""

    name = "cme_gold"
    library_calendar = "CMEGlobex_Gold"

    def __init__(self) -> None:
        super().__init__()
        self._library: Any = None  # pandas_market_calendars' calendar, loaded on first use

    def _schedule(self, first: int, last: int):
        # Imported lazily: the library costs ~0.5 s to import and most processes that import this
        # module never ask for a CME session. Any warnings it emits are noise to us.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self._library is None:
                import pandas_market_calendars as mcal

                self._library = mcal.get_calendar(self.library_calendar)
            return self._library.schedule(start_date=f"{first}-01-01", end_date=f"{last}-12-31")

    def _build_years(self, first: int, last: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        stored = {year: sessions for year, sessions in stored_cme_years().items() if first <= year <= last}
        rest = [year for year in range(first, last + 1) if year not in stored]
        return stored | (self.library_years(rest[0], rest[-1]) if rest else {})

    def library_years(self, first: int, last: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each year's sessions in [first, last] from the library's schedule and the overrides."""
        schedule = self._schedule(first, last)
        trading_dates = [ts.date() for ts in schedule.index]
        opens = _utc_us_array(schedule["market_open"])
        closes = _utc_us_array(schedule["market_close"])
        keep = _apply_overrides(trading_dates, opens, closes)
        trading_dates = [d for d, k in zip(trading_dates, keep) if k]
        opens, closes = opens[keep], closes[keep]
        years = np.array([d.year for d in trading_dates], dtype=np.int64)
        built = {}
        for year in range(first, last + 1):
            mask = years == year
            built[year] = _merge(opens[mask].copy(), closes[mask].copy())
        return built


def stored_cme_years(path: Path = CME_SESSIONS_TABLE) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The sessions `write_cme_table` stored, per year ({} when the file is missing)."""
    if not path.exists():
        return {}
    with np.load(path) as table:
        years, opens, closes = table["years"], table["opens"], table["closes"]
    return {int(year): (opens[years == year], closes[years == year]) for year in np.unique(years)}


def write_cme_table(path: Path = CME_SESSIONS_TABLE, years: tuple[int, int] = CME_TABLE_YEARS) -> None:
    """Store cme_gold's sessions of `years` (first, last) as the library and the overrides give them now."""
    built = CmeGoldCalendar().library_years(*years)
    np.savez_compressed(
        path,
        years=np.concatenate([np.full(len(opens), year, dtype=np.int64) for year, (opens, _) in built.items()]),
        opens=np.concatenate([opens for opens, _ in built.values()]),
        closes=np.concatenate([closes for _, closes in built.values()]),
    )


def _utc_us_array(column) -> np.ndarray:
    """A tz-aware pandas datetime column as int64 µs since the epoch."""
    values = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    return values.astype(np.int64)


def _apply_overrides(trading_dates: list[date], opens: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Apply calendar_overrides to the library's sessions in place; returns the keep mask."""
    chicago = calendar_overrides.CHICAGO
    position = {d: i for i, d in enumerate(trading_dates)}
    keep = np.ones(len(trading_dates), dtype=bool)
    # Every trade date not in the table and after its years: project the known-wrong library rules.
    last_table_year = calendar_overrides.HOLIDAY_HOURS_YEARS[-1]
    for k, day in enumerate(trading_dates):
        if day.year > last_table_year:
            close = calendar_overrides.projected_close(day, _from_us(closes[k]).astimezone(chicago).time())
            if close is not None:
                closes[k] = max(int(opens[k]), _local_us(day, close, chicago))
    # The table decides its dates: a close replaces the library's (earlier or later), None drops the day.
    for hours in calendar_overrides.HOLIDAY_HOURS:
        i = position.get(hours.trading_date)
        if i is None:  # not a trading day in the library either (tests check early closes are)
            continue
        if hours.close is None:
            keep[i] = False
        else:
            closes[i] = max(int(opens[i]), _local_us(hours.trading_date, hours.close, chicago))
    for early in calendar_overrides.EARLY_CLOSES:
        i = position.get(early.trading_date)
        if i is None:  # not a trading day in the library (tests check none of ours are like that)
            continue
        close_us = _local_us(early.trading_date, early.close, chicago)
        closes[i] = max(int(opens[i]), min(int(closes[i]), close_us))
    for closed in calendar_overrides.CLOSED_TRADING_DATES:
        i = position.get(closed)
        if i is not None:
            keep[i] = False
    return keep


class Fx24x5Calendar(_YearCachedCalendar):
    """Spot FX week: Sunday 17:00 to Friday 17:00 New York time, continuous, no holidays."""

    name = "fx_24x5"

    def _build_years(self, first: int, last: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        built = {}
        for year in range(first, last + 1):
            # Weeks belong to the year their Sunday falls in.
            sunday = date(year, 1, 1)
            sunday += timedelta(days=(6 - sunday.weekday()) % 7)
            opens, closes = [], []
            while sunday.year == year:
                opens.append(_local_us(sunday, time(17), NEW_YORK))
                closes.append(_local_us(sunday + timedelta(days=5), time(17), NEW_YORK))
                sunday += timedelta(days=7)
            built[year] = (np.array(opens, dtype=np.int64), np.array(closes, dtype=np.int64))
        return built


class AlwaysOpenCalendar(TradingCalendar):
    """24x7: one session without end."""

    name = "24x7"
    _OPENS = np.array([-_FOREVER_US], dtype=np.int64)
    _CLOSES = np.array([_FOREVER_US], dtype=np.int64)

    def _sessions_us(self, lo_us: int, hi_us: int) -> tuple[np.ndarray, np.ndarray]:
        return self._OPENS, self._CLOSES


_FACTORIES: dict[str, Callable[[], TradingCalendar]] = {
    "cme_gold": CmeGoldCalendar,
    "fx_24x5": Fx24x5Calendar,
    "24x7": AlwaysOpenCalendar,
}
assert tuple(_FACTORIES) == CALENDAR_NAMES
_INSTANCES: dict[str, TradingCalendar] = {}
_INSTANCES_LOCK = threading.Lock()


def calendar(name: str) -> TradingCalendar:
    """The calendar policy called `name` (one of CALENDAR_NAMES); one shared, cached instance each."""
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(f"unknown trading calendar {name!r}: expected one of {', '.join(CALENDAR_NAMES)}")
    instance = _INSTANCES.get(name)
    if instance is not None:
        return instance
    with _INSTANCES_LOCK:
        if name not in _INSTANCES:
            _INSTANCES[name] = _FACTORIES[name]()
        return _INSTANCES[name]
