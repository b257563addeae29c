"""History catch-up: never-fetched history fetched back to back, newest first, at the plan's pace.

One sensor per symbol looks every CATCH_UP_INTERVAL_SECONDS. While history was never fetched it
requests one run of the symbol's four assets over the newest never-fetched days that one minute of
the plan's credits can fetch (M15 is stored first in the run, so `consistent_with_m15` judges each
day). The run draws on the backfill share of the day's credits, and its oldest window of each
series is a whole page reaching into older history (`ingest(read_ahead_to=...)`), so a history
fetched over many runs costs what one run over all of it would: ceil(bars / 5000) per series.
Once nothing is left, it looks again every IDLE_RECHECK.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import dagster as dg

from xau_pipeline.clock import day_start, next_utc_midnight, utc_now
from xau_pipeline.defs.automation.runs_in_progress import runs_in_progress
from xau_pipeline.defs.candles.partitions import (
    CATCH_UP_CREDITS_TAG,
    CATCH_UP_PROGRESS_TAG,
    CATCH_UP_TAG,
    partition_range_tags,
)
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.bars import Interval
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES, TIMEFRAMES_BY_NAME, Timeframe
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.credit_budget import BudgetSettings, credits_by_kind, credits_left
from xau_pipeline.twelvedata.windows import MAX_BARS_PER_CALL, WindowPlanner, merge_gaps

CATCH_UP_INTERVAL_SECONDS = 30
M15 = TIMEFRAMES_BY_NAME["M15"]
IDLE_RECHECK = timedelta(minutes=15)
# The newest hour is the schedules' business (they fetch the day of each bar that closes).
SCHEDULES_OWN = timedelta(hours=1)
ONE_DAY = timedelta(days=1)
ONE_HOUR = timedelta(hours=1)
FOUR_WEEKS = timedelta(weeks=4)
# After a failed catch-up run (a wrong key, an API that keeps failing) the next waits this long:
# a rejected call still costs a credit, so failures are not retried every tick.
AFTER_A_FAILURE = timedelta(minutes=10)


def catch_up_end(now: datetime) -> datetime:
    """Catch-up covers whole UTC days that ended before the schedules' last hour."""
    return day_start(now - SCHEDULES_OWN)


def history_windows(
    store: CandleStore,
    symbol: Symbol,
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    bars_per_slot: float = 1.0,
) -> list[Interval]:
    """The request windows, newest first, that one run over [start, end) would ask for: what was never
    fetched, in pages of at most 5000 bars (no call for closed-market time).

    A page holds 5000 of the series' expected slots when the feed sends a bar per slot; a feed that
    sends more (a 24/7 feed's weekend bars: `bars_per_slot` as the stored bars show it) fills a page
    with fewer slots, and the next window ends where the page's oldest bar begins.
    """
    max_bars = max(1, int(MAX_BARS_PER_CALL / max(bars_per_slot, 1.0)))
    policy = calendar(symbol.calendar)
    grid = store.grid(symbol.name, timeframe).grid if timeframe.bar > ONE_HOUR else None
    missing = store.missing(symbol.name, timeframe, start, end)
    windows: list[Interval] = []
    for span in reversed(merge_gaps(missing, timeframe.bar, policy, grid=grid)):
        planner = WindowPlanner(span, timeframe.bar, policy, max_bars=max_bars, grid=grid)
        if not planner.expected_calls:
            continue  # no bar of the grid opens in it: ingest asks for nothing there
        cursor = planner.end
        while cursor > planner.start:
            window = planner.window_ending_at(cursor)
            windows.append(window)
            cursor = window[0]
    return windows


@dataclass(frozen=True)
class CatchUpPlan:
    """The next catch-up run's days and credits (per series, in the order given), and the credits the
    whole never-fetched history needs."""

    first_day: str | None
    last_day: str | None
    credits: int
    credits_to_go: int
    credits_by_series: tuple[int, ...] = ()


def plan_catch_up(windows: Sequence[Sequence[Interval]], history_start: datetime, allotment: int) -> CatchUpPlan:
    """The newest never-fetched days whose windows (of every series) number at most `allotment`.

    A run over days [D, last] pays for every window ending after D (each series' windows run back
    from the newest, the oldest reaching past D into older history), so D is the first day start at
    or after the (allotment + 1)-th newest window end. At least one day, even if its windows exceed
    the allotment (the credit budget paces the run).
    """
    ends = sorted((end for series in windows for _, end in series), reverse=True)
    if not ends:
        return CatchUpPlan(None, None, 0, 0, tuple(0 for _ in windows))
    newest_day = day_start(ends[0] - timedelta(microseconds=1))
    first = history_start
    if len(ends) > allotment:
        cut = ends[max(allotment, 0)]
        first = max(history_start, day_start(cut) + (ONE_DAY if cut > day_start(cut) else timedelta(0)))
    first = min(first, newest_day)
    by_series = tuple(sum(end > first for _, end in series) for series in windows)
    return CatchUpPlan(f"{first:%Y-%m-%d}", f"{newest_day:%Y-%m-%d}", sum(by_series), len(ends), by_series)


