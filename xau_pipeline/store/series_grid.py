"""Which grid a stored series' bars open on: its dominant phase, and the grid detected over all its bars or its recent ones (market/grid_detection.py does the detecting)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from xau_pipeline.clock import EPOCH
from xau_pipeline.market.bar_grid import Grid, utc_grid
from xau_pipeline.market.grid_detection import GridDetection, detect_grid

# Every stored open of a series (H4 and D1: about 11,000 and 2,000 rows over seven years).
SERIES_OPENS = sa.text(
    """
    SELECT "timestamp" FROM candles
    WHERE symbol = :symbol AND timeframe = :timeframe AND "timestamp" >= :since
    ORDER BY "timestamp"
    """
)


# The most common offset of stored bar opens from the epoch grid: Twelve Data's 4h phase and the
# hour its 1day bars carry are undocumented, so they are read off the data.
DOMINANT_PHASE = sa.text(
    """
    SELECT mod(floor(extract(epoch FROM "timestamp"))::bigint, :bar_seconds) AS phase_seconds, count(*) AS bars
    FROM candles
    WHERE symbol = :symbol AND timeframe = :timeframe
    GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1
    """
)


def detect_phase(connection: sa.Connection, symbol: str, timeframe: str, bar: timedelta) -> timedelta:
    """The bar grid's offset as the stored bars show it (0 when nothing is stored yet)."""
    row = connection.execute(
        DOMINANT_PHASE, {"symbol": symbol, "timeframe": timeframe, "bar_seconds": int(bar.total_seconds())}
    ).first()
    return timedelta(seconds=row.phase_seconds) if row else timedelta(0)


def series_opens(
    connection: sa.Connection, symbol: str, timeframe: str, since: datetime | None = None
) -> list[datetime]:
    """Every stored bar open of a series (from `since`), ascending."""
    params = {"symbol": symbol, "timeframe": timeframe, "since": since or EPOCH}
    return list(connection.execute(SERIES_OPENS, params).scalars())


def detect_series_grid(
    connection: sa.Connection, symbol: str, timeframe: str, bar: timedelta, since: datetime | None = None
) -> GridDetection:
    """The series' grid as its stored bars show it (xau_pipeline.market.grid_detection.detect_grid), recomputed on each call.

    Bars dividing an hour: the dominant UTC phase in one SQL aggregate. H4 and D1: the opens are
    read and matched per DST stretch (tens of milliseconds over seven years).
    """
    if timedelta(hours=1) % bar == timedelta(0) and since is None:
        return GridDetection(utc_grid(bar, detect_phase(connection, symbol, timeframe, bar)), 0)
    return detect_grid(series_opens(connection, symbol, timeframe, since), bar)


# How far back the live paths (schedules, publication sensor, freshness) read an H4 or D1 grid off
# the stored bars: both DST seasons.
GRID_LOOKBACK = timedelta(days=400)


def recent_grid(connection: sa.Connection, symbol: str, timeframe: str, bar: timedelta, now: datetime) -> Grid:
    """The grid the series' newest bars lie on: the UTC grid for bars dividing an hour (M15, H1, whatever
    the feed), else the one its stored bars of the last GRID_LOOKBACK show."""
    if timedelta(hours=1) % bar == timedelta(0):
        return utc_grid(bar)
    return detect_series_grid(connection, symbol, timeframe, bar, since=now - GRID_LOOKBACK).grid
