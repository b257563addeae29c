"""Asset checks on each candle asset, declared as check specs of the asset and judged per daily partition.

The checks run inside the asset's own step (one step per series, not one per check); the UI can
still run them alone (the asset is subsettable). Each check judges one UTC day at a time. A check
with nothing to judge on a day does not pass: it records no result for that day (Dagster shows the
partition as skipped), or, when it should have had something to judge, warns and says why.
"""

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg

from xau_pipeline.clock import utc_label
from xau_pipeline.defs.candles.markdown_tables import ROWS_SHOWN, markdown_table
from xau_pipeline.market.bar_grid import Grid
from xau_pipeline.market.grid_detection import DayCover
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME, Timeframe
from xau_pipeline.settings import Settings
from xau_pipeline.store.candle_store import CandleStore, utc_day
from xau_pipeline.store.freshness import NOTHING_EXPECTED, freshness
from xau_pipeline.store.gaps import (
    GRID_MISMATCH,
    NEVER_FETCHED,
    NOT_PUBLISHED,
    PROVIDER_EMPTY,
    Gap,
    GapReport,
    closed_horizon,
)
from xau_pipeline.store.quality import M15Comparison

M15 = TIMEFRAMES_BY_NAME["M15"]
# Quarantined bars read at most per ranged check run (they are rare: a hostile or broken feed).
QUARANTINE_READ_LIMIT = 100_000

NO_GAPS, OHLC_VALID, FRESH, CONSISTENT_WITH_M15 = "no_gaps", "ohlc_valid", "fresh", "consistent_with_m15"
QUARANTINE_EMPTY = "quarantine_empty"
NOT_JUDGED = "not judged"
SEVERITY = {
    NO_GAPS: dg.AssetCheckSeverity.WARN,
    OHLC_VALID: dg.AssetCheckSeverity.ERROR,
    QUARANTINE_EMPTY: dg.AssetCheckSeverity.ERROR,
    FRESH: dg.AssetCheckSeverity.WARN,
    CONSISTENT_WITH_M15: dg.AssetCheckSeverity.WARN,
}
DESCRIPTIONS = {
    NO_GAPS: "Every bar the trading calendar expects on the day is stored; missing ones are listed and explained.",
    OHLC_VALID: "low <= min(open, close) <= max(open, close) <= high, prices > 0, no jump from the previous "
    "close beyond XAU_MAX_JUMP.",
    QUARANTINE_EMPTY: "No bar of the day was kept out of `candles` (off grid, prices not finite or not > 0, "
    "high < low, a datetime repeated with other values, unreadable): see `candle_quarantine`.",
    FRESH: "The newest closed bar the calendar expects is stored; shows its age. Judged by every run that covers "
    "today's partition; a run over past days only does not judge it (shown as skipped). Not partitioned: it "
    "is about the series now, not about a day.",
    CONSISTENT_WITH_M15: "Each bar agrees with the M15 bars it covers (open, high, low, close) within "
    "XAU_M15_TOLERANCE. Warns when there are bars but no complete M15 bars to compare them with.",
}


# Where a ranged run's verdicts are, and what a skipped day means.
RANGED_RUNS = (
    " Every run records each day it judges as passed or failed here, a ranged run (a backfill) also one "
    "result for its range; a day shown as skipped had nothing to judge (its materialization's `checks` says why)."
)
# Why a check recorded nothing for a day (it does not judge a day with nothing to judge).
WHY_NOT_JUDGED = {
    NO_GAPS: "no bar expected (market closed) and none stored",
    OHLC_VALID: "no bar stored",
    QUARANTINE_EMPTY: "no bar stored or quarantined",
    FRESH: "judged on today's partition only",
    CONSISTENT_WITH_M15: "no bar of this timeframe stored",
}


# Checks about the series as a whole, not a day: one result per run, so the UI shows the latest.
UNPARTITIONED = {FRESH}


def check_names(timeframe: Timeframe) -> tuple[str, ...]:
    """no_gaps, ohlc_valid, quarantine_empty and fresh on every candle asset; consistent_with_m15 above M15."""
    return (NO_GAPS, OHLC_VALID, QUARANTINE_EMPTY, FRESH) + ((CONSISTENT_WITH_M15,) if timeframe.bar > M15.bar else ())