def catch_up_credits_tag(credits_by_series: Sequence[int]) -> str:
    """`M15=5,H1=1,H4=1,D1=1`: what each series of a catch-up run may spend."""
    return ",".join(f"{tf.name}={n}" for tf, n in zip(TIMEFRAMES, credits_by_series, strict=True))


def series_allotment(tag: str, timeframe: Timeframe) -> int:
    """One series' credits in a catch-up run's `catch_up_credits_tag` (0 when it has none)."""
    allotments = dict(part.split("=") for part in tag.split(",") if "=" in part)
    return int(allotments.get(timeframe.name, 0))


@dataclass(frozen=True)
class SeriesProgress:
    """How complete one series' history is: closed expected bars stored, and the windows still to fetch."""

    timeframe: str
    expected: int
    stored: int
    windows: tuple[Interval, ...]

    @property
    def credits_to_go(self) -> int:
        return len(self.windows)

    @property
    def share(self) -> float:
        return self.stored / self.expected if self.expected else 1.0

    @property
    def complete(self) -> bool:
        """Nothing left that was never fetched (a bar the provider did not have is not a catch-up's)."""
        return self.credits_to_go == 0


def series_progress(
    store: CandleStore, symbol: Symbol, timeframe: Timeframe, history_start: datetime, now: datetime
) -> SeriesProgress:
    expected, stored = store.stored_share(symbol.name, timeframe, calendar(symbol.calendar), history_start, now)
    # Bars the feed sends per expected slot, as the stored history shows it (off-session bars included).
    served = store.summary(symbol.name, timeframe, history_start, now)[0]
    density = served / stored if stored else 1.0
    windows = history_windows(store, symbol, timeframe, history_start, catch_up_end(now), density)
    return SeriesProgress(timeframe.name, expected, stored, tuple(windows))


def spare_for_an_unknown_feed(symbol: Symbol, progress: SeriesProgress, planned: int, now: datetime) -> int:
    """Credits beyond `planned` for a series with nothing stored yet, whose windows were planned at a
    bar per expected slot: Twelve Data's forex and metals feed sends bars around the clock, weekends
    included, so its pages hold fewer expected slots and the range may take this many calls more.
    Whether this feed does is learnt from the first bars stored; a spare credit is only spent if needed,
    and without it the series would stop short of its range and leave H1, H4 and D1 to the next run."""
    if progress.stored or not planned:
        return 0
    policy = calendar(symbol.calendar)
    end = day_start(now)
    start = end - FOUR_WEEKS
    bar = TIMEFRAMES_BY_NAME[progress.timeframe].bar
    expected = policy.count_expected(start, end, bar)
    around_the_clock = (end - start) / bar
    return math.ceil(planned * (around_the_clock / expected - 1)) if expected else 0


def unmaterialized_days(materialized: Sequence[set[str]], history_start: datetime, end: datetime) -> list[str]:
    """The days before `end` that some asset has not materialized, oldest first."""
    days, day = [], history_start
    while day < end:
        key = f"{day:%Y-%m-%d}"
        if any(key not in keys for keys in materialized):
            days.append(key)
        day += ONE_DAY
    return days


def newest_stretch(days: Sequence[str]) -> list[str]:
    """The newest run of consecutive days in `days` (ascending): one run each, not one over every day between."""
    stretch = list(days[-1:])
    for day in reversed(days[:-1]):
        if datetime.fromisoformat(stretch[0]) - datetime.fromisoformat(day) != ONE_DAY:
            break
        stretch.insert(0, day)
    return stretch


def stored_days_above(materialized: Sequence[set[str]], last_day: str, end: datetime) -> str:
    """`last_day`, moved on over the days just after it (before `end`) that some asset has not
    materialized: every series fetched them (`last_day` is the newest never fetched), no run judged them."""
    day = datetime.fromisoformat(last_day).replace(tzinfo=UTC) + ONE_DAY
    while day < end and any(f"{day:%Y-%m-%d}" not in keys for keys in materialized):
        last_day = f"{day:%Y-%m-%d}"
        day += ONE_DAY
    return last_day


