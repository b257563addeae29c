"""The trading calendar policies: sessions, is_open, and the bar slots expected to hold data.

Counts below are derived by hand from CME Globex metals hours (Sunday 18:00 to Friday 17:00 New
York, break 17:00-18:00 New York Mon-Thu). In UTC that is: winter open 23:00, close 22:00; summer
(US DST) open 22:00, close 21:00. A UTC day of M15 slots therefore holds:
  * a normal Mon-Thu: 00:00-close + open-24:00 = 23 h = 92 slots (either season);
  * a Friday: 00:00-22:00 = 88 (winter) or 00:00-21:00 = 84 (summer);
  * a Sunday: 23:00-24:00 = 4 (winter) or 22:00-24:00 = 8 (summer);
  * a Saturday: 0.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import warnings
from datetime import UTC, date, datetime, time, timedelta, timezone

import numpy as np
import pytest

from xau_pipeline.market import calendar_overrides
from xau_pipeline.market.market_hours import (
    CALENDAR_NAMES,
    CME_TABLE_YEARS,
    CmeGoldCalendar,
    TradingCalendar,
    calendar,
    stored_cme_years,
    write_cme_table,
)
from xau_pipeline_dev.testing import slot_grid

UTC = UTC
M15 = timedelta(minutes=15)
H1 = timedelta(hours=1)
H4 = timedelta(hours=4)
D1 = timedelta(days=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def day(*ymd: int) -> tuple[datetime, datetime]:
    start = utc(*ymd)
    return start, start + D1


@pytest.fixture(scope="module")
def cme() -> TradingCalendar:
    return calendar("cme_gold")


@pytest.fixture(scope="module")
def fx() -> TradingCalendar:
    return calendar("fx_24x5")


# --------------------------------------------------------------------------------------------
# API surface
# --------------------------------------------------------------------------------------------


def test_calendar_names_and_lookup():
    assert CALENDAR_NAMES == ("cme_gold", "fx_24x5", "24x7")
    for name in CALENDAR_NAMES:
        cal = calendar(name)
        assert isinstance(cal, TradingCalendar)
        assert cal.name == name
        assert calendar(name) is cal  # one cached instance: schedules are built once per process


def test_unknown_calendar_lists_valid_names():
    with pytest.raises(ValueError) as excinfo:
        calendar("nyse")
    for name in CALENDAR_NAMES:
        assert name in str(excinfo.value)


NAIVE = datetime(2024, 3, 6, 12)
AWARE = utc(2024, 3, 6, 12)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda cal: cal.sessions(NAIVE, AWARE), id="sessions-start"),
        pytest.param(lambda cal: cal.sessions(AWARE, NAIVE), id="sessions-end"),
        pytest.param(lambda cal: cal.is_open(NAIVE), id="is_open"),
        pytest.param(lambda cal: cal.expected_slots(NAIVE, AWARE, M15), id="expected_slots"),
        pytest.param(lambda cal: cal.count_expected(AWARE, NAIVE, M15), id="count_expected"),
        pytest.param(lambda cal: slot_grid(NAIVE, AWARE, M15), id="slot_grid"),
    ],
)
@pytest.mark.parametrize("name", CALENDAR_NAMES)
def test_naive_datetimes_are_rejected(name, call):
    """Every entry point, for every policy: a naive datetime is ambiguous and must not be guessed."""
    with pytest.raises(ValueError, match="timezone-aware"):
        call(calendar(name))


@pytest.mark.parametrize("bar", [timedelta(0), timedelta(minutes=-15)])
def test_non_positive_bar_is_rejected(cme, bar):
    with pytest.raises(ValueError):
        cme.count_expected(*day(2024, 3, 6), bar)
    with pytest.raises(ValueError):
        slot_grid(*day(2024, 3, 6), bar)


def test_empty_or_reversed_range_is_empty(cme):
    a = utc(2024, 3, 6, 12)
    assert cme.sessions(a, a) == []
    assert cme.sessions(a + H1, a) == []
    assert cme.expected_slots(a, a, M15) == []
    assert cme.count_expected(a + H1, a, M15) == 0
    assert slot_grid(a + H1, a, M15) == []


def test_non_utc_aware_inputs_are_accepted_and_outputs_are_utc(cme):
    new_york = timezone(timedelta(hours=-5))
    start = datetime(2024, 3, 5, 19, tzinfo=new_york)  # = 2024-03-06 00:00 UTC
    slots = cme.expected_slots(start, start + D1, M15)
    assert slots[0] == utc(2024, 3, 6)
    assert all(s.tzinfo is UTC for s in slots)
    assert cme.count_expected(start, start + D1, M15) == 92


# --------------------------------------------------------------------------------------------
# slot_grid
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end, bar, phase, expected",
    [
        pytest.param(
            utc(2024, 3, 6),
            utc(2024, 3, 6, 1),
            M15,
            timedelta(0),
            [utc(2024, 3, 6, 0, m) for m in (0, 15, 30, 45)],
            id="aligned-M15",
        ),
        pytest.param(
            utc(2024, 3, 6, 0, 7),
            utc(2024, 3, 6, 0, 45),
            M15,
            timedelta(0),
            [utc(2024, 3, 6, 0, 15), utc(2024, 3, 6, 0, 30)],
            id="unaligned-start-end-excluded",
        ),
        pytest.param(
            utc(2024, 3, 6),
            utc(2024, 3, 7),
            H4,
            H1,
            [utc(2024, 3, 6, h) for h in (1, 5, 9, 13, 17, 21)],
            id="H4-phase-1h",
        ),
        pytest.param(
            utc(2024, 3, 6),
            utc(2024, 3, 7),
            H4,
            timedelta(hours=-3),
            [utc(2024, 3, 6, h) for h in (1, 5, 9, 13, 17, 21)],
            id="negative-phase-wraps",
        ),
        pytest.param(
            utc(2024, 3, 6),
            utc(2024, 3, 8),
            D1,
            timedelta(hours=22),
            [utc(2024, 3, 6, 22), utc(2024, 3, 7, 22)],
            id="D1-phase-22h",
        ),
    ],
)
def test_slot_grid(start, end, bar, phase, expected):
    """The grid is epoch + phase + k*bar; slots open in [start, end); phase is taken modulo bar."""
    assert slot_grid(start, end, bar, phase) == expected


# --------------------------------------------------------------------------------------------
# cme_gold: M15 counts per UTC day
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ymd, expected",
    [
        # Normal weeks, both seasons.
        pytest.param((2024, 3, 6), 92, id="winter-wednesday-23h"),
        pytest.param((2024, 7, 10), 92, id="summer-wednesday-23h"),
        pytest.param((2024, 3, 1), 88, id="winter-friday-closes-22utc"),
        pytest.param((2024, 3, 2), 0, id="saturday"),
        pytest.param((2024, 3, 3), 4, id="winter-sunday-opens-23utc"),
        # US DST starts Sunday 2024-03-10: Friday before still winter, Sunday opens an hour earlier.
        pytest.param((2024, 3, 8), 88, id="dst-start-friday-before"),
        pytest.param((2024, 3, 10), 8, id="dst-start-sunday-opens-22utc"),
        pytest.param((2024, 3, 11), 92, id="dst-start-monday"),
        pytest.param((2024, 3, 15), 84, id="dst-start-friday-after-closes-21utc"),
        # US DST ends Sunday 2024-11-03: Friday before still summer, Sunday opens an hour later.
        pytest.param((2024, 11, 1), 84, id="dst-end-friday-before"),
        pytest.param((2024, 11, 3), 4, id="dst-end-sunday-opens-23utc"),
        pytest.param((2024, 11, 4), 92, id="dst-end-monday"),
        # Good Friday 2024-03-29 (summer time): Thursday has no evening session, Friday nothing.
        pytest.param((2024, 3, 28), 84, id="good-friday-eve-no-reopen"),
        pytest.param((2024, 3, 29), 0, id="good-friday"),
        pytest.param((2024, 3, 31), 8, id="good-friday-sunday-after"),
        # Christmas 2024 (winter). Dec 24 closes 12:45 CT = 18:45 UTC (override): 00:00-18:45.
        # Dec 25 is closed as a CME trade date, but the Dec 26 session opens Dec 25 17:00 CT =
        # 23:00 UTC, so the UTC day Dec 25 holds 23:00-24:00 = 4 slots. Dec 26 is a normal day.
        pytest.param((2024, 12, 24), 75, id="christmas-eve-early-close"),
        pytest.param((2024, 12, 25), 4, id="christmas-day-utc-has-dec26-session-open"),
        pytest.param((2024, 12, 26), 92, id="day-after-christmas"),
        # New Year 2025: Dec 31 is a regular close (22:00 UTC) with no evening session; the Jan 2
        # session opens Jan 1 17:00 CT = 23:00 UTC, so the UTC day Jan 1 holds 4 slots.
        pytest.param((2024, 12, 31), 88, id="new-years-eve-regular-close"),
        pytest.param((2025, 1, 1), 4, id="new-years-day-utc-has-jan2-session-open"),
        # US-holiday early closes (library): halt 13:30 CT, reopen 17:00 CT for the next trade date.
        # MLK 2024-01-15 (winter): 00:00-19:30 (78) + 23:00-24:00 (4).
        # Independence Day 2024-07-04 (summer): 00:00-18:30 (74) + 22:00-24:00 (8).
        pytest.param((2024, 1, 15), 82, id="mlk-early-close"),
        pytest.param((2024, 7, 4), 82, id="july4-early-close"),
        # Holiday hours the library had wrong (the real data trades them like this).
        # Labor Day 2024-09-02 (summer) halts 13:30 CDT: 00:00-18:30 (74) + 22:00-24:00 (8).
        # The day after Thanksgiving 2024-11-29 (winter, a Friday) closes 13:45 CST: 00:00-19:45.
        # Independence Day 2025-07-04 (a Friday) closes 12:00 CDT: 00:00-17:00.
        pytest.param((2024, 9, 2), 82, id="labor-day-1330"),
        pytest.param((2024, 11, 29), 79, id="day-after-thanksgiving-1345"),
        pytest.param((2025, 7, 4), 68, id="friday-july4-1200"),
    ],
)
def test_cme_gold_m15_slots_per_utc_day(cme, ymd, expected):
    """Why these cases: the normal day/week shapes, both 2024 US DST switches (the UTC open/close
    move by an hour on the Sunday/Friday around them), each full closure (Good Friday, Christmas,
    New Year) seen from the UTC day, and the early closes (override and library)."""
    start, end = day(*ymd)
    assert cme.count_expected(start, end, M15) == expected
    assert len(cme.expected_slots(start, end, M15)) == expected


@pytest.mark.parametrize(
    "start, end, whole_closure",
    [
        # CME trade date Dec 25, 2024 = [Dec 24 17:00 CT, Dec 25 16:00 CT) = [23:00, 22:00) UTC.
        pytest.param(utc(2024, 12, 24, 23), utc(2024, 12, 25, 22), False, id="trade-date-christmas-2024"),
        # From the Christmas Eve halt (12:45 CT = 18:45 UTC) to the Dec 26 session open (23:00 UTC).
        pytest.param(utc(2024, 12, 24, 18, 45), utc(2024, 12, 25, 23), True, id="christmas-2024-whole-closure"),
        # CME trade date Jan 1, 2025 = [Dec 31 23:00 UTC, Jan 1 22:00 UTC).
        pytest.param(utc(2024, 12, 31, 23), utc(2025, 1, 1, 22), False, id="trade-date-new-year-2025"),
        # From the Dec 31 close (16:00 CT = 22:00 UTC) to the Jan 2 session open (23:00 UTC Jan 1).
        pytest.param(utc(2024, 12, 31, 22), utc(2025, 1, 1, 23), True, id="new-year-2025-whole-closure"),
        # Good Friday 2024 (summer): Thursday 21:00 UTC close to Sunday 22:00 UTC open.
        pytest.param(utc(2024, 3, 28, 21), utc(2024, 3, 31, 22), True, id="good-friday-2024-whole-closure"),
    ],
)
def test_cme_gold_holidays_have_no_slots_in_their_trading_day_sense(cme, start, end, whole_closure):
    """Holidays are CME trade dates (17:00 CT the evening before to 16:00 CT), not UTC days: over
    the trade date, and over the whole closure, no slot is expected. For the whole closures the
    edges are exact: trading right up to `start` and again from `end`."""
    assert cme.count_expected(start, end, M15) == 0
    assert cme.expected_slots(start, end, H1) == []
    assert cme.sessions(start, end) == []
    if whole_closure:
        assert cme.is_open(start - timedelta(microseconds=1)) and cme.is_open(end)
        assert cme.count_expected(start - M15, end + M15, M15) == 2


# --------------------------------------------------------------------------------------------
# cme_gold: session edges
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end, expected",
    [
        pytest.param(
            utc(2024, 3, 8),
            utc(2024, 3, 12),
            [
                (utc(2024, 3, 8), utc(2024, 3, 8, 22)),
                (utc(2024, 3, 10, 22), utc(2024, 3, 11, 21)),
                (utc(2024, 3, 11, 22), utc(2024, 3, 12)),
            ],
            id="dst-start-2024: Fri close 22:00 (EST), Sun open 22:00, Mon break 21-22 (EDT)",
        ),
        pytest.param(
            utc(2024, 11, 1),
            utc(2024, 11, 5),
            [
                (utc(2024, 11, 1), utc(2024, 11, 1, 21)),
                (utc(2024, 11, 3, 23), utc(2024, 11, 4, 22)),
                (utc(2024, 11, 4, 23), utc(2024, 11, 5)),
            ],
            id="dst-end-2024: Fri close 21:00 (EDT), Sun open 23:00, Mon break 22-23 (EST)",
        ),
        pytest.param(
            utc(2024, 12, 23, 12),
            utc(2024, 12, 27),
            [
                (utc(2024, 12, 23, 12), utc(2024, 12, 23, 22)),
                (utc(2024, 12, 23, 23), utc(2024, 12, 24, 18, 45)),
                (utc(2024, 12, 25, 23), utc(2024, 12, 26, 22)),
                (utc(2024, 12, 26, 23), utc(2024, 12, 27)),
            ],
            id="christmas-2024: Dec 24 halts 12:45 CT, reopens Dec 25 17:00 CT",
        ),
        pytest.param(
            utc(2024, 1, 15),
            utc(2024, 1, 16, 12),
            [(utc(2024, 1, 15), utc(2024, 1, 15, 19, 30)), (utc(2024, 1, 15, 23), utc(2024, 1, 16, 12))],
            id="mlk-2024: halts 13:30 CT (library), reopens 17:00 CT",
        ),
        pytest.param(
            utc(2024, 7, 4),
            utc(2024, 7, 5, 12),
            [(utc(2024, 7, 4), utc(2024, 7, 4, 18, 30)), (utc(2024, 7, 4, 22), utc(2024, 7, 5, 12))],
            id="july4-2024: halts 13:30 CDT (library), reopens 17:00 CDT",
        ),
    ],
)
def test_cme_gold_session_edges(cme, start, end, expected):
    """Why these cases: the exact UTC instants at both 2024 DST switches, the Christmas Eve override
    and two library US-holiday early closes; also shows clipping to [start, end)."""
    assert cme.sessions(start, end) == expected


def test_sessions_are_sorted_disjoint_and_clipped(cme):
    start, end = utc(2024, 2, 28, 12, 7), utc(2024, 3, 20, 3, 3)
    sessions = cme.sessions(start, end)
    assert sessions[0][0] == start and sessions[-1][1] == end
    for (open_, close), (next_open, _) in itertools.pairwise(sessions):
        assert open_ < close < next_open  # strictly apart: touching sessions would have been merged


@pytest.mark.parametrize(
    "t, expected",
    [
        pytest.param(utc(2024, 3, 9, 12), False, id="saturday-noon"),
        pytest.param(utc(2024, 3, 6, 12), True, id="wednesday-noon"),
        pytest.param(utc(2024, 7, 10, 21, 30), False, id="summer-wednesday-21:30-daily-break"),
        pytest.param(utc(2024, 7, 10, 22), True, id="summer-wednesday-22:00-reopened"),
        pytest.param(utc(2024, 1, 10, 22, 30), False, id="winter-wednesday-22:30-daily-break"),
        pytest.param(utc(2024, 1, 10, 21, 30), True, id="winter-wednesday-21:30-still-open"),
        pytest.param(utc(2024, 1, 10, 22), False, id="winter-close-instant-is-excluded"),
        pytest.param(utc(2024, 1, 10, 23), True, id="winter-open-instant-is-included"),
        pytest.param(utc(2024, 12, 24, 18, 30), True, id="christmas-eve-before-halt"),
        pytest.param(utc(2024, 12, 24, 19), False, id="christmas-eve-after-1245ct-halt"),
        pytest.param(utc(2024, 12, 25, 12), False, id="christmas-day"),
        pytest.param(utc(2024, 3, 29, 12), False, id="good-friday"),
    ],
)
def test_cme_gold_is_open(cme, t, expected):
    """Why these cases: weekend vs weekday, the daily break in each season (it sits at 21-22 UTC in
    summer and 22-23 UTC in winter), half-open edges, and holidays."""
    assert cme.is_open(t) is expected


# --------------------------------------------------------------------------------------------
# cme_gold: weeks, bars and phases
# --------------------------------------------------------------------------------------------

WINTER_WEEK = (utc(2024, 3, 3), utc(2024, 3, 9))  # Sun 23:00 UTC open .. Fri 22:00 UTC close
SUMMER_WEEK = (utc(2024, 6, 9), utc(2024, 6, 15))  # Sun 22:00 UTC open .. Fri 21:00 UTC close


@pytest.mark.parametrize(
    "week, bar, phase, expected",
    [
        # Sun open to Fri close is 4 d 23 h = 119 h, less four 1 h breaks = 115 h.
        pytest.param(WINTER_WEEK, M15, timedelta(0), 460, id="winter-M15"),
        pytest.param(SUMMER_WEEK, M15, timedelta(0), 460, id="summer-M15"),
        pytest.param(WINTER_WEEK, H1, timedelta(0), 115, id="winter-H1"),
        pytest.param(SUMMER_WEEK, H1, timedelta(0), 115, id="summer-H1"),
        # H4 slots straddle the break and still overlap a session: Sun 20:00, 6 a day Mon-Thu, and
        # Fri 00:00..20:00 (Fri 20:00 overlaps 20:00-21/22:00) = 1 + 24 + 6.
        pytest.param(WINTER_WEEK, H4, timedelta(0), 31, id="winter-H4"),
        pytest.param(SUMMER_WEEK, H4, timedelta(0), 31, id="summer-H4"),
        # Phase 1 h: in summer the Fri 21:00 slot starts at the close (not expected) -> 30;
        # in winter it overlaps 21:00-22:00 -> 31.
        pytest.param(SUMMER_WEEK, H4, H1, 30, id="summer-H4-phase-1h"),
        pytest.param(WINTER_WEEK, H4, H1, 31, id="winter-H4-phase-1h"),
        # Phase 3 h in winter: Sun 19:00-23:00 ends at the open (not expected) -> 30.
        pytest.param(WINTER_WEEK, H4, timedelta(hours=3), 30, id="winter-H4-phase-3h"),
        # D1 at 00:00 UTC: Sunday (its last hour(s)) + Mon-Fri = 6.
        pytest.param(WINTER_WEEK, D1, timedelta(0), 6, id="winter-D1"),
        pytest.param(SUMMER_WEEK, D1, timedelta(0), 6, id="summer-D1"),
        # D1 opening 22:00 UTC (17:00 New York in winter): Sun..Thu 22:00 = 5 trading days.
        pytest.param(WINTER_WEEK, D1, timedelta(hours=22), 5, id="winter-D1-phase-22h"),
    ],
)
def test_cme_gold_normal_week_counts(cme, week, bar, phase, expected):
    """Why these cases: the week total for every timeframe we keep, in both seasons, and phases
    that move a slot across the Sunday open or Friday close."""
    start, end = week
    assert cme.count_expected(start, end, bar, phase) == expected
    assert len(cme.expected_slots(start, end, bar, phase)) == expected


def test_cme_gold_h4_phase_shifts_the_slots(cme):
    start, end = SUMMER_WEEK
    phase0 = cme.expected_slots(start, end, H4)
    phase1 = cme.expected_slots(start, end, H4, H1)
    assert all(s.hour % 4 == 0 and s.minute == 0 for s in phase0)
    assert all(s.hour % 4 == 1 and s.minute == 0 for s in phase1)
    assert (phase0[0], phase0[-1]) == (utc(2024, 6, 9, 20), utc(2024, 6, 14, 20))
    assert (phase1[0], phase1[-1]) == (utc(2024, 6, 9, 21), utc(2024, 6, 14, 17))
    # Every phase-1h slot is its phase-0h neighbour moved by an hour, minus the Fri 21:00 one.
    assert phase1 == [s + H1 for s in phase0][:-1]


def test_expected_slots_are_the_grid_slots_overlapping_a_session(cme):
    """The daily break hides whole M15 slots but never an H1/H4 slot that touches trading."""
    start, end = day(2024, 1, 10)  # winter Wednesday, break 22:00-23:00 UTC
    m15 = cme.expected_slots(start, end, M15)
    assert utc(2024, 1, 10, 21, 45) in m15
    assert not any(utc(2024, 1, 10, 22) <= s < utc(2024, 1, 10, 23) for s in m15)
    assert utc(2024, 1, 10, 22) not in cme.expected_slots(start, end, H1)
    assert utc(2024, 1, 10, 20) in cme.expected_slots(start, end, H4)  # [20:00, 24:00) spans the break


# --------------------------------------------------------------------------------------------
# cme_gold: overrides
# --------------------------------------------------------------------------------------------

CHRISTMAS_EVES = [
    # (year, None when Dec 24 is not a CME trade date, else (Chicago halt on Dec 24, day of the
    # December reopen at 17:00 Chicago: Dec 25 evening, or Sunday Dec 27 when Christmas is a Friday))
    (2015, ((12, 45), 27)),
    (2016, None),
    (2017, None),
    (2018, ((12, 45), 25)),
    (2019, ((12, 45), 25)),
    (2020, ((12, 45), 27)),
    (2021, None),
    (2022, None),
    (2023, None),
    (2024, ((12, 45), 25)),
    (2025, ((12, 45), 25)),
    (2026, ((12, 45), 27)),
    (2027, None),
    (2028, None),
    (2029, ((12, 45), 25)),
    (2030, ((12, 45), 25)),
]


@pytest.mark.parametrize("year, expected", CHRISTMAS_EVES, ids=[str(y) for y, _ in CHRISTMAS_EVES])
def test_cme_gold_christmas_eve_closes_1245_chicago(cme, year, expected):
    """Why these cases: every Christmas Eve 2015-2030. A Mon-Thu Dec 24 halts at 12:45 Chicago
    (our override; the library's own entry for 2026) and stays shut until 17:00 Chicago on Dec 25
    (Sunday Dec 27 when Christmas is a Friday).
    A Saturday/Sunday Dec 24 is no trade date (and a Sunday one has no evening session because
    Monday is Christmas); a Friday Dec 24 (2021, 2027) is the observed Christmas holiday."""
    eve = datetime(year, 12, 24, tzinfo=calendar_overrides.CHICAGO)
    if expected is None:
        assert not cme.is_open(eve.replace(hour=10).astimezone(UTC))
        assert not cme.is_open(eve.replace(hour=18).astimezone(UTC))
        return
    (hour, minute), reopen_day = expected
    halt = eve.replace(hour=hour, minute=minute).astimezone(UTC)
    reopen = eve.replace(day=reopen_day, hour=17).astimezone(UTC)
    assert cme.is_open(halt - timedelta(microseconds=1))
    assert cme.sessions(halt, reopen + H1) == [(reopen, reopen + H1)]


def _library_schedule(first: date, last: date):
    import pandas_market_calendars as mcal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mcal.get_calendar("CMEGlobex_Gold").schedule(first, last)


def test_every_override_names_a_library_trading_day():
    """An early close for a date the library does not trade would be skipped silently."""
    early_closes = [(e.trading_date, e.close) for e in calendar_overrides.EARLY_CLOSES] + [
        (h.trading_date, h.close) for h in calendar_overrides.HOLIDAY_HOURS if h.close is not None
    ]
    first, last = min(d for d, _ in early_closes), max(d for d, _ in early_closes)
    traded = {ts.date() for ts in _library_schedule(first, last).index}
    for trading_date, close in early_closes:
        assert trading_date in traded, trading_date
        assert close < time(16), trading_date  # earlier than the regular 16:00 Chicago close


def test_holiday_hours_table_is_complete_sourced_and_sorted():
    """The table covers 2019-2027 whole: every trade date on which the library deviates from
    17:00-16:00 Chicago (an early close, or a weekday without a session) has an entry, closures
    are closures in the library too, and every entry names its source."""
    table = calendar_overrides.HOLIDAY_HOURS
    years = calendar_overrides.HOLIDAY_HOURS_YEARS
    dates = [h.trading_date for h in table]
    assert dates == sorted(set(dates))
    assert {d.year for d in dates} == set(years)
    assert all(h.source.strip() and h.holiday.strip() for h in table)
    schedule = _library_schedule(date(years[0], 1, 1), date(years[-1], 12, 31))
    traded = {ts.date() for ts in schedule.index}
    closes = schedule["market_close"].dt.tz_convert(calendar_overrides.CHICAGO)
    library_early = {ts.date() for ts, close in zip(schedule.index, closes) if close.time() != time(16)}
    weekdays = {date(years[0], 1, 1) + timedelta(days=n) for n in range(366 * len(years))}
    library_closed = {d for d in weekdays if d.year in years and d.weekday() < 5 and d not in traded}
    assert library_early | library_closed <= set(dates)
    assert {h.trading_date for h in table if h.close is None} == library_closed


# The three library rules the real data contradicted, and the same pattern elsewhere. Chicago
# times: (trade date, close, the library's close).
FIXED_CLOSES = [
    (date(2022, 9, 5), (13, 30), "Labor Day: library 12:00"),
    (date(2023, 9, 4), (13, 30), "Labor Day: library 12:00"),
    (date(2024, 9, 2), (13, 30), "Labor Day: library 12:00"),
    (date(2025, 9, 1), (13, 30), "Labor Day: library 12:00"),
    (date(2024, 11, 29), (13, 45), "day after Thanksgiving: library 12:45"),
    (date(2025, 11, 28), (13, 45), "day after Thanksgiving: library 12:45"),
    (date(2025, 7, 4), (12, 0), "Independence Day on a Friday: library 13:30"),
    (date(2027, 6, 18), (12, 0), "Juneteenth observed on a Friday: library 13:30"),
    (date(2022, 1, 17), (12, 0), "MLK Day 2022, as the H1 data trades: library 13:30"),
    # After the table: projected_close.
    (date(2028, 9, 4), (13, 30), "projected Labor Day: library 12:00"),
    (date(2028, 11, 24), (13, 45), "projected day after Thanksgiving: library 12:45"),
    (date(2031, 7, 4), (12, 0), "projected Friday Independence Day: library 13:30"),
    (date(2028, 7, 4), (13, 30), "projected Tuesday Independence Day: library's 13:30 kept"),
]


@pytest.mark.parametrize("trading_date, close, why", FIXED_CLOSES, ids=[f"{d}" for d, _, _ in FIXED_CLOSES])
def test_cme_gold_holiday_closes(cme, trading_date, close, why):
    """The session of each trade date ends at the close listed, and the market is shut from then
    until 17:00 Chicago that evening (or the Sunday open after a Friday)."""
    halt = datetime.combine(trading_date, time(*close), calendar_overrides.CHICAGO).astimezone(UTC)
    reopen = datetime.combine(trading_date, time(17), calendar_overrides.CHICAGO)
    if trading_date.weekday() == 4:
        reopen += timedelta(days=2)
    reopen = reopen.astimezone(UTC)
    assert cme.is_open(halt - timedelta(microseconds=1)), why
    assert cme.sessions(halt - H1, reopen + H1) == [(halt - H1, halt), (reopen, reopen + H1)], why


def test_library_warnings_do_not_escape():
    """Building a fresh CME schedule emits nothing, even with warnings turned into errors."""
    from xau_pipeline.market.market_hours import CmeGoldCalendar

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CmeGoldCalendar().count_expected(*day(2019, 3, 6), M15) == 92


def test_cme_schedule_is_built_once_per_span_and_cached(monkeypatch):
    from xau_pipeline.market.market_hours import CmeGoldCalendar

    cal = CmeGoldCalendar()
    calls = []
    original = cal._schedule

    def counting(first, last):
        calls.append((first, last))
        return original(first, last)

    monkeypatch.setattr(cal, "_schedule", counting)
    # Years after the stored ones (CME_TABLE_YEARS): built by the library.
    cal.count_expected(utc(2040, 1, 1), utc(2050, 1, 1), M15)
    assert len(calls) == 1  # the whole missing span in one library call
    cal.count_expected(*day(2045, 6, 7), M15)
    cal.is_open(utc(2047, 5, 6, 12))
    assert len(calls) == 1
    cal.count_expected(utc(2015, 1, 1), utc(2025, 1, 1), M15)
    assert len(calls) == 1  # stored years: no library call


# --------------------------------------------------------------------------------------------
# cme_gold: long ranges and consistency
# --------------------------------------------------------------------------------------------


def test_ten_year_m15_count(cme):
    """Ten years of M15 in one call (fast: a few vectorised operations over ~2,600 sessions), and
    equal to the sum over its years and to the length of the slot list."""
    start, end = utc(2015, 1, 1), utc(2025, 1, 1)
    total = cme.count_expected(start, end, M15)
    by_year = sum(cme.count_expected(utc(y, 1, 1), utc(y + 1, 1, 1), M15) for y in range(2015, 2025))
    assert total == by_year == len(cme.expected_slots(start, end, M15))
    # At most 460 slots per 7-day week (~521.8 weeks), a few hundred fewer for the holidays and
    # early closes: a sanity band, not a pin.
    assert 10 * 52 * 440 < total < (end - start) / timedelta(weeks=1) * 460


@pytest.mark.parametrize("name", CALENDAR_NAMES)
def test_matches_brute_force(name):
    """Random ranges, bars (including one that does not divide an hour) and phases: the vectorised
    slot ranges equal checking every grid slot against the sessions one by one."""
    cal = calendar(name)
    rng = random.Random(20240310)
    bars = [M15, H1, H4, D1, timedelta(minutes=7)]
    for _ in range(60):
        start = utc(2015, 1, 1) + timedelta(minutes=rng.randrange(60 * 24 * 365 * 12))
        end = start + timedelta(minutes=rng.randrange(60 * 24 * 15))
        bar = rng.choice(bars)
        phase = timedelta(minutes=rng.randrange(-600, 600))
        sessions = cal.sessions(start - bar, end + bar)
        brute = [t for t in slot_grid(start, end, bar, phase) if any(o < t + bar and t < c for o, c in sessions)]
        assert cal.expected_slots(start, end, bar, phase) == brute
        assert cal.count_expected(start, end, bar, phase) == len(brute)
        probe = start + (end - start) * rng.random()
        assert cal.is_open(probe) == any(o <= probe < c for o, c in sessions)


# --------------------------------------------------------------------------------------------
# fx_24x5 and 24x7
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "week, first_open, last_close",
    [
        pytest.param(WINTER_WEEK, utc(2024, 3, 3, 22), utc(2024, 3, 8, 22), id="winter-17:00-EST"),
        pytest.param(SUMMER_WEEK, utc(2024, 6, 9, 21), utc(2024, 6, 14, 21), id="summer-17:00-EDT"),
        # The week DST starts: opens Sun 17:00 EDT = 21:00 UTC, a week of 120 h still.
        pytest.param(
            (utc(2024, 3, 10), utc(2024, 3, 16)), utc(2024, 3, 10, 21), utc(2024, 3, 15, 21), id="dst-start-week"
        ),
    ],
)
def test_fx_24x5_week(fx, week, first_open, last_close):
    """Why these cases: Sunday 17:00 to Friday 17:00 New York in each season and across the DST
    switch: one continuous 120 h session, no daily break."""
    start, end = week
    assert fx.sessions(start, end) == [(first_open, last_close)]
    assert fx.count_expected(start, end, M15) == 480
    assert fx.count_expected(start, end, H1) == 120


@pytest.mark.parametrize(
    "t, expected",
    [
        pytest.param(utc(2024, 3, 9, 12), False, id="saturday"),
        pytest.param(utc(2024, 3, 3, 21, 30), False, id="winter-sunday-before-22utc"),
        pytest.param(utc(2024, 3, 3, 22), True, id="winter-sunday-open"),
        pytest.param(utc(2024, 6, 9, 21, 30), True, id="summer-sunday-after-21utc"),
        pytest.param(utc(2024, 1, 10, 22, 30), True, id="no-daily-break"),
        pytest.param(utc(2024, 12, 25, 12), True, id="no-holidays"),
        pytest.param(utc(2024, 3, 8, 22), False, id="winter-friday-close-instant"),
    ],
)
def test_fx_24x5_is_open(fx, t, expected):
    """Why these cases: weekend edges in each season, and what fx_24x5 deliberately lacks."""
    assert fx.is_open(t) is expected


def test_fx_24x5_has_no_holidays(fx):
    assert fx.count_expected(*day(2024, 12, 25), M15) == 96
    assert fx.count_expected(*day(2025, 1, 1), M15) == 96  # New Year's Day, a Wednesday
    assert fx.count_expected(*day(2024, 3, 29), M15) == 84  # Good Friday: a normal summer Friday


def test_24x7_is_always_open():
    cal = calendar("24x7")
    saturday = day(2024, 3, 9)
    assert cal.is_open(utc(2024, 3, 9, 12))
    assert cal.sessions(*saturday) == [saturday]
    assert cal.count_expected(*saturday, M15) == 96
    assert cal.expected_slots(*saturday, H4, H1) == slot_grid(*saturday, H4, H1)
    start, end = utc(2015, 1, 1), utc(2025, 1, 1)
    assert cal.count_expected(start, end, M15) == (end - start) // M15


# ---- the stored cme_gold sessions ---------------------------------------------------------------


def test_the_stored_cme_sessions_are_what_the_library_and_the_overrides_build_now(tmp_path):
    """cme_gold_sessions.npz stands in for pandas_market_calendars in the years it holds: it must say
    what the library and calendar_overrides say, year by year, or the checks would judge on stale hours."""
    stored = stored_cme_years()
    assert sorted(stored) == list(range(CME_TABLE_YEARS[0], CME_TABLE_YEARS[1] + 1))
    built = CmeGoldCalendar().library_years(*CME_TABLE_YEARS)
    stale = [
        year
        for year in stored
        if not (np.array_equal(stored[year][0], built[year][0]) and np.array_equal(stored[year][1], built[year][1]))
    ]
    assert not stale, (
        f"xau_pipeline/market/cme_gold_sessions.npz disagrees with pandas_market_calendars + calendar_overrides.py "
        f"for {stale}: run `make calendar-table` and commit the file"
    )
    # The file written back is read back the same.
    write_cme_table(tmp_path / "table.npz", (2024, 2025))
    again = stored_cme_years(tmp_path / "table.npz")
    assert sorted(again) == [2024, 2025] and all(np.array_equal(again[y][0], stored[y][0]) for y in again)


def test_a_stored_year_is_read_without_pandas_and_a_later_one_is_built_by_the_library():
    script = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "from xau_pipeline.market.market_hours import calendar\n"
        "cme = calendar('cme_gold')\n"
        "stored = cme.sessions(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))\n"
        "print(len(stored), 'pandas' in sys.modules)\n"
        "later = cme.sessions(datetime(2040, 1, 1, tzinfo=UTC), datetime(2041, 1, 1, tzinfo=UTC))\n"
        "print(len(later), 'pandas_market_calendars' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) > 240 and out[1] == "False"
    assert int(out[2]) > 240 and out[3] == "True"


@pytest.mark.parametrize(
    ("slot", "phase"), [(H1, timedelta(0)), (H4, timedelta(0)), (H4, timedelta(hours=1)), (D1, timedelta(0))]
)
@pytest.mark.parametrize("name", CALENDAR_NAMES)
def test_expected_per_slot_counts_the_expected_bars_of_each_coarser_slot(name, slot, phase):
    """Around Christmas and New Year (holidays, early closes, a weekend): each coarser slot's count is
    the number of expected M15 slots whose open lies in it."""
    cal = calendar(name)
    start, end = utc(2024, 12, 20, 3), utc(2025, 1, 6, 5)
    by_hand: dict[datetime, int] = {}
    for m15 in cal.expected_slots(start, end, M15):
        held = m15 - (m15 - utc(1970, 1, 1) - phase) % slot
        by_hand[held] = by_hand.get(held, 0) + 1
    assert cal.count_expected_per_slot(start, end, M15, slot, phase) == by_hand
    saturday = cal.count_expected_per_slot(utc(2025, 1, 4), utc(2025, 1, 5), M15, slot, phase)
    assert sum(saturday.values()) == (96 if name == "24x7" else 0)
