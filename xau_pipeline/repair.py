"""Gap repair: a sensor re-materializes partitions whose gaps a fetch can still fill."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from xau_pipeline.credit_budget import credits_left
from xau_pipeline.partitions import partition_range_tags
from xau_pipeline.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.gaps import NEVER_FETCHED, PROVIDER_EMPTY
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import Timeframe
from xau_pipeline.trading_calendar import calendar
from xau_pipeline.utc import utc_now

# A bar the provider had nothing for is asked for again this long after the last try, then
# left alone (and reported by the no_gaps check).
PROVIDER_RETRY_BACKOFF = (timedelta(hours=1), timedelta(days=1), timedelta(weeks=1))
# Newer gaps are the schedules' business.
REPAIR_GRACE = timedelta(hours=1)
REPAIR_INTERVAL_SECONDS = 15 * 60
STALE_RUN_AFTER = timedelta(hours=6)


@dataclass
class RepairPlan:
    """Partition keys to fetch normally, to refetch by force, and those left alone."""

    never_fetched: list[str] = field(default_factory=list)
    provider_retry: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)


def plan_repairs(
    store: CandleStore,
    symbol: Symbol,
    timeframe: Timeframe,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    now: datetime,
) -> RepairPlan:
    """Which partitions hold gaps worth a fetch now."""
    start = partitions_def.start.astimezone(UTC)
    end = now - REPAIR_GRACE
    if end <= start:
        return RepairPlan()
    report = store.gaps(symbol.name, timeframe, calendar(symbol.calendar), start, end, now)
    never, retry, given_up = set(), set(), set()
    for gap in report.gaps:
        key = gap.slot.strftime("%Y-%m-%d")
        if gap.reason == NEVER_FETCHED:
            never.add(key)
        elif gap.reason == PROVIDER_EMPTY:
            retries_done = gap.fetches - 1
            if retries_done >= len(PROVIDER_RETRY_BACKOFF):
                given_up.add(key)
            elif gap.last_fetched_at is None or now - gap.last_fetched_at >= PROVIDER_RETRY_BACKOFF[retries_done]:
                retry.add(key)
    retry -= never  # a never-fetched slot in the same partition gets it fetched anyway
    return RepairPlan(sorted(never), sorted(retry), sorted(given_up - retry - never))


def _ranges(keys: list[str]) -> list[tuple[str, str]]:
    """Consecutive day keys grouped into (first, last) ranges."""
    ranges: list[tuple[str, str]] = []
    for key in keys:
        day = datetime.strptime(key, "%Y-%m-%d")
        if ranges and datetime.strptime(ranges[-1][1], "%Y-%m-%d") + timedelta(days=1) == day:
            ranges[-1] = (ranges[-1][0], key)
        else:
            ranges.append((key, key))
    return ranges


def repair_requests(plan: RepairPlan, op_name: str, asset_path: str, now: datetime) -> list[dg.RunRequest]:
    """One ranged run for everything never fetched (the fetch asks only for what is missing),
    and one forced run per stretch of provider gaps due for a retry."""
    requests = []
    if plan.never_fetched:
        first, last = plan.never_fetched[0], plan.never_fetched[-1]
        requests.append(
            dg.RunRequest(
                run_key=f"repair:{asset_path}:{first}..{last}:{now:%Y-%m-%dT%H}",
                tags=partition_range_tags(first, last),
            )
        )
    for first, last in _ranges(plan.provider_retry):
        requests.append(
            dg.RunRequest(
                run_key=f"repair-refetch:{asset_path}:{first}..{last}:{now:%Y-%m-%dT%H}",
                tags=partition_range_tags(first, last),
                run_config={"ops": {op_name: {"config": {"force_refetch": True}}}},
            )
        )
    return requests


def build_repair_sensor(
    symbol: Symbol, timeframe: Timeframe, asset: dg.AssetsDefinition, partitions_def: dg.TimeWindowPartitionsDefinition
) -> dg.SensorDefinition:
    """Every 15 minutes: request runs for never-fetched gaps and due provider-gap retries, within the repair share."""
    name = f"{symbol.key_prefix}_{timeframe.key_suffix}_gap_repair"

    @dg.sensor(
        name=name,
        target=asset,
        minimum_interval_seconds=REPAIR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"{symbol.api_symbol} {timeframe.name}: fetch gaps never fetched; retry provider gaps after 1 h, 1 day, 1 week.",
    )
    def gap_repair(
        context: dg.SensorEvaluationContext, candle_store: CandleStoreResource, twelvedata: TwelveDataResource
    ):
        now = utc_now()
        busy = context.instance.get_runs(
            filters=dg.RunsFilter(
                tags={"dagster/sensor_name": name},
                # A run not heard of for hours has died; run monitoring will mark it failed.
                updated_after=now - STALE_RUN_AFTER,
                statuses=[
                    dg.DagsterRunStatus.QUEUED,
                    dg.DagsterRunStatus.NOT_STARTED,
                    dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED,
                ],
            ),
            limit=1,
        )
        if busy:
            return dg.SkipReason(f"a repair run is still in progress ({busy[0].run_id})")
        store = candle_store.store()
        settings = twelvedata.budget_settings()
        used = {kind: credits for kind, (credits, _calls) in store.credits_used_today(now).items()}
        if credits_left(settings, used)["repair"] <= 0:
            return dg.SkipReason(
                f"the repair share of today's credits is spent ({used.get('repair', 0)} of {settings.repair_cap} "
                f"used by repairs, {sum(used.values())} of {settings.per_day} in all)"
            )
        plan = plan_repairs(store, symbol, timeframe, partitions_def, now)
        if plan.given_up:
            context.log.info(
                f"provider gaps left alone after {len(PROVIDER_RETRY_BACKOFF)} retries: {', '.join(plan.given_up[:20])}"
            )
        requests = repair_requests(plan, asset.op.name, asset.key.to_user_string(), now)
        if not requests:
            return dg.SkipReason("no gap a fetch can fill now")
        return requests

    return gap_repair