def history_progress(
    store: CandleStore, symbol: Symbol, history_start: datetime, now: datetime
) -> list[SeriesProgress]:
    """Each timeframe's progress, M15 first."""
    return [series_progress(store, symbol, tf, history_start, now) for tf in TIMEFRAMES]


def eta_text(credits: int, budget: BudgetSettings, backfill_left: int, now: datetime) -> str:
    """When `credits` more calls are done at the plan's pace, within today's backfill share or later."""
    if credits == 0:
        return "complete"
    if credits <= backfill_left:
        minutes = math.ceil(credits / budget.per_minute)
        return f"{credits} credit(s) to go, about {minutes} min at {budget.per_minute} a minute"
    return (
        f"{credits} credit(s) to go: {backfill_left} within today's backfill share, the rest after "
        f"{next_utc_midnight(now):%Y-%m-%d %H:%M} UTC"
    )


def progress_line(progress: Sequence[SeriesProgress], eta: str) -> str:
    """`M15 62% (45,210 of 73,224), H1 100% (...); 8 credit(s) to go, about 1 min at 8 a minute`."""
    parts = [f"{p.timeframe} {math.floor(p.share * 1000) / 10:g}% ({p.stored:,} of {p.expected:,})" for p in progress]
    return "history " + ", ".join(parts) + "; " + eta


def _why_wait(
    context: dg.SensorEvaluationContext,
    symbol: Symbol,
    now: datetime,
    today: datetime,
    line: str,
    used: dict[str, int],
    budget: BudgetSettings,
    backfill_left: int,
    orphans: bool,
) -> dg.SkipReason | None:
    """Why no catch-up run starts now (one in progress, a recent failure, the day's share spent), if so."""
    busy = runs_in_progress(context.instance, {CATCH_UP_TAG: symbol.name}, now, limit=1)
    if busy:
        return dg.SkipReason(f"catch-up run {busy[0].run_id[:8]} in progress; {line}")
    failed = context.instance.get_run_records(
        filters=dg.RunsFilter(tags={CATCH_UP_TAG: symbol.name}, statuses=[dg.DagsterRunStatus.FAILURE]),
        limit=1,
    )
    ended = failed[0].end_time if failed else None
    if ended is not None and now.timestamp() - ended < AFTER_A_FAILURE.total_seconds():
        retry_at = datetime.fromtimestamp(ended, UTC) + AFTER_A_FAILURE
        return dg.SkipReason(
            f"catch-up run {failed[0].dagster_run.run_id[:8]} failed (see its log); next try at "
            f"{retry_at:%H:%M} UTC; {line}"
        )
    if backfill_left <= 0 and not orphans:  # an orphans run makes no call
        return dg.SkipReason(
            f"the backfill share of today's credits is spent ({sum(used.values())} of {budget.per_day} used "
            f"today); catch-up continues after {next_utc_midnight(today):%Y-%m-%d %H:%M} UTC; {line}"
        )
    return None


def _run_request(
    symbol: Symbol,
    assets: Sequence[dg.AssetsDefinition],
    plan: CatchUpPlan,
    progress: Sequence[SeriesProgress],
    line: str,
    now: datetime,
) -> dg.RunRequest:
    """The run over the plan's days, each series allotted its planned credits."""
    assert plan.first_day is not None and plan.last_day is not None
    # Each series stops at its planned windows even where the feed fills pages earlier than the
    # calendar expects: one series' extra calls never take another's credits (the next run goes on).
    # M15 gets one credit more: H1, H4 and D1 depend on it, and a series stopped short of its range
    # leaves its dependents skipped in that run (a spare credit is only spent if it is needed).
    allotments = [
        spare_for_an_unknown_feed(symbol, p, n, now) + n + (1 if p.timeframe == M15.name and n else 0)
        for p, n in zip(progress, plan.credits_by_series, strict=True)
    ]
    tags = {
        CATCH_UP_TAG: symbol.name,
        CATCH_UP_CREDITS_TAG: catch_up_credits_tag(allotments),
        CATCH_UP_PROGRESS_TAG: line[:250],
    }
    run_key = f"catch-up:{symbol.name}:{plan.first_day}..{plan.last_day}:{now:%Y-%m-%dT%H:%M:%S}"
    keys = [asset.key for asset in assets]
    if plan.first_day == plan.last_day:
        # One day as that partition, so its check results are tied to its materialization.
        return dg.RunRequest(run_key=run_key, partition_key=plan.first_day, tags=tags, asset_selection=keys)
    return dg.RunRequest(
        run_key=run_key, tags={**tags, **partition_range_tags(plan.first_day, plan.last_day)}, asset_selection=keys
    )


