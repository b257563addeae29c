"""Gap detection: the expected bar slots of a window, anti-joined with the candles stored.

Expected slots come from the trading calendar over the *requested* window, never from the
span of rows that happen to exist, so a wholly missing day is still found. They lie on the
series' bar grid (xau_pipeline.market.bar_grid): a UTC grid is enumerated in SQL per session
(generate_series on date_bin); a grid anchored in a zone (H4/D1 at 17:00 New York) is enumerated in
Python, where its DST shifts are known, and passed to SQL as an array (a few thousand slots at most).

A "missing" slot overlapped by a stored bar that is off the grid is a phantom: the data is there,
stamped on another grid. Such gaps get the reason GRID_MISMATCH (the repair sensor fetches only
never-fetched and provider gaps, so it spends nothing on them) and the report carries a one-line
`GridMismatch` naming the grid the stored bars fit.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from xau_pipeline.clock import EPOCH
from xau_pipeline.market.bar_grid import Grid, utc_grid
from xau_pipeline.market.grid_detection import detect_grid
from xau_pipeline.market.market_hours import TradingCalendar
from xau_pipeline.market.publication import PUBLICATION_WINDOW
from xau_pipeline.store.series_grid import (
    detect_phase,
    detect_series_grid,
    recent_grid,
)

# The expected slots (CTE `expected`) with no stored bar, each with how often its slot was fetched
# closed and when last: shared by the UTC-grid and the listed-slot queries below.
_MISSING_OF_EXPECTED = """
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

# One generate_series per trading session, on the bar grid (date_bin), starting after the last
# slot of the session before so that a 4h or 1day slot straddling the daily break is listed once;
# restricted to the requested window. Then LEFT JOIN candles: what has no row is a gap.
_UTC_GRID_EXPECTED = """
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
"""
MISSING_SLOTS = sa.text(_UTC_GRID_EXPECTED + _MISSING_OF_EXPECTED)

# The same anti join over slots listed by the caller (grids anchored in a zone).
_LISTED_EXPECTED = """
    WITH expected AS (
        SELECT slot FROM unnest(CAST(:slots AS timestamptz[])) AS e(slot)
        WHERE slot >= :start AND slot < :end
    )
"""
MISSING_LISTED_SLOTS = sa.text(_LISTED_EXPECTED + _MISSING_OF_EXPECTED)

# How many expected slots there are and how many of them hold a stored bar (off-session bars not counted).
_COUNT_OF_EXPECTED = """
    SELECT count(*) AS expected, count(c."timestamp") AS stored
    FROM expected e
    LEFT JOIN candles c ON c.symbol = :symbol AND c.timeframe = :timeframe AND c."timestamp" = e.slot
         AND c."timestamp" >= :start AND c."timestamp" < :end
"""
SLOT_COUNTS = sa.text(_UTC_GRID_EXPECTED + _COUNT_OF_EXPECTED)
LISTED_SLOT_COUNTS = sa.text(_LISTED_EXPECTED + _COUNT_OF_EXPECTED)