def check_specs(
    timeframe: Timeframe, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name,
            asset=asset_key,
            description=DESCRIPTIONS[name] + ("" if name in UNPARTITIONED else RANGED_RUNS),
            blocking=False,
            partitions_def=None if name in UNPARTITIONED else partitions_def,
        )
        for name in check_names(timeframe)
    ]


@dataclass(frozen=True)
class Verdict:
    """One check's judgement of one day."""

    passed: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None
    # A warning that the day could not be judged (nothing to compare with), not a failed judgement.
    unjudged: bool = False


class CandleChecks:
    """The checks of one series, judging one day (partition key) at a time against the store.

    Given the run's partition keys (`keys`, more than one), each check reads the whole range in one
    query the first time it is asked, and judges each day from that: a year is a handful of queries,
    not one per check and day. The verdicts are the same as day by day.
    """

    def __init__(
        self,
        store: CandleStore,
        symbol: Symbol,
        timeframe: Timeframe,
        partitions_def: dg.TimeWindowPartitionsDefinition,
        now: datetime,
        max_jump: Decimal = Settings.max_jump,
        m15_tolerance: Decimal = Settings.m15_tolerance,
        keys: Sequence[str] = (),
    ):
        self.store, self.symbol, self.timeframe, self.partitions_def = store, symbol, timeframe, partitions_def
        self.policy = calendar(symbol.calendar)
        self.now = now
        self.max_jump, self.m15_tolerance = max_jump, m15_tolerance
        self.newest_key = partitions_def.get_last_partition_key()
        self._grid: Grid | None = None
        # The run's whole window, when it spans several days: read once per check.
        self._range = (self.window(keys[0])[0], self.window(keys[-1])[1]) if len(keys) > 1 else None
        self._bulk: dict[str, Any] = {}

    def _once(self, name: str, read):
        if name not in self._bulk:
            self._bulk[name] = read()
        return self._bulk[name]

    @property
    def grid(self) -> Grid:
        """The series' bar grid, read off its stored bars (UTC at a phase, or anchored 17:00 New York)."""
        if self._grid is None:
            self._grid = self.store.grid(self.symbol.name, self.timeframe).grid
        return self._grid

    def window(self, key: str) -> tuple[datetime, datetime]:
        time_window = self.partitions_def.time_window_for_partition_key(key)
        return time_window.start, time_window.end

    def judge(self, name: str, key: str) -> Verdict | None:
        """`name`'s verdict on day `key`, or None when that check does not judge that day."""
        return getattr(self, name)(key)

    def _stored(self, key: str) -> int:
        """Bars stored on day `key` (one query per range when the run spans several days)."""
        if self._range is None:
            return self.store.summary(self.symbol.name, self.timeframe, *self.window(key))[0]
        bars = self._once("stored", lambda: self.store.bars_per_day(self.symbol.name, self.timeframe, *self._range))
        return bars.get(key, 0)

    def _gap_report(self, key: str) -> GapReport:
        start, end = self.window(key)
        end = min(end, closed_horizon(self.grid, self.now))
        if self._range is None:
            return self.store.gaps(
                self.symbol.name, self.timeframe, self.policy, (start, end), self.now, grid=self.grid
            )

        def read() -> dict[str, list[Gap]]:
            assert self._range is not None
            first, last = self._range[0], min(self._range[1], closed_horizon(self.grid, self.now))
            by_day: dict[str, list[Gap]] = defaultdict(list)
            if first < last:
                report = self.store.gaps(
                    self.symbol.name, self.timeframe, self.policy, (first, last), self.now, grid=self.grid
                )
                for gap in report.gaps:
                    by_day[utc_day(gap.slot)].append(gap)
            return by_day

        gaps = self._once(NO_GAPS, read).get(key, [])
        stored = self._stored(key) if start < end else 0
        grid = self.grid
        expected = self.policy.count_expected(start, end, self.timeframe.bar, grid=grid) if start < end else 0
        # The range's mismatch counts the whole range: a day with phantoms is asked about alone (rare).
        mismatch = (
            self.store.gaps(self.symbol.name, self.timeframe, self.policy, (start, end), self.now, grid=grid).mismatch
            if any(g.reason == GRID_MISMATCH for g in gaps)
            else None
        )
        return GapReport(
            expected,
            stored,
            off_session=stored - (expected - len(gaps)),
            gaps=gaps,
            phase=grid.phase if grid.is_utc else timedelta(0),
            grid=grid,
            mismatch=mismatch,
        )

    def no_gaps(self, key: str) -> Verdict | None:
        report = self._gap_report(key)
        if report.expected == 0 and report.stored == 0:
            return None  # no bar expected (a weekend, a holiday) and none stored: nothing to judge
        real = report.real_gaps
        closed_gaps = len(real) - report.count(NOT_PUBLISHED)
        grid_line = {"grid_mismatch": report.mismatch.line} if report.mismatch else {}
        return Verdict(
            closed_gaps == 0 and report.mismatch is None,
            {
                **grid_line,
                "expected": report.expected,
                "present": report.present,
                "missing": report.missing,
                NEVER_FETCHED: report.count(NEVER_FETCHED),
                PROVIDER_EMPTY: report.count(PROVIDER_EMPTY),
                NOT_PUBLISHED: report.count(NOT_PUBLISHED),
                "off_session_bars": report.off_session,
                "bar_grid": self.grid.describe(),
                "calendar": self.policy.name,
                "missing_bars": dg.MetadataValue.md(
                    markdown_table(("open time", "reason"), [(utc_label(g.slot), g.reason) for g in real])
                ),
            },
        )

    def ohlc_valid(self, key: str) -> Verdict | None:
        if self._stored(key) == 0:
            return None  # no bar that day: nothing to judge
        if self._range is None:
            rows = self.store.invalid_bars(self.symbol.name, self.timeframe, *self.window(key), self.max_jump)
        else:

            def read() -> dict[str, list]:
                assert self._range is not None
                by_day: dict[str, list] = defaultdict(list)
                for row in self.store.invalid_bars(self.symbol.name, self.timeframe, *self._range, self.max_jump):
                    by_day[utc_day(row.timestamp)].append(row)
                return by_day

            rows = self._once(OHLC_VALID, read).get(key, [])
        table = markdown_table(
            ("open time (UTC)", "open", "high", "low", "close", "previous close"),
            [(f"{r.timestamp:%Y-%m-%d %H:%M}", r.open, r.high, r.low, r.close, r.prev_close) for r in rows],
        )
        return Verdict(
            not rows,
            {"invalid_bars": len(rows), "max_jump": float(self.max_jump), "invalid": dg.MetadataValue.md(table)},
        )

    def quarantine_empty(self, key: str) -> Verdict | None:
        if self._range is None:
            count, rows = self.store.quarantined(self.symbol.name, self.timeframe, *self.window(key), limit=ROWS_SHOWN)
        else:

            def read() -> dict[str, list]:
                assert self._range is not None
                _count, all_rows = self.store.quarantined(
                    self.symbol.name, self.timeframe, *self._range, limit=QUARANTINE_READ_LIMIT
                )
                by_day: dict[str, list] = defaultdict(list)
                for row in all_rows:
                    by_day[utc_day(row.bar_time or row.fetched_at)].append(row)
                return by_day

            rows = self._once(QUARANTINE_EMPTY, read).get(key, [])
            count = len(rows)
        if count == 0 and self._stored(key) == 0:
            return None  # nothing stored and nothing quarantined that day: nothing to judge
        table = markdown_table(
            ("open time (UTC)", "reason", "raw values", "fetched at (UTC)"),
            [(utc_label(r.bar_time), r.reason, r.raw.replace("|", "/")[:120], utc_label(r.fetched_at)) for r in rows],
        )
        return Verdict(count == 0, {"quarantined_bars": count, "quarantined": dg.MetadataValue.md(table)})

    def _m15_expected_per_bar(self, start: datetime, end: datetime) -> Counter[datetime]:
        """How many M15 bars the calendar expects in each of this timeframe's bars opening in [start, end)."""
        grid = self.grid
        if grid.is_utc:  # the slot's open by arithmetic: a year is ~24,000 M15 slots per timeframe
            return Counter(self.policy.count_expected_per_slot(start, end + grid.bar, M15.bar, grid.bar, grid.phase))
        return Counter(grid.slot_of(s)[0] for s in self.policy.expected_slots(start, end + grid.bar, M15.bar))

    def fresh(self, key: str) -> Verdict | None:
        if key != self.newest_key:
            return None  # only today's partition can tell whether the series is fresh
        newest = self.store.newest_open(self.symbol.name, self.timeframe)
        state = freshness(self.policy, self.grid, newest, self.now)
        metadata = {
            "state": state.state,
            "newest_expected_closed_bar": utc_label(state.newest_expected),
            "newest_stored_bar": utc_label(newest),
            "next_bar_due": utc_label(state.next_due),
            "age_minutes": round(state.age.total_seconds() / 60, 1) if state.age is not None else -1,
        }
        if state.state == NOTHING_EXPECTED:
            return Verdict(
                False, metadata, f"{NOT_JUDGED}: the calendar expects no closed bar in the last 10 days", unjudged=True
            )
        return Verdict(state.ok, metadata, state.line)

    def _day_cover(self, start: datetime, end: datetime) -> DayCover | None:
        """For D1: the day each bar holds, read off the H1 bars around [start, end)."""
        if self.timeframe.name != "D1":
            return None
        margin = timedelta(days=14)
        return self._once("day_cover", lambda: self.store.day_cover(self.symbol.name, start - margin, end + margin))

    def consistent_with_m15(self, key: str) -> Verdict | None:
        start, end = self._range or self.window(key)
        cover = self._day_cover(start, end)
        extra: dict[str, Any] = {"day_held": cover.describe()} if cover is not None else {}
        if cover is not None and cover.grid is None:
            if self._stored(key) == 0:
                return None
            return Verdict(False, extra, cover.describe(), unjudged=True)
        held = cover.slot_of_bar if cover is not None and cover.dated else None
        if held is None:
            counts = self._once(f"m15_expected {start}", lambda: self._m15_expected_per_bar(start, end))
        else:
            counts = Counter({o: self.policy.count_expected(*held(o), M15.bar) for o, _ in self.grid.slots(start, end)})

        def m15_expected(slot: datetime) -> int:
            return counts[slot]

        comparison = M15Comparison(self.m15_tolerance, m15_expected, self.grid, held=held)
        if self._range is None:
            mismatches, compared, incomplete = self.store.m15_mismatches(
                self.symbol.name, self.timeframe, *self.window(key), comparison
            )
        else:
            by_day = self._once(
                CONSISTENT_WITH_M15,
                lambda: self.store.m15_mismatches_by_day(self.symbol.name, self.timeframe, *self._range, comparison),
            )
            mismatches, compared, incomplete = by_day.get(key, ([], 0, 0))
        if compared == 0 and incomplete == 0:
            return None  # no bar of this timeframe on the day: nothing to compare
        table = markdown_table(
            ("open time (UTC)", "differs in", "bar O/H/L/C", "from M15 O/H/L/C"),
            [
                (
                    f"{m.timestamp:%Y-%m-%d %H:%M}",
                    ", ".join(m.fields),
                    " / ".join(map(str, m.bar)),
                    " / ".join(map(str, m.m15)),
                )
                for m in mismatches
            ],
        )
        metadata = {
            "bars_compared": compared,
            "bars_with_incomplete_m15": incomplete,
            "mismatches": len(mismatches),
            "tolerance": float(self.m15_tolerance),
            "mismatched_bars": dg.MetadataValue.md(table),
            **extra,
        }
        if compared == 0:
            return Verdict(
                False,
                metadata,
                f"{NOT_JUDGED}: none of the day's {incomplete} bar(s) has all its M15 bars stored",
                unjudged=True,
            )
        return Verdict(not mismatches, metadata)
