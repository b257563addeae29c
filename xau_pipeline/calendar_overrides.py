"""Project-owned corrections to `pandas_market_calendars`' ``CMEGlobex_Gold`` sessions.

`xau_pipeline.trading_calendar` builds the ``cme_gold`` policy from the library's schedule and then
applies what is listed here. Keep this list small, dated and sourced: every entry says what the
library gets wrong and why we believe otherwise.

Checked against pandas-market-calendars 5.5.0 for the years 2015-2030 (``CMEGlobex_Gold`` is an
alias of ``CMEGlobex_EnergyAndMetals``):

* Full closures (Good Friday, Christmas Day, New Year's Day, with CME's weekend observance: a
  Saturday Christmas closes Friday Dec 24, a Sunday Christmas/New Year closes the Monday) are all
  present. Nothing to add.
* US-holiday early closes (MLK, Presidents', Memorial, Juneteenth, Independence, Labor Day,
  Thanksgiving and the Friday after) are present, e.g. 2024-01-15 and 2024-07-04 close 13:30
  Chicago, 2024-11-29 closes 12:45 Chicago. Nothing to add.
* Christmas Eve: the library has an early close only for 2026-12-24 (12:45 Chicago, added upstream
  from CME's published 2026 schedule, pandas_market_calendars issue #464 / PR #469). Every other
  Christmas Eve that is a trading day is a regular 16:00 Chicago close in the library. Added below.
* New Year's Eve: the library has no early close in 2015-2030. NOT added, see below.

The CME rule (CME Group holiday calendar, https://www.cmegroup.com/trading-hours.html, holiday
"Christmas"): on Christmas Eve, when Dec 24 is a trading day (Monday-Thursday; a Friday Dec 24 is
the observed Christmas holiday and is closed), CME Globex metals (COMEX GC, SI, ...) halt at
12:45 Chicago time (13:45 New York) and stay closed until the Dec 26 session opens at 17:00 Chicago
on Dec 25. Evidence (no CME notice itself was readable from here): CME's 2026 schedule as reported
in pandas_market_calendars issue #464 (GC and MCL Christmas Eve close 13:45 ET); trade.xyz's 2026
table of CME base-metals holiday hours ("December 24: Open 00:00-13:45" ET); QuantConnect Lean's
CME-derived 2024 data (Lean PR #7718: 2024-12-24 12:45 Chicago for CME crypto futures, which keep
the same 17:00-16:00 Chicago day); a 2013 early-close list (NYMEX electronic 1:45 PM ET on
Dec 24). 12:45 Chicago is also the close the library itself uses for the Friday after
Thanksgiving (through 2025), the other "half day" CME metals observe.

UNCERTAIN:
* Christmas Eve before 2024 (2015, 2018, 2019, 2020) is inferred from the recurring rule, not read
  from that year's CME notice; the library's own test suite asserts 2020 had no early closes in
  December (tests/test_exchange_calendar_cme_globex_energy_and_metals.py::test_2020), which
  contradicts the rule. We follow the rule.
* 2027-2030 are projections of the rule; CME publishes each year's hours only months ahead.
* New Year's Eve: the brief for this module states that metals also close at 12:45 Chicago on
  Dec 31. The sources above say otherwise for the years they cover: trade.xyz's 2026 CME
  base-metals table shows "December 31: Open 00:00-17:00" ET (the regular close), the issue #464
  reporter compared CME's 2026 "NewYears" trading-hours file with the library and reported no
  Dec 31 difference, and Lean's 2024 CME crypto data closes Dec 31, 2024 at the regular 16:00
  Chicago. So no New Year's Eve early close is listed. Revisit if a CME notice for a given year
  says otherwise (add an EarlyClose below).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from zoneinfo import ZoneInfo

CHICAGO = ZoneInfo("America/Chicago")

# CME metals' Christmas Eve halt, Chicago time.
CHRISTMAS_EVE_CLOSE = time(12, 45)


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


# Every Dec 24 in 2015-2030 that is a Monday-Thursday trading day, except 2026-12-24 which the
# library already has. Not trading days: Saturdays/Sundays (2016, 2017, 2022, 2023, 2028) and
# Fridays, which are the observed Christmas holiday (2021, 2027).
EARLY_CLOSES: tuple[EarlyClose, ...] = tuple(
    _christmas_eve(year) for year in (2015, 2018, 2019, 2020, 2024, 2025, 2029, 2030)
)

# Whole CME trade dates to drop from the library's schedule. None are known to be missing.
CLOSED_TRADING_DATES: tuple[date, ...] = ()