# Stored opens of a window (and a bar either side), to tell bars off the grid.
STORED_OPENS = sa.text(
    """
    SELECT "timestamp" FROM candles
    WHERE symbol = :symbol AND timeframe = :timeframe AND "timestamp" > :lo AND "timestamp" < :hi
    ORDER BY "timestamp"
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


NEVER_FETCHED = "never fetched"
PROVIDER_EMPTY = "provider returned nothing"
# A closed bar no answer has settled yet, within the publication window of its close: late, not missing.
NOT_PUBLISHED = "not published yet"
GRID_MISMATCH = "grid mismatch"


@dataclass(frozen=True)
class Gap:
    """One expected bar with no row, and why; how often its slot was fetched closed, and when last."""

    slot: datetime
    reason: str
    fetches: int = 0
    last_fetched_at: datetime | None = None


@dataclass(frozen=True)
class GridMismatch:
    """Missing slots of a window that sit beside stored bars off the grid they were expected on."""

    expected_on: str
    found: str
    phantom_gaps: int
    off_grid_bars: int

    @property
    def line(self) -> str:
        """The one line a check or a log shows instead of listing the phantom gaps."""
        return (
            f"grid mismatch: {self.phantom_gaps} slot(s) of the {self.expected_on} grid are empty beside "
            f"{self.off_grid_bars} stored bar(s) off it; the stored bars fit {self.found}. "
            "Not gaps: nothing to fetch."
        )


@dataclass
class GapReport:
    """Expected, present and missing bars of one series over one window."""

    expected: int
    stored: int
    off_session: int
    gaps: list[Gap]
    phase: timedelta
    grid: Grid | None = None
    mismatch: GridMismatch | None = None

    @property
    def missing(self) -> int:
        return len(self.gaps)

    @property
    def present(self) -> int:
        """Expected slots holding a stored bar (off-session bars are counted apart)."""
        return self.expected - self.missing

    def count(self, reason: str) -> int:
        return sum(gap.reason == reason for gap in self.gaps)

    @property
    def real_gaps(self) -> list[Gap]:
        """The gaps that are not phantoms of a grid mismatch."""
        return [gap for gap in self.gaps if gap.reason != GRID_MISMATCH]


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
    grid: Grid | None = None,
) -> GapReport:
    """Every expected slot of [start, end) without a stored bar, classified.

    The slots lie on `grid`; else on the UTC grid `phase` after the epoch grid; else on the grid
    detected from the stored bars (`detect_series_grid`).
    """
    if grid is None:
        grid = detect_series_grid(connection, symbol, timeframe, bar).grid if phase is None else utc_grid(bar, phase)
    # A bar still forming is neither expected nor missing.
    end = max(start, min(end, closed_horizon(grid, now)))
    params: dict = {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end}
    slot_ends: dict[datetime, datetime] = {}
    if grid.is_utc:
        phase = grid.phase
        sessions = calendar.sessions(start - bar, end)
        params |= {
            "bar": bar,
            "origin": EPOCH + phase,
            "opens": [s[0] for s in sessions],
            "closes": [s[1] for s in sessions],
        }
        for setting in PLAN_FOR_LONG_WINDOWS:
            connection.exec_driver_sql(setting)
        rows = connection.execute(MISSING_SLOTS, params)
        expected = calendar.count_expected(start, end, bar, phase)
    else:
        phase = timedelta(0)
        bounds = calendar.expected_slot_bounds(start, end, grid)
        slot_ends = dict(bounds)
        params |= {"slots": [o for o, _ in bounds]}
        rows = connection.execute(MISSING_LISTED_SLOTS, params)
        expected = len(bounds)
    gaps = []
    for slot, fetches, last_fetched_at in rows:
        gaps.append(Gap(slot, gap_reason(slot_ends.get(slot, slot + bar), fetches, now), fetches, last_fetched_at))
    stored = connection.execute(STORED_COUNT, params).scalar_one()
    # Every stored bar either fills an expected slot or lies off-session (or off the grid).
    off_session = stored - (expected - len(gaps))
    report = GapReport(expected, stored, off_session=off_session, gaps=gaps, phase=phase, grid=grid)
    if gaps and off_session > 0:
        _mark_phantoms(connection, report, symbol, timeframe, bar, start, end, slot_ends)
    return report


def closed_horizon(grid: Grid, now: datetime) -> datetime:
    """The open of the slot still forming at `now`: the slots before it have closed."""
    return grid.slot_of(now)[0]


def gap_reason(close: datetime, fetches: int, now: datetime) -> str:
    """Why a closed expected slot has no bar: never settled by an answer (late or never fetched), or
    settled empty (the provider had nothing)."""
    if fetches:
        return PROVIDER_EMPTY
    return NOT_PUBLISHED if close + PUBLICATION_WINDOW > now else NEVER_FETCHED


def stored_share(
    connection: sa.Connection,
    grid: Grid,
    symbol: str,
    timeframe: str,
    bar: timedelta,
    calendar: TradingCalendar,
    start: datetime,
    now: datetime,
) -> tuple[int, int]:
    """(expected, stored): the slots of [start, now) on `grid` whose bar had closed by `now`, and how
    many of them hold a stored bar."""
    params: dict = {"symbol": symbol, "timeframe": timeframe, "start": start}
    if grid.is_utc:
        # A slot has closed when slot + bar <= now: slots opening before now - bar + 1 µs.
        end = now - bar + timedelta(microseconds=1)
        if end <= start:
            return 0, 0
        sessions = calendar.sessions(start - bar, end)
        params |= {
            "end": end,
            "bar": bar,
            "origin": EPOCH + grid.phase,
            "opens": [s[0] for s in sessions],
            "closes": [s[1] for s in sessions],
        }
        for setting in PLAN_FOR_LONG_WINDOWS:
            connection.exec_driver_sql(setting)
        row = connection.execute(SLOT_COUNTS, params).one()
    else:
        closed = [slot for slot, slot_end in calendar.expected_slot_bounds(start, now, grid) if slot_end <= now]
        params |= {"end": now, "slots": closed}
        row = connection.execute(LISTED_SLOT_COUNTS, params).one()
    return int(row.expected), int(row.stored)


def _mark_phantoms(
    connection: sa.Connection,
    report: GapReport,
    symbol: str,
    timeframe: str,
    bar: timedelta,
    start: datetime,
    end: datetime,
    slot_ends: dict[datetime, datetime],
) -> None:
    """Reclassify the closed gaps overlapped by a stored bar off the grid as GRID_MISMATCH, in place."""
    grid = report.grid
    assert grid is not None
    closed = [gap for gap in report.gaps if gap.reason != NOT_PUBLISHED]
    if not closed:
        return
    # Only bars beside a closed gap can make it a phantom: read the stored opens around the gaps, not
    # the whole range (a year of M15 is 35,000 opens, read again at every repair tick with a gap).
    lo = max(start, min(gap.slot for gap in closed)) - 2 * bar
    hi = min(end, max(slot_ends.get(gap.slot, gap.slot + bar) for gap in closed)) + 2 * bar
    params = {"symbol": symbol, "timeframe": timeframe, "lo": lo, "hi": hi}
    stored = list(connection.execute(STORED_OPENS, params).scalars())
    if grid.is_utc:
        off_grid = [t for t in stored if not grid.contains(t)]
    else:
        on_grid = {slot for slot, _close in grid.slots(lo, hi)}
        off_grid = [t for t in stored if t not in on_grid]
    if not off_grid:
        return
    phantom_slots = 0
    touched: set[datetime] = set()
    for i, gap in enumerate(report.gaps):
        if gap.reason == NOT_PUBLISHED:
            continue
        slot_end = slot_ends.get(gap.slot, gap.slot + bar)
        # An off-grid bar [t, t + bar) overlapping the slot [slot, slot_end).
        j = bisect_left(off_grid, gap.slot - bar + timedelta(microseconds=1))
        beside = [t for t in off_grid[j:] if t < slot_end]
        if beside:
            touched.update(beside)
            phantom_slots += 1
            report.gaps[i] = Gap(gap.slot, GRID_MISMATCH, gap.fetches, gap.last_fetched_at)
    if phantom_slots:
        whole = {"symbol": symbol, "timeframe": timeframe, "lo": start - 2 * bar, "hi": end + 2 * bar}
        found = detect_grid(list(connection.execute(STORED_OPENS, whole).scalars()), bar)
        report.mismatch = GridMismatch(grid.describe(), found.grid.describe(), phantom_slots, len(touched))


def grid_mismatch(report: GapReport) -> GridMismatch | None:
    """The report's grid mismatch, if its missing slots sit beside stored bars off its grid."""
    return report.mismatch


__all__ = [
    "GRID_MISMATCH",
    "NEVER_FETCHED",
    "NOT_PUBLISHED",
    "PROVIDER_EMPTY",
    "Gap",
    "GapReport",
    "GridMismatch",
    "closed_horizon",
    "detect_phase",
    "detect_series_grid",
    "find_gaps",
    "gap_reason",
    "grid_mismatch",
    "recent_grid",
]
