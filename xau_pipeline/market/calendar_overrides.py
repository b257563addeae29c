"""Project-owned corrections to `pandas_market_calendars`' ``CMEGlobex_Gold`` sessions.

`xau_pipeline.market.market_hours` builds the ``cme_gold`` policy from the library's schedule (checked
against pandas-market-calendars 5.5.0, where ``CMEGlobex_Gold`` is an alias of
``CMEGlobex_EnergyAndMetals``) and then applies, per CME trade date:

1. `HOLIDAY_HOURS`: every CME metals holiday of 2019-2027 (full closures and early closes), each
   with its Chicago close and where that close comes from. For these dates the table decides: an
   early close replaces the library's close, earlier *or later*; a closure drops the session.
2. After 2027, `projected_close`: the 2024-2027 pattern for the three library rules known wrong.
3. Outside 2019-2027, `EARLY_CLOSES`: the Christmas Eve halt the library lacks.
4. `CLOSED_TRADING_DATES`: whole trade dates to drop (none known).

A holiday halts trading at the close listed and trading resumes at 17:00 Chicago for the next
trade date (the library's next session), except before a weekend or a closure.

What the library gets wrong, found by running the gap check over real XAU/USD bars (Dukascopy M15
of 2024-2026, H1 and D1 of 2022-2026, in ../shared/realdata/) and against the tables cited below:

* Labor Day: the library closes at 12:00 Chicago (the pre-2022 rule) in every year but 2026. CME
  metals and the data trade until 13:30 in 2022, 2023, 2024 and 2025.
* The day after Thanksgiving: the library closes at 12:45 Chicago in every year but 2026. The data
  closes at 13:45 in 2024 and 2025, as Lean's table lists for 2025 and CME's 2026 schedule (which
  the library has) for 2026.
* A US holiday on a Friday (Independence Day 2025-07-04; Juneteenth observed 2027-06-18): the
  library closes at 13:30 Chicago. The data stops at 12:00 on 2025-07-04, and Lean's table lists
  12:00 for both; CME's 2026 schedule does the same for Fri 2026-06-19 and Fri 2026-07-03 (the
  library has those two).
* Christmas Eve: the library has an early close only for 2026-12-24 (12:45 Chicago, from CME's 2026
  schedule, pandas_market_calendars issue #464 / PR #469); every other Christmas Eve that is a
  trading day is a regular 16:00 close there.
* The H1 data of 2022-2023 stops earlier than CME's 13:30 / 12:45 on four dates (MLK Day 2022 and
  2023, Thanksgiving 2023 and the day after). The calendar's job is to predict which bars a spot
  feed fills, so the table follows the data there and says so.

The Christmas Eve rule (CME Group holiday calendar, https://www.cmegroup.com/trading-hours.html,
holiday "Christmas"): on Christmas Eve, when Dec 24 is a trading day (Monday-Thursday; a Friday
Dec 24 is the observed Christmas holiday and is closed), CME Globex metals halt at 12:45 Chicago
(13:45 New York) and stay closed until the Dec 26 session opens at 17:00 Chicago on Dec 25.
Sources: CME's 2026 schedule as reported in pandas_market_calendars issue #464 (GC and MCL close
13:45 ET); Lean's CME-derived tables (below: 12:45 Chicago in 2018, 2019, 2020, 2024, 2025, 2026);
the Dukascopy data (2024-12-24 and 2025-12-24: last M15 bar 12:30-12:45 Chicago).

New Year's Eve is a regular 16:00 Chicago close. Sources: trade.xyz's 2026 table of CME base-metals
holiday hours ("December 31: Open 00:00-17:00" ET); the issue #464 reporter compared CME's 2026
"NewYears" trading-hours file with the library and found no Dec 31 difference; Lean's
Future-comex-GC lists Dec 31 of 2024, 2025 and 2026 at the regular 17:00 ET; the Dukascopy data
trades until 16:00 Chicago on 2024-12-31 and 2025-12-31 (last M15 bar 15:45-16:00). So no New
Year's Eve early close is listed; add a table entry if a CME notice for a given year says otherwise.

UNCERTAIN:
* Christmas Eve 2015, 2029 and 2030 (`EARLY_CLOSES`) follow the recurring rule, not a CME notice
  for that year. The library's own test suite asserts 2020 had no early closes in December
  (tests/test_exchange_calendar_cme_globex_energy_and_metals.py::test_2020), which contradicts the
  rule and Lean's 2020 table; we follow the rule.
* 2027 entries other than Juneteenth are projections of the 2024-2026 pattern, and so is everything
  `projected_close` returns: CME publishes each year's hours only months ahead.
* Where the table follows H1 data alone (2022-2023), the close is known only to the hour; it
  takes the latest close those bars allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

CHICAGO = ZoneInfo("America/Chicago")

# CME metals' Christmas Eve halt, Chicago time.
CHRISTMAS_EVE_CLOSE = time(12, 45)

# The years `HOLIDAY_HOURS` covers completely: every holiday closure and early close in them is listed.
HOLIDAY_HOURS_YEARS = range(2019, 2028)

# ---- sources ---------------------------------------------------------------------------------------

# QuantConnect Lean's market-hours database (Data/market-hours/market-hours-database.json at commit
# 24863901, 2026-08-21), entry "Future-comex-MGC" (micro gold; its 2024-2027 dates equal
# "Future-comex-GC"), "earlyCloses", kept there in New York time: 13:00 ET = 12:00 CT,
# 13:45 ET = 12:45 CT, 14:30 ET = 13:30 CT, 14:45 ET = 13:45 CT. Lean builds it from CME's notices.
LEAN = "Lean market-hours-database Future-comex-MGC/GC earlyCloses (CME-derived)"
# pandas_market_calendars issue #464 (CME's published 2026 GC/MCL holiday hours), fixed by PR #469;
# issue #465 for Juneteenth on a Friday.
PMC_2026 = "CME 2026 schedule per pandas_market_calendars issue #464/#465 (PR #469)"
# The library's own schedule, where it agrees with everything else known.
LIBRARY = "pandas_market_calendars 5.5.0 CMEGlobex_Gold"
# DTN IQFeed holiday notices (iqhelp.dtn.com): "President's Day 2023 Holiday Schedule" and
# "July 4th 2024 Holiday Exchange Schedule": CME Globex Energy, Metals trading halt at 1:30 p.m. CT.
DTN = "DTN exchange holiday schedule (CME Globex Energy, Metals halt 1:30 p.m. CT)"
PROJECTED = "projected from the 2024-2026 pattern"


@dataclass(frozen=True)
class HolidayHours:
    """CME trade date `trading_date` is a holiday: it closes at `close` (Chicago local time) instead
    of 16:00, or not at all when `close` is None (no session for that trade date)."""

    trading_date: date
    close: time | None
    holiday: str
    source: str


def _hours(day: str, close: str | None, holiday: str, *sources: str) -> HolidayHours:
    return HolidayHours(
        date.fromisoformat(day), None if close is None else time.fromisoformat(close), holiday, "; ".join(sources)
    )


def _seen(what: str) -> str:
    return f"observed in Dukascopy data: {what}"


NEW_YEAR = "New Year's Day"
MLK = "Martin Luther King Jr. Day"
PRESIDENTS = "Presidents' Day"
GOOD_FRIDAY = "Good Friday"
MEMORIAL = "Memorial Day"
JUNETEENTH = "Juneteenth"
INDEPENDENCE = "Independence Day"
LABOR = "Labor Day"
THANKSGIVING = "Thanksgiving"
AFTER_THANKSGIVING = "Day after Thanksgiving"
CHRISTMAS_EVE = "Christmas Eve"
CHRISTMAS = "Christmas"

# Closures: no bars on any of them in the data (H1 from 2022, M15 from 2024); observed holidays move
# to the Friday before a Saturday and the Monday after a Sunday.
_NO_BARS = _seen("no bars")
# The regular US-holiday early close from 2022: 13:30 Chicago, reopening 17:00 Chicago.
_M15_1330 = _seen("last M15 bar 13:15-13:30 CT")
_H1_1330 = _seen("last H1 bar 13:00-14:00 CT")


# The holidays of a year before 2022, in order: (holiday, close in Chicago or None, sources).
_BEFORE_2022 = (
    (NEW_YEAR, None, (LIBRARY,)),
    (MLK, "12:00", (LEAN, LIBRARY)),
    (PRESIDENTS, "12:00", (LEAN, LIBRARY)),
    (GOOD_FRIDAY, None, (LIBRARY,)),
    (MEMORIAL, "12:00", (LEAN, LIBRARY)),
    (INDEPENDENCE, "12:00", (LEAN, LIBRARY)),
    (LABOR, "12:00", (LEAN, LIBRARY)),
    (THANKSGIVING, "12:00", (LEAN, LIBRARY)),
    (AFTER_THANKSGIVING, "12:45", (LEAN, LIBRARY)),
    (CHRISTMAS_EVE, "12:45", (LEAN,)),
    (CHRISTMAS, None, (LIBRARY,)),
)


def _year_before_2022(days: str) -> tuple[HolidayHours, ...]:
    """The hours of a year before 2022: its holidays' trade dates in _BEFORE_2022's order, `-` where
    the holiday is not a trading day."""
    return _listed(days, _BEFORE_2022)


def _listed(days: str, holidays: tuple[tuple[str, str | None, tuple[str, ...]], ...]) -> tuple[HolidayHours, ...]:
    """The hours of `holidays` on the trade dates `days` (in their order; `-` for one not a trading day)."""
    return tuple(
        _hours(day, close, holiday, *sources)
        for day, (holiday, close, sources) in zip(days.split(), holidays, strict=True)
        if day != "-"
    )


# New Year's Day to Juneteenth as the M15 data of 2024 and 2025 shows them.
_FIRST_HALF_SEEN_IN_M15 = (
    (NEW_YEAR, None, (LIBRARY, _NO_BARS)),
    (MLK, "13:30", (LEAN, LIBRARY, _M15_1330)),
    (PRESIDENTS, "13:30", (LEAN, LIBRARY, _M15_1330)),
    (GOOD_FRIDAY, None, (LIBRARY, _NO_BARS)),
    (MEMORIAL, "13:30", (LEAN, LIBRARY, _M15_1330)),
    (JUNETEENTH, "13:30", (LEAN, LIBRARY, _M15_1330)),
)


def _first_half_seen_in_m15(days: str) -> tuple[HolidayHours, ...]:
    """New Year's Day to Juneteenth of 2024 or 2025: their trade dates in _FIRST_HALF_SEEN_IN_M15's order."""
    return _listed(days, _FIRST_HALF_SEEN_IN_M15)


HOLIDAY_HOURS: tuple[HolidayHours, ...] = (
    # 2019-2021: every US-holiday early close at 12:00 Chicago (Lean: 13:00 ET).
    *_year_before_2022(
        "2019-01-01 2019-01-21 2019-02-18 2019-04-19 2019-05-27 2019-07-04 "
        "2019-09-02 2019-11-28 2019-11-29 2019-12-24 2019-12-25"
    ),
    # 2020: Independence Day observed on Friday July 3 (July 4 a Saturday)
    *_year_before_2022(
        "2020-01-01 2020-01-20 2020-02-17 2020-04-10 2020-05-25 2020-07-03 "
        "2020-09-07 2020-11-26 2020-11-27 2020-12-24 2020-12-25"
    ),
    # 2021: Independence Day observed on Monday July 5, Christmas on Friday December 24 (both on a weekend)
    *_year_before_2022(
        "2021-01-01 2021-01-18 2021-02-15 2021-04-02 2021-05-31 2021-07-05 "
        "2021-09-06 2021-11-25 2021-11-26 - 2021-12-24"
    ),
    # 2022: US-holiday early closes move to 13:30 Chicago (Lean: 14:30 ET). New Year's Day is a Saturday.
    _hours("2022-01-17", "12:00", MLK, _seen("last H1 bar 11:00-12:00 CT (Lean lists 13:30)")),
    _hours("2022-02-21", "13:30", PRESIDENTS, LEAN, LIBRARY, _H1_1330),
    _hours("2022-04-15", None, GOOD_FRIDAY, LIBRARY, _NO_BARS),
    _hours("2022-05-30", "13:30", MEMORIAL, LEAN, LIBRARY, _H1_1330),
    _hours("2022-06-20", "13:30", JUNETEENTH, LEAN, LIBRARY, _H1_1330),  # observed (June 19 a Sunday)
    _hours("2022-07-04", "13:30", INDEPENDENCE, LEAN, LIBRARY, _H1_1330),
    _hours("2022-09-05", "13:30", LABOR, LEAN, _H1_1330),  # library: 12:00
    _hours("2022-11-24", "13:30", THANKSGIVING, LEAN, LIBRARY, _H1_1330),
    _hours("2022-11-25", "12:45", AFTER_THANKSGIVING, LEAN, LIBRARY, _seen("last H1 bar 12:00-13:00 CT")),
    _hours("2022-12-26", None, CHRISTMAS, LIBRARY, _NO_BARS),  # observed (Dec 25 a Sunday)
    # 2023
    _hours("2023-01-02", None, NEW_YEAR, LIBRARY, _NO_BARS),  # observed (Jan 1 a Sunday)
    _hours("2023-01-16", "12:00", MLK, _seen("last H1 bar 11:00-12:00 CT (Lean lists 13:30)")),
    _hours("2023-02-20", "13:30", PRESIDENTS, DTN, LEAN, LIBRARY, _H1_1330),
    _hours("2023-04-07", None, GOOD_FRIDAY, LIBRARY, _NO_BARS),
    _hours("2023-05-29", "13:30", MEMORIAL, LEAN, LIBRARY, _H1_1330),
    _hours("2023-06-19", "13:30", JUNETEENTH, LEAN, LIBRARY, _H1_1330),
    _hours("2023-07-04", "13:30", INDEPENDENCE, LEAN, LIBRARY, _H1_1330),
    _hours("2023-09-04", "13:30", LABOR, LEAN, _H1_1330),  # library: 12:00
    _hours("2023-11-23", "13:00", THANKSGIVING, _seen("last H1 bar 12:00-13:00 CT (Lean lists 13:30)")),
    _hours("2023-11-24", "12:00", AFTER_THANKSGIVING, _seen("last H1 bar 11:00-12:00 CT (Lean lists 12:45)")),
    _hours("2023-12-25", None, CHRISTMAS, LIBRARY, _NO_BARS),
    # 2024 (M15 data from 2024-01-05)
    *_first_half_seen_in_m15("2024-01-01 2024-01-15 2024-02-19 2024-03-29 2024-05-27 2024-06-19"),
    _hours("2024-07-04", "13:30", INDEPENDENCE, DTN, LEAN, LIBRARY, _M15_1330),
    _hours("2024-09-02", "13:30", LABOR, LEAN, _M15_1330),  # library: 12:00
    _hours("2024-11-28", "13:30", THANKSGIVING, LEAN, LIBRARY, _M15_1330),
    # Lean has no 2024 entry for the day after Thanksgiving; the library has 12:45.
    _hours("2024-11-29", "13:45", AFTER_THANKSGIVING, _seen("last M15 bar 13:30-13:45 CT")),
    _hours("2024-12-24", "12:45", CHRISTMAS_EVE, LEAN, _seen("last M15 bar 12:30-12:45 CT")),
    _hours("2024-12-25", None, CHRISTMAS, LIBRARY, _NO_BARS),
    # 2025
    *_first_half_seen_in_m15("2025-01-01 2025-01-20 2025-02-17 2025-04-18 2025-05-26 2025-06-19"),
    _hours("2025-07-04", "12:00", INDEPENDENCE, LEAN, _seen("last M15 bar 11:45-12:00 CT")),  # library: 13:30
    _hours("2025-09-01", "13:30", LABOR, LEAN, _M15_1330),  # library: 12:00
    _hours("2025-11-27", "13:30", THANKSGIVING, LEAN, LIBRARY, _M15_1330),
    _hours("2025-11-28", "13:45", AFTER_THANKSGIVING, LEAN, _seen("last M15 bar 13:30-13:45 CT")),  # library: 12:45
    _hours("2025-12-24", "12:45", CHRISTMAS_EVE, LEAN, _seen("last M15 bar 12:30-12:45 CT")),
    _hours("2025-12-25", None, CHRISTMAS, LIBRARY, _NO_BARS),
    # 2026 (M15 data to 2026-03-10, H1 to 2026-04-09)
    _hours("2026-01-01", None, NEW_YEAR, LIBRARY, _NO_BARS),
    _hours("2026-01-19", "13:30", MLK, LEAN, LIBRARY, _M15_1330),
    _hours("2026-02-16", "13:30", PRESIDENTS, LEAN, LIBRARY, _M15_1330),
    _hours("2026-04-03", None, GOOD_FRIDAY, LEAN, LIBRARY, _NO_BARS),
    _hours("2026-05-25", "13:30", MEMORIAL, LEAN, LIBRARY),
    _hours("2026-06-19", "12:00", JUNETEENTH, PMC_2026, LEAN, LIBRARY),
    _hours("2026-07-03", "12:00", INDEPENDENCE, PMC_2026, LEAN, LIBRARY),  # observed (July 4 a Saturday)
    _hours("2026-09-07", "13:30", LABOR, PMC_2026, LEAN, LIBRARY),
    _hours("2026-11-26", "13:30", THANKSGIVING, LEAN, LIBRARY),
    _hours("2026-11-27", "13:45", AFTER_THANKSGIVING, PMC_2026, LEAN, LIBRARY),
    _hours("2026-12-24", "12:45", CHRISTMAS_EVE, PMC_2026, LEAN, LIBRARY),
    _hours("2026-12-25", None, CHRISTMAS, LEAN, LIBRARY),
    # 2027: CME has not published it; the Juneteenth entry is Lean's.
    _hours("2027-01-01", None, NEW_YEAR, LEAN, LIBRARY),
    _hours("2027-01-18", "13:30", MLK, PROJECTED, LIBRARY),
    _hours("2027-02-15", "13:30", PRESIDENTS, PROJECTED, LIBRARY),
    _hours("2027-03-26", None, GOOD_FRIDAY, LIBRARY),
    _hours("2027-05-31", "13:30", MEMORIAL, PROJECTED, LIBRARY),
    _hours("2027-06-18", "12:00", JUNETEENTH, LEAN),  # observed (June 19 a Saturday); library: 13:30
    _hours("2027-07-05", "13:30", INDEPENDENCE, PROJECTED, LIBRARY),  # observed (July 4 a Sunday)
    _hours("2027-09-06", "13:30", LABOR, PROJECTED),  # library: 12:00
    _hours("2027-11-25", "13:30", THANKSGIVING, PROJECTED, LIBRARY),
    _hours("2027-11-26", "13:45", AFTER_THANKSGIVING, PROJECTED),  # library: 12:45
    _hours("2027-12-24", None, CHRISTMAS, LIBRARY),  # observed (Dec 25 a Saturday)
)


# ---- after the table ---------------------------------------------------------------------------

LABOR_DAY_CLOSE = time(13, 30)
AFTER_THANKSGIVING_CLOSE = time(13, 45)
FRIDAY_HOLIDAY_CLOSE = time(12, 0)


def projected_close(trading_date: date, library_close: time) -> time | None:
    """For a year after `HOLIDAY_HOURS_YEARS`: the close the 2024-2027 pattern gives a library
    early close that follows one of the library's known-wrong rules, else None (keep the library's).

    Labor Day (library 12:00) closes 13:30; the day after Thanksgiving (library 12:45) closes
    13:45; any other Friday US-holiday early close (library 13:30) closes 12:00."""
    if trading_date.year <= HOLIDAY_HOURS_YEARS[-1] or library_close >= time(16):
        return None
    if trading_date.month == 9 and trading_date.weekday() == 0 and trading_date.day <= 7:
        return LABOR_DAY_CLOSE
    if trading_date.weekday() == 4:
        thursday = trading_date - timedelta(days=1)
        if thursday.month == 11 and 22 <= thursday.day <= 28:  # the fourth Thursday of November
            return AFTER_THANKSGIVING_CLOSE
        if library_close == time(13, 30):
            return FRIDAY_HOLIDAY_CLOSE
    return None


# ---- outside the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EarlyClose:
    """The session of CME trade date `trading_date` closes at `close` (Chicago local time) instead
    of its regular 16:00. Applied as min(library close, this close), so an entry the library later
    gains as well does no harm."""

    trading_date: date
    close: time
    reason: str


def _christmas_eve(year: int) -> EarlyClose:
    return EarlyClose(date(year, 12, 24), CHRISTMAS_EVE_CLOSE, "Christmas Eve (CME metals 12:45 CT)")


# Every Dec 24 in 2015-2030 outside the table years that is a Monday-Thursday trading day (Dec 24 of
# 2016, 2017 and 2028 falls on a weekend). 2018 is in Lean's table too (12/24/2018 13:45 ET).
EARLY_CLOSES: tuple[EarlyClose, ...] = tuple(_christmas_eve(year) for year in (2015, 2018, 2029, 2030))

# Whole CME trade dates to drop from the library's schedule. None are known to be missing.
CLOSED_TRADING_DATES: tuple[date, ...] = ()
