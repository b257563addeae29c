"""What was fetched, and when: the record that makes fetches incremental.

A window fetched at time f covers, as settled, the bars opening in [window_start, closed_until):
bars that were final when the answer came (published: publication.py), and slots the provider had
nothing for long after their close. Bars still forming, provisional or not yet published then are
not covered and are asked for again. A covered slot with no bar means the provider had nothing, not
that we never asked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from xau_pipeline.market.bars import FetchedWindow, Interval
from xau_pipeline.store.database import insert_series_rows
from xau_pipeline.store.tables import fetch_coverage

SELECT_COVERED = sa.text(
    """
    SELECT window_start, closed_until
    FROM fetch_coverage
    WHERE symbol = :symbol AND timeframe = :timeframe
      AND window_start < :end AND closed_until > :start
      AND closed_until > window_start
    ORDER BY window_start
    """
)

FIRST_COVERED = sa.text(
    """
    SELECT min(window_start) FROM fetch_coverage
    WHERE symbol = :symbol AND timeframe = :timeframe AND closed_until > window_start
    """
)

OLDEST_FETCHED_SINCE = sa.text(
    """
    SELECT min(window_start) FROM fetch_coverage
    WHERE symbol = :symbol AND timeframe = :timeframe AND fetched_at >= :since
    """
)


LAST_ASKED = sa.text(
    """
    SELECT max(fetched_at) FROM fetch_coverage
    WHERE symbol = :symbol AND timeframe = :timeframe AND fetched_at >= :since AND window_end > :slot
    """
)


def closed_until(window: FetchedWindow, bar: timedelta) -> datetime:
    """The end of the part of `window` that its answer settled (by default: whose bars had all
    closed when it was fetched)."""
    if window.closed_until is not None:
        return max(window.start, min(window.end, window.closed_until))
    return max(window.start, min(window.end, window.fetched_at - bar))


def record_windows(
    connection: sa.Connection, symbol: str, timeframe: str, bar: timedelta, windows: list[FetchedWindow]
) -> None:
    """Record fetched windows, in the caller's transaction (with the bars they brought)."""
    rows = (
        {
            "window_start": w.start,
            "window_end": w.end,
            "closed_until": closed_until(w, bar),
            "fetched_at": w.fetched_at,
            "bars": w.bars,
        }
        for w in windows
    )
    insert_series_rows(connection, fetch_coverage, symbol, timeframe, rows)


def covered_intervals(
    connection: sa.Connection, symbol: str, timeframe: str, start: datetime, end: datetime
) -> list[Interval]:
    """Intervals of open times within reach of [start, end) whose bars were fetched closed."""
    rows = connection.execute(SELECT_COVERED, {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end})
    return [(row.window_start, row.closed_until) for row in rows]


def first_covered(connection: sa.Connection, symbol: str, timeframe: str) -> datetime | None:
    """Where the series' oldest window fetched closed begins (None: nothing fetched closed yet)."""
    return connection.execute(FIRST_COVERED, {"symbol": symbol, "timeframe": timeframe}).scalar_one()


def oldest_fetched_since(connection: sa.Connection, symbol: str, timeframe: str, since: datetime) -> datetime | None:
    """Where the oldest window fetched at or after `since` begins (None: none was)."""
    params = {"symbol": symbol, "timeframe": timeframe, "since": since}
    return connection.execute(OLDEST_FETCHED_SINCE, params).scalar_one()


def last_asked(
    connection: sa.Connection, symbol: str, timeframe: str, slot: datetime, since: datetime
) -> datetime | None:
    """When an answer reaching the slot opening at `slot` last came, if at or after `since` (None: none did)."""
    params = {"symbol": symbol, "timeframe": timeframe, "slot": slot, "since": since}
    return connection.execute(LAST_ASKED, params).scalar_one()
