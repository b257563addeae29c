"""Gap detection: the expected bar slots of a window, anti-joined with the candles stored.

Expected slots come from the trading calendar over the *requested* window, never from the
span of rows that happen to exist, so a wholly missing day is still found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from xau_pipeline.trading_calendar import TradingCalendar

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# One generate_series per trading session (date_bin puts its first slot on the bar grid),
# restricted to the requested window; DISTINCT because a 4h or 1day slot can overlap two
# sessions across the daily break. Then LEFT JOIN candles: what has no row is a gap.
MISSING_SLOTS = sa.text(
    """
    WITH expected AS (
        SELECT DISTINCT slot
        FROM unnest(CAST(:opens AS timestamptz[]), CAST(:closes AS timestamptz[])) AS s(open_at, close_at),
             generate_series(date_bin(CAST(:bar AS interval), s.open_at, CAST(:origin AS timestamptz)),
                             s.close_at - interval '1 microsecond', CAST(:bar AS interval)) AS slot
        WHERE slot >= :start AND slot < :end
    )
    SELECT e.slot, fetched.times AS fetches, fetched.last_at AS last_fetched_at
    FROM expected e
    LEFT JOIN candles c ON c.symbol = :symbol AND c.timeframe = :timeframe AND c."timestamp" = e.slot
    CROSS JOIN LATERAL (
        SELECT count(*) AS times, max(f.fetched_at) AS last_at
        FROM fetch_coverage f
        WHERE f.symbol = :symbol AND f.timeframe = :timeframe
          AND f.window_start <= e.slot AND f.closed_until > e.slot
    ) AS fetched
    WHERE c."timestamp" IS NULL
    ORDER BY e.slot
    """
)

# Stored bars whose slot overlaps no session: Twelve Data's feed runs 24/7, so they can arrive.
OFF_SESSION_BARS = sa.text(
    """
    SELECT count(*)
    FROM candles c
    WHERE c.symbol = :symbol AND c.timeframe = :timeframe AND c."timestamp" >= :start AND c."timestamp" < :end
      AND NOT EXISTS (
          SELECT 1 FROM unnest(CAST(:opens AS timestamptz[]), CAST(:closes AS timestamptz[])) AS s(open_at, close_at)
          WHERE s.open_at < c."timestamp" + CAST(:bar AS interval) AND s.close_at > c."timestamp"
      )
    """
)

STORED_COUNT = sa.text(
    """
    SELECT count(*) FROM candles
    WHERE symbol = :symbol AND timeframe = :timeframe AND "timestamp" >= :start AND "timestamp" < :end
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

NEVER_FETCHED = "never fetched"
PROVIDER_EMPTY = "provider returned nothing"
NOT_CLOSED = "not closed yet"


@dataclass(frozen=True)
class Gap:
    """One expected bar with no row, and why; how often its slot was fetched closed, and when last."""

    slot: datetime
    reason: str
    fetches: int = 0
    last_fetched_at: datetime | None = None


@dataclass
class GapReport:
    """Expected, present and missing bars of one series over one window."""

    expected: int
    stored: int
    off_session: int
    gaps: list[Gap]
    phase: timedelta

    @property
    def missing(self) -> int:
        return len(self.gaps)

    def count(self, reason: str) -> int:
        return sum(gap.reason == reason for gap in self.gaps)


def detect_phase(connection: sa.Connection, symbol: str, timeframe: str, bar: timedelta) -> timedelta:
    """The bar grid's offset as the stored bars show it (0 when nothing is stored yet)."""
    row = connection.execute(
        DOMINANT_PHASE, {"symbol": symbol, "timeframe": timeframe, "bar_seconds": int(bar.total_seconds())}
    ).first()
    return timedelta(seconds=row.phase_seconds) if row else timedelta(0)


def find_gaps(
    connection: sa.Connection,
    symbol: str,
    timeframe: str,
    bar: timedelta,
    calendar: TradingCalendar,
    start: datetime,
    end: datetime,
    now: datetime,
    phase: timedelta | None = None,
) -> GapReport:
    """Every expected slot of [start, end) without a stored bar, classified."""
    if phase is None:
        phase = detect_phase(connection, symbol, timeframe, bar)
    sessions = calendar.sessions(start - bar, end)
    params = {
        "symbol": symbol,
        "timeframe": timeframe,
        "start": start,
        "end": end,
        "bar": bar,
        "origin": EPOCH + phase,
        "opens": [s[0] for s in sessions],
        "closes": [s[1] for s in sessions],
    }
    gaps = []
    for slot, fetches, last_fetched_at in connection.execute(MISSING_SLOTS, params):
        if slot + bar > now:
            reason = NOT_CLOSED
        else:
            reason = PROVIDER_EMPTY if fetches else NEVER_FETCHED
        gaps.append(Gap(slot, reason, fetches, last_fetched_at))
    return GapReport(
        expected=calendar.count_expected(start, end, bar, phase),
        stored=connection.execute(STORED_COUNT, params).scalar_one(),
        off_session=connection.execute(OFF_SESSION_BARS, params).scalar_one(),
        gaps=gaps,
        phase=phase,
    )
