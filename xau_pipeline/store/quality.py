"""Data-quality queries behind the asset checks: OHLC sanity and agreement with M15."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from xau_pipeline.clock import EPOCH
from xau_pipeline.market.bar_grid import DAY, Grid
from xau_pipeline.market.grid_detection import DayCover, detect_day_cover
from xau_pipeline.store.candle_query import OHLC, candle_query
from xau_pipeline.store.gaps import PLAN_FOR_LONG_WINDOWS

# Each bar with the close before it (the bar before the window included, so the first bar
# of a day is compared with the previous day's last).
OHLC_ROWS = sa.text(
    """
    SELECT "timestamp", open, high, low, close, prev_close
    FROM (
        SELECT "timestamp", open, high, low, close,
               lag(close) OVER (ORDER BY "timestamp") AS prev_close
        FROM candles
        WHERE symbol = :symbol AND timeframe = :timeframe
          AND "timestamp" >= coalesce(
              (SELECT max("timestamp") FROM candles
               WHERE symbol = :symbol AND timeframe = :timeframe AND "timestamp" < :start), :start)
          AND "timestamp" < :end
    ) AS ordered
    WHERE "timestamp" >= :start
      AND (low > least(open, close) OR greatest(open, close) > high
           OR least(open, high, low, close) <= 0
           OR (prev_close > 0 AND abs(open - prev_close) / prev_close > :max_jump))
    ORDER BY "timestamp"
    """
)

NEWEST_STORED = sa.text('SELECT max("timestamp") FROM candles WHERE symbol = :symbol AND timeframe = :timeframe')

# Given the M15 bars with their slot (CTE `m15`): their OHLC per slot, beside each stored bar of the
# higher timeframe. Shared by the UTC-grid and the listed-slot queries below.
_AGGREGATED_AGAINST_BARS = """
    ), aggregated AS (
        SELECT slot, count(*) AS bars,
               (array_agg(open ORDER BY "timestamp"))[1] AS open,
               max(high) AS high, min(low) AS low,
               (array_agg(close ORDER BY "timestamp" DESC))[1] AS close
        FROM m15 GROUP BY slot
    )
    SELECT h."timestamp", h.open, h.high, h.low, h.close,
           a.bars, a.open AS m15_open, a.high AS m15_high, a.low AS m15_low, a.close AS m15_close
    FROM candles h LEFT JOIN aggregated a ON a.slot = h."timestamp"
    WHERE h.symbol = :symbol AND h.timeframe = :timeframe AND h."timestamp" >= :start AND h."timestamp" < :end
    ORDER BY h."timestamp"
