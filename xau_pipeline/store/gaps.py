"""Gap detection: the expected bar slots of a window, anti-joined with the candles stored.

Expected slots come from the trading calendar over the *requested* window, never from the
span of rows that happen to exist, so a wholly missing day is still found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from xau_pipeline.trading_calendar import TradingCalendar

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# One generate_series per trading session, on the bar grid (date_bin), starting after the last
# slot of the session before so that a 4h or 1day slot straddling the daily break is listed once;
# restricted to the requested window. Then LEFT JOIN candles: what has no row is a gap.
MISSING_SLOTS = sa.text(
    """
    WITH sessions AS (
        SELECT open_at, close_at, lag(close_at) OVER (ORDER BY open_at) AS previous_close
        FROM unnest(CAST(:opens AS timestamptz[]), CAST(:closes AS timestamptz[])) AS s(open_at, close_at)
    ), expected AS (
        SELECT slot
        FROM sessions s,
             generate_series(
                 greatest(
                     date_bin(CAST(:bar AS interval), s.open_at, CAST(:origin AS timestamptz)),
                     date_bin(CAST(:bar AS interval), s.previous_close - interval '1 microsecond', CAST(:origin AS timestamptz))
                         + CAST(:bar AS interval)
                 ),
                 s.close_at - interval '1 microsecond',
                 CAST(:bar AS interval)
             ) AS slot
        WHERE slot >= :start AND slot < :end
    )
    SELECT e.slot, fetched.times AS fetches, fetched.last_at AS last_fetched_at
    FROM expected e
    LEFT JOIN candles c ON c.symbol = :symbol AND c.timeframe = :timeframe AND c."timestamp" = e.slot
         AND c."timestamp" >= :start AND c."timestamp" < :end
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

# PostgreSQL cannot estimate how many rows generate_series yields per session (it guesses 5), so
# over a long window it probes the candles index once per slot; a merge anti join over one
# ordered scan is about four times faster, and JIT compilation alone would cost ~80 ms.
PLAN_FOR_LONG_WINDOWS = ("SET LOCAL enable_nestloop = off", "SET LOCAL jit = off", "SET LOCAL work_mem = '32MB'")

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
    for setting in PLAN_FOR_LONG_WINDOWS:
        connection.exec_driver_sql(setting)
    gaps = []
    for slot, fetches, last_fetched_at in connection.execute(MISSING_SLOTS, params):
        if slot + bar > now:
            reason = NOT_CLOSED
        else:
            reason = PROVIDER_EMPTY if fetches else NEVER_FETCHED
        gaps.append(Gap(slot, reason, fetches, last_fetched_at))
    expected = calendar.count_expected(start, end, bar, phase)
    stored = connection.execute(STORED_COUNT, params).scalar_one()
    # Every stored bar either fills an expected slot or lies off-session (or off the grid).
    return GapReport(expected, stored, off_session=stored - (expected - len(gaps)), gaps=gaps, phase=phase)
