"""Is a series fresh: the one rule behind the `fresh` check, `GET /health` and `xau-pipeline status`.

A series is stale when an expected bar newer than its newest stored one should have been published
by now (its close is more than publication.PUBLICATION_WINDOW ago); while the only such bars closed
more recently, it is waiting for publication; else it is fresh. Each also says when the next bar is
due: the close of the next expected bar plus publication.SETTLE, when the schedules fetch it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from xau_pipeline.market.bar_grid import Grid
from xau_pipeline.market.market_hours import TradingCalendar
from xau_pipeline.market.publication import PUBLICATION_WINDOW, SETTLE
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.store.quality import newest_stored
from xau_pipeline.store.series_grid import recent_grid

FRESH, WAITING, STALE, NOTHING_EXPECTED = "fresh", "waiting for publication", "stale", "no bar expected"
# How far back the rule looks for expected bars, and ahead for the next one (a long holiday).
LOOKBACK = timedelta(days=10)
LOOKAHEAD = timedelta(days=10)


@dataclass(frozen=True)
class Freshness:
    """A series' freshness at `now`."""

    state: str
    newest_expected: datetime | None  # the open of the newest expected bar that has closed
    newest_stored: datetime | None
    next_due: datetime | None  # when the next expected bar should be stored
    age: timedelta | None  # since the newest stored bar closed

    @property
    def ok(self) -> bool:
        return self.state in (FRESH, WAITING)

    @property
    def line(self) -> str:
        newest = f"{self.newest_stored:%Y-%m-%d %H:%M}" if self.newest_stored else "none"
        due = f"; next bar due {self.next_due:%Y-%m-%d %H:%M} UTC" if self.next_due else ""
        return f"{self.state} (newest stored bar opens {newest} UTC){due}"


def freshness(calendar: TradingCalendar, grid: Grid, newest_stored: datetime | None, now: datetime) -> Freshness:
    """The series' freshness at `now`, given the open of its newest stored bar."""
    bounds = calendar.expected_slot_bounds(now - LOOKBACK, now + LOOKAHEAD, grid)
    closed = [(slot, close) for slot, close in bounds if close <= now]
    upcoming = [close for _slot, close in bounds if close > now]
    next_due = upcoming[0] + SETTLE if upcoming else None
    age = now - grid.slot_of(newest_stored)[1] if newest_stored is not None else None
    newest_expected = closed[-1][0] if closed else None
    if not closed:
        return Freshness(NOTHING_EXPECTED, None, newest_stored, next_due, age)
    unstored = [close for slot, close in closed if newest_stored is None or slot > newest_stored]
    if not unstored:
        state = FRESH
    elif unstored[0] + PUBLICATION_WINDOW > now:
        state = WAITING
    else:
        state = STALE
    return Freshness(state, newest_expected, newest_stored, next_due, age)


def series_freshness(
    connection: sa.Connection, symbol: str, timeframe: Timeframe, calendar: TradingCalendar, now: datetime
) -> Freshness:
    """The freshness of a stored series (its grid read off its bars), for `/health` and `status`."""
    grid = recent_grid(connection, symbol, timeframe.name, timeframe.bar, now)
    return freshness(calendar, grid, newest_stored(connection, symbol, timeframe.name), now)