"""

# M15 bars grouped into the higher timeframe's slots (date_bin on the slot grid).
M15_AGGREGATES = sa.text(
    """
    WITH m15 AS (
        SELECT date_bin(CAST(:bar AS interval), "timestamp", CAST(:origin AS timestamptz)) AS slot,
               "timestamp", open, high, low, close
        FROM candles
        WHERE symbol = :symbol AND timeframe = 'M15' AND "timestamp" >= :start AND "timestamp" < :end_of_last_bar
    """
    + _AGGREGATED_AGAINST_BARS
)


# The same over listed slots: the bar stored at `slot` holds the M15 bars of [slot_start, slot_end)
# (slot_start is the slot itself, but for a D1 bar stored at its date and holding another day).
M15_AGGREGATES_LISTED = sa.text(
    """
    WITH slots AS (
        SELECT slot, slot_start, slot_end
        FROM unnest(CAST(:slots AS timestamptz[]), CAST(:slot_starts AS timestamptz[]),
                    CAST(:slot_ends AS timestamptz[])) AS s(slot, slot_start, slot_end)
    ), m15 AS (
        SELECT s.slot, c."timestamp", c.open, c.high, c.low, c.close
        FROM slots s JOIN candles c ON c.symbol = :symbol AND c.timeframe = 'M15'
             AND c."timestamp" >= s.slot_start AND c."timestamp" < s.slot_end
    """
    + _AGGREGATED_AGAINST_BARS
)


@dataclass(frozen=True)
class Mismatch:
    """A higher-timeframe bar and the M15 aggregate it disagrees with."""

    timestamp: datetime
    fields: tuple[str, ...]
    bar: tuple[Decimal, ...]
    m15: tuple[Decimal, ...]


def day_cover(connection: sa.Connection, symbol: str, start: datetime, end: datetime) -> DayCover:
    """The day the D1 bars of [start, end) hold, from the H1 bars around them (grid_detection.detect_day_cover)."""

    def prices(timeframe: str, lo: datetime, hi: datetime) -> list:
        rows = connection.execute(candle_query(symbol, timeframe, lo, hi, newest_first=False, columns=OHLC))
        return [(r.timestamp, (r.open, r.high, r.low, r.close)) for r in rows]

    return detect_day_cover(prices("D1", start, end), prices("H1", start - 2 * DAY, end + 2 * DAY))


def newest_stored(connection: sa.Connection, symbol: str, timeframe: str) -> datetime | None:
    """The open of the newest stored bar of a series."""
    return connection.execute(NEWEST_STORED, {"symbol": symbol, "timeframe": timeframe}).scalar()


def invalid_ohlc(
    connection: sa.Connection, symbol: str, timeframe: str, start: datetime, end: datetime, max_jump: Decimal
) -> list[sa.Row]:
    """Bars breaking low <= min(open, close) <= max(open, close) <= high, with a price <= 0, or jumping too far."""
    params = {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end, "max_jump": max_jump}
    return list(connection.execute(OHLC_ROWS, params))


@dataclass(frozen=True)
class M15Comparison:
    """How bars of a higher timeframe are compared with their M15 bars.

    Only bars whose M15 bars are all stored (`m15_expected(slot)` of them) are compared, each price
    within `tolerance` (relative). The M15 bars are grouped by `grid`'s slots when given (a zoned
    grid's slot runs to its next open: `m15_expected` then counts up to `grid.slot_of(slot)[1]`),
    else by the UTC grid `phase`; with `held`, the bar stored at each slot of `grid` holds the M15
    bars of `held(slot)` (D1 bars stored at their date, holding a day that does not start at 00:00 UTC).
    """

    tolerance: Decimal
    m15_expected: Callable[[datetime], int]
    grid: Grid | None = None
    phase: timedelta = timedelta(0)
    held: Callable[[datetime], tuple[datetime, datetime]] | None = None


def m15_mismatches_by_day(
    connection: sa.Connection,
    symbol: str,
    timeframe: str,
    bar: timedelta,
    start: datetime,
    end: datetime,
    comparison: M15Comparison,
    day_of: Callable[[datetime], str],
) -> dict[str, tuple[list[Mismatch], int, int]]:
    """Per `day_of(bar open)`, the bars of [start, end) whose OHLC differ from their M15 bars (see
    M15Comparison), how many were compared and how many skipped as incomplete, in one query; days
    without bars absent."""
    grid, held, tolerance = comparison.grid, comparison.held, comparison.tolerance
    params = {
        "symbol": symbol,
        "timeframe": timeframe,
        "start": start,
        "end": end,
        "end_of_last_bar": end + bar,
        "bar": bar,
        "origin": EPOCH + comparison.phase,
    }
    query = M15_AGGREGATES
    if grid is not None and grid.is_utc:
        params["origin"] = EPOCH + grid.phase
    if grid is not None and (held is not None or not grid.is_utc):
        slots = [(o, *(held(o) if held else (o, c))) for o, c in grid.slots(start, end)]
        params |= {
            "slots": [o for o, _, _ in slots],
            "slot_starts": [a for _, a, _ in slots],
            "slot_ends": [b for _, _, b in slots],
        }
        query = M15_AGGREGATES_LISTED
    # Just after a backfill the planner's statistics still say "one row": without this it loops
    # over the M15 aggregate once per bar (78 s for a year of H1 bars instead of 66 ms).
    for setting in PLAN_FOR_LONG_WINDOWS:
        connection.exec_driver_sql(setting)
    days: dict[str, tuple[list[Mismatch], int, int]] = {}
    for row in connection.execute(query, params):
        key = day_of(row.timestamp)
        mismatches, compared, incomplete = days.get(key, ([], 0, 0))
        if row.bars is None or row.bars < comparison.m15_expected(row.timestamp):
            days[key] = (mismatches, compared, incomplete + 1)
            continue
        bar_values = (row.open, row.high, row.low, row.close)
        m15_values = (row.m15_open, row.m15_high, row.m15_low, row.m15_close)
        differing = tuple(
            name
            for name, a, b in zip(("open", "high", "low", "close"), bar_values, m15_values)
            if abs(a - b) > tolerance * abs(b)
        )
        if differing:
            mismatches.append(Mismatch(row.timestamp, differing, bar_values, m15_values))
        days[key] = (mismatches, compared + 1, incomplete)
    return days