def _catch_up_tick(
    context: dg.SensorEvaluationContext,
    candle_store: CandleStoreResource,
    twelvedata: TwelveDataResource,
    symbol: Symbol,
    assets: Sequence[dg.AssetsDefinition],
    history_start: datetime,
) -> dg.SkipReason | dg.RunRequest:
    """One tick of a symbol's history catch-up sensor."""
    now = utc_now()
    cursor = json.loads(context.cursor) if context.cursor else {}
    idle_since = datetime.fromisoformat(cursor["complete_at"]) if cursor.get("complete_at") else None
    if idle_since is not None and now - idle_since < IDLE_RECHECK:
        return dg.SkipReason(
            f"history complete at {idle_since:%Y-%m-%d %H:%M} UTC; next look at {idle_since + IDLE_RECHECK:%H:%M} UTC"
        )
    store = candle_store.store()
    budget = twelvedata.budget_settings()
    # Credits are counted on the ledger's clock, which stamps and gates every call: the database's.
    today, usage = store.ledger_usage()
    used = credits_by_kind(usage)
    backfill_left = credits_left(budget, used)["backfill"]
    end = catch_up_end(now)
    # A complete history (the usual case, rechecked every 15 min) is told from the ledger alone: the
    # stored share per series (a count over its whole history) is read only while something is left.
    complete = not any(history_windows(store, symbol, tf, history_start, end) for tf in TIMEFRAMES)
    if complete:
        progress: list[SeriesProgress] = []
        to_go = 0
        line = f"history complete: every closed bar since {history_start:%Y-%m-%d} was fetched"
    else:
        progress = history_progress(store, symbol, history_start, now)
        to_go = sum(p.credits_to_go for p in progress)
        line = progress_line(progress, eta_text(to_go, budget, backfill_left, today))
    materialized = [context.instance.get_materialized_partitions(asset.key) for asset in assets] if to_go == 0 else []
    orphans = newest_stretch(unmaterialized_days(materialized, history_start, end)) if to_go == 0 else []
    if to_go == 0 and not orphans:
        context.update_cursor(json.dumps({"complete_at": now.isoformat()}))
        return dg.SkipReason(line)
    context.update_cursor(json.dumps({}))
    waiting = _why_wait(context, symbol, now, today, line, used, budget, backfill_left, bool(orphans))
    if waiting is not None:
        return waiting
    if orphans:  # fetched, never materialized: a run without calls
        progress = progress or history_progress(store, symbol, history_start, now)
        line = progress_line(progress, eta_text(to_go, budget, backfill_left, today))
        plan = CatchUpPlan(orphans[0], orphans[-1], 0, 0, tuple(0 for _ in progress))
    else:
        plan = plan_catch_up([p.windows for p in progress], history_start, min(budget.per_minute, backfill_left))
        assert plan.last_day is not None
        # A run's oldest window is a whole page reaching into older history: the days it fetched whole
        # below the run's range belong to the next run's range, or no run would ever materialize them.
        materialized = [context.instance.get_materialized_partitions(asset.key) for asset in assets]
        plan = replace(plan, last_day=stored_days_above(materialized, plan.last_day, end))
    assert plan.first_day is not None and plan.last_day is not None
    context.log.info(f"catch-up run over {plan.first_day} .. {plan.last_day} ({plan.credits} credit(s)); {line}")
    return _run_request(symbol, assets, plan, progress, line, now)


def build_catch_up_sensor(
    symbol: Symbol,
    assets: Sequence[dg.AssetsDefinition],
    partitions_def: dg.TimeWindowPartitionsDefinition,
    running: bool = True,
) -> dg.SensorDefinition:
    """Every 30 s while history was never fetched: one run of the symbol's assets over the newest
    never-fetched days one minute of credits can fetch; every 15 min once there is none."""
    name = f"{symbol.key_prefix}_history_catch_up"
    history_start = partitions_def.start.astimezone(UTC)

    @dg.sensor(
        name=name,
        target=list(assets),
        minimum_interval_seconds=CATCH_UP_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"{symbol.api_symbol}: fetch never-fetched history newest first, one minute of the plan's credits a "
            f"run, all four timeframes in each run, on the backfill share; every {CATCH_UP_INTERVAL_SECONDS} s "
            f"while behind, every {IDLE_RECHECK.seconds // 60} min once complete. Tick messages and each run's "
            f"`{CATCH_UP_PROGRESS_TAG}` tag show how complete each series is."
        ),
    )
    def history_catch_up(
        context: dg.SensorEvaluationContext, candle_store: CandleStoreResource, twelvedata: TwelveDataResource
    ):
        return _catch_up_tick(context, candle_store, twelvedata, symbol, assets, history_start)

    return history_catch_up
