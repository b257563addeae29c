"""Gap repair: a sensor refetches partitions whose bars the provider did not have, on a backoff.

History never fetched is the catch-up's (xau_pipeline.defs.automation.catch_up_sensor); the newest hour the schedules'.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from xau_pipeline.clock import day_start, utc_now
from xau_pipeline.defs.automation.runs_in_progress import runs_in_progress
from xau_pipeline.defs.automation.timeframe_sensors import credits_today, timeframe_sensor
from xau_pipeline.defs.candles.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    partition_range_tags,
)
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.gaps import NEVER_FETCHED, PROVIDER_EMPTY

# A bar the provider had nothing for is asked for again this long after the last try, then
# left alone (and reported by the no_gaps check).
PROVIDER_RETRY_BACKOFF = (timedelta(hours=1), timedelta(days=1), timedelta(weeks=1))
# Newer gaps are the schedules' business.
REPAIR_GRACE = timedelta(hours=1)
REPAIR_INTERVAL_SECONDS = 15 * 60
# At most this many daily partitions in one repair run's retries, the newest first; older ones wait
# for later ticks, within the repair share of the day's credits.
MAX_PARTITIONS_PER_REPAIR_RUN = 14
# Each series is scanned from its oldest fetched window at least this often; in between, from where
# something may have changed since its last scan (`scan_start`).
FULL_SCAN_EVERY = timedelta(hours=24)
# A window stamped up to this long before a scan may have been committed after it: a run writes each
# window in a transaction of its own seconds after its answer (stamped by the run's clock, the scan
# by the sensor's), so the next scan looks at it again.
LEDGER_MARGIN = timedelta(minutes=10)
UNCHANGED_BEFORE = "nothing before it changed since the last scan"
# Tags a repair run with its series (`xauusd/candles_m15`): one repair at a time per series.
REPAIR_SERIES_TAG = "xau_pipeline/repair_series"


@dataclass
class RepairPlan:
    """Partition keys to fetch normally, to refetch by force, and those left alone."""

    never_fetched: list[str] = field(default_factory=list)
    provider_retry: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    # The oldest slot the provider had nothing for that is not given up (due now or later).
    pending_since: datetime | None = None


@dataclass(frozen=True)
class ScanState:
    """What a series' last gap scan saw, kept in the repair sensor's cursor."""

    scanned_at: datetime
    full_at: datetime  # the last scan from the series' oldest fetched window
    end: datetime  # where that scan ended (now - REPAIR_GRACE)
    pending_since: datetime | None

    def to_json(self) -> dict[str, str | None]:
        return {
            "scanned_at": self.scanned_at.isoformat(),
            "full_at": self.full_at.isoformat(),
            "end": self.end.isoformat(),
            "pending_since": self.pending_since.isoformat() if self.pending_since else None,
        }

    @classmethod
    def from_json(cls, value: dict[str, str | None]) -> ScanState:
        def moment(key: str) -> datetime | None:
            text = value.get(key)
            return datetime.fromisoformat(text) if text else None

        scanned_at, full_at, end = moment("scanned_at"), moment("full_at"), moment("end")
        if scanned_at is None or full_at is None or end is None:
            raise ValueError(f"incomplete scan state {value}")
        return cls(scanned_at, full_at, end, moment("pending_since"))


def plan_repairs(
    store: CandleStore,
    symbol: Symbol,
    timeframe: Timeframe,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    now: datetime,
    since: datetime | None = None,
) -> RepairPlan:
    """Which partitions hold gaps worth a fetch now (from `since` on, if later than the first partition)."""
    start = max(partitions_def.start.astimezone(UTC), since or datetime.min.replace(tzinfo=UTC))
    end = now - REPAIR_GRACE
    if end <= start:
        return RepairPlan()
    report = store.gaps(symbol.name, timeframe, calendar(symbol.calendar), (start, end), now)
    never, retry, given_up = set(), set(), set()
    pending: list[datetime] = []
    for gap in report.gaps:
        key = gap.slot.strftime("%Y-%m-%d")
        if gap.reason == NEVER_FETCHED:
            never.add(key)
        elif gap.reason == PROVIDER_EMPTY:
            retries_done = gap.fetches - 1
            if retries_done >= len(PROVIDER_RETRY_BACKOFF):
                given_up.add(key)
                continue
            pending.append(gap.slot)
            if gap.last_fetched_at is None or now - gap.last_fetched_at >= PROVIDER_RETRY_BACKOFF[retries_done]:
                retry.add(key)
    retry -= never  # a never-fetched slot in the same partition gets it fetched anyway
    return RepairPlan(sorted(never), sorted(retry), sorted(given_up - retry - never), min(pending, default=None))


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


def _days_between(first: str, last: str) -> int:
    return (datetime.strptime(last, "%Y-%m-%d") - datetime.strptime(first, "%Y-%m-%d")).days + 1


def _newest_within(keys: list[str], span: int) -> list[str]:
    """The newest of `keys` (sorted day keys) that fit in `span` consecutive days ending at the newest."""
    return [key for key in keys if _days_between(key, keys[-1]) <= span] if keys and span > 0 else []


def _request(keys: list[str], run_key: str, run_config: dict | None = None) -> dg.RunRequest:
    """One run over `keys` (consecutive or not: a ranged run fetches only what is missing in between).

    A single day is asked for as that partition (as the schedules do), so its check results are
    tied to its materialization; more days as one ranged run.
    """
    first, last = keys[0], keys[-1]
    if first == last:
        return dg.RunRequest(run_key=run_key, partition_key=first, run_config=run_config or {})
    return dg.RunRequest(run_key=run_key, tags=partition_range_tags(first, last), run_config=run_config or {})


def repair_requests(
    plan: RepairPlan, op_name: str, asset_path: str, now: datetime, limit: int = MAX_PARTITIONS_PER_REPAIR_RUN
) -> list[dg.RunRequest]:
    """At most `limit` partitions in all runs together, newest first: one ranged run over the newest
    never-fetched days (at most `limit` days from first to last; the fetch asks only for what is
    missing), and one forced run per stretch of provider gaps due for a retry, within what is left
    of the limit. Older partitions wait for the next ticks."""
    requests = []
    never = _newest_within(plan.never_fetched, limit)
    if never:
        requests.append(_request(never, f"repair:{asset_path}:{never[0]}..{never[-1]}:{now:%Y-%m-%dT%H}"))
    room = limit - (_days_between(never[0], never[-1]) if never else 0)
    retry = plan.provider_retry[-room:] if room > 0 else []
    for first, last in reversed(_ranges(retry)):
        keys = [key for key in retry if first <= key <= last]
        requests.append(
            _request(
                keys,
                f"repair-refetch:{asset_path}:{first}..{last}:{now:%Y-%m-%dT%H}",
                {"ops": {op_name: {"config": {"force_refetch": True}}}},
            )
        )
    return requests


def busy_series(instance: dg.DagsterInstance, sensor_name: str, now: datetime) -> dict[str, str]:
    """The series (`xauusd/candles_m15`) with a repair run of `sensor_name` in progress, and that run's id."""
    runs = runs_in_progress(instance, {"dagster/sensor_name": sensor_name}, now)
    return {run.tags[REPAIR_SERIES_TAG]: run.run_id for run in runs if REPAIR_SERIES_TAG in run.tags}


def build_repair_sensor(
    timeframe: Timeframe,
    assets: Mapping[Symbol, dg.AssetsDefinition],
    partitions_def: dg.TimeWindowPartitionsDefinition,
) -> dg.SensorDefinition:
    """Every 15 minutes, over every symbol's `timeframe` asset: request forced runs for due provider-gap
    retries, within the repair share, at most MAX_PARTITIONS_PER_REPAIR_RUN partitions a series and
    tick, newest first, one series' repair in progress at a time."""
    name = f"{timeframe.key_suffix}_gap_repair"

    description = (
        f"{timeframe.name} of {len(assets)} symbol(s): retry bars the provider did not have after 1 h, 1 day, "
        f"1 week, then leave them; at most {MAX_PARTITIONS_PER_REPAIR_RUN} partitions a series and tick, "
        "newest first. Never-fetched history is the history catch-up sensors'."
    )

    @timeframe_sensor(name, assets, REPAIR_INTERVAL_SECONDS, description)
    def gap_repair(
        context: dg.SensorEvaluationContext, candle_store: CandleStoreResource, twelvedata: TwelveDataResource
    ):
        now = utc_now()
        busy = busy_series(context.instance, name, now)
        store = candle_store.store()
        settings = twelvedata.budget_settings()
        used, left = credits_today(store, settings, now)
        if left["repair"] <= 0:
            return dg.SkipReason(
                f"the repair share of today's credits is spent ({used.get('repair', 0)} of {settings.repair_cap} "
                f"used by repairs, {sum(used.values())} of {settings.per_day} in all)"
            )
        requests: list[dg.RunRequest] = []
        notes: list[str] = []
        scans = scan_states(context.cursor)
        for symbol, asset in assets.items():
            path = asset.key.to_user_string()
            if path in busy:
                notes.append(f"{path}: a repair run is still in progress ({busy[path]})")
                continue
            found, note, scans[path] = series_repairs(
                context, store, symbol, timeframe, asset, partitions_def, now, scans.get(path)
            )
            requests += found
            if note:
                notes.append(f"{path}: {note}")
        configured = {asset.key.to_user_string() for asset in assets.values()}
        context.update_cursor(
            json.dumps({path: scan.to_json() for path, scan in scans.items() if scan and path in configured})
        )
        if not requests:
            return dg.SkipReason("; ".join(notes[:3]) + (f"; and {len(notes) - 3} more" if len(notes) > 3 else ""))
        return requests

    return gap_repair


def scan_states(cursor: str | None) -> dict[str, ScanState | None]:
    """Each series' last scan, from the sensor's cursor (none where it cannot be read: a full scan)."""
    try:
        stored = json.loads(cursor) if cursor else {}
        return {path: ScanState.from_json(value) for path, value in stored.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def _nothing_due(planned: RepairPlan, since: datetime, first: datetime, full: bool) -> str:
    """Why a series has no repair run this tick."""
    if not full:
        return f"no provider gap due for a retry (scanned from {since:%Y-%m-%d}; {UNCHANGED_BEFORE})"
    never = (
        f"; never-fetched day(s) ({len(planned.never_fetched)} since {since:%Y-%m-%d}"
        + (", and all before" if since > first else "")
        + ") are the history catch-up's"
        if planned.never_fetched or since > first
        else ""
    )
    return f"no provider gap due for a retry{never}"


def _days_requested(requests: Sequence[dg.RunRequest]) -> int:
    return sum(
        _days_between(r.tags[PARTITION_RANGE_START_TAG], r.tags[PARTITION_RANGE_END_TAG])
        if r.partition_key is None
        else 1
        for r in requests
    )


def series_repairs(
    context: dg.SensorEvaluationContext,
    store: CandleStore,
    symbol: Symbol,
    timeframe: Timeframe,
    asset: dg.AssetsDefinition,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    now: datetime,
    state: ScanState | None = None,
) -> tuple[list[dg.RunRequest], str | None, ScanState | None]:
    """One series' repair runs this tick (tagged with the series), or why there is none, and what
    its scan saw (for the next tick: `scan_start`)."""
    path = asset.key.to_user_string()
    first = partitions_def.start.astimezone(UTC)
    oldest_fetch = store.first_covered(symbol.name, timeframe)
    if oldest_fetch is None:
        # Nothing fetched, so no provider gap: spare the gap query (a first start, 50 symbols: 200 of them).
        return [], "nothing fetched yet: its never-fetched day(s) are the history catch-up's", None
    # Before the oldest fetched window all is never fetched (the catch-up fetches newest first): not scanned.
    oldest = max(first, day_start(oldest_fetch))
    since = scan_start(store, symbol, timeframe, oldest, state, now)
    full = since == oldest
    planned = plan_repairs(store, symbol, timeframe, partitions_def, now, since=since)
    scanned = ScanState(
        scanned_at=now,
        full_at=now if full or state is None else state.full_at,
        end=now - REPAIR_GRACE,
        pending_since=planned.pending_since,
    )
    # Never-fetched days are the history catch-up's: it fetches them at the plan's pace.
    plan = RepairPlan([], planned.provider_retry, planned.given_up)
    if plan.given_up:
        context.log.info(
            f"{path}: provider gaps left alone after {len(PROVIDER_RETRY_BACKOFF)} retries: "
            f"{', '.join(plan.given_up[:20])}"
        )
    requests = repair_requests(plan, asset.op.name, path, now)
    if not requests:
        return [], _nothing_due(planned, since, first, full), scanned
    waiting = len(plan.never_fetched) + len(plan.provider_retry) - _days_requested(requests)
    if waiting > 0:
        context.log.info(
            f"{path}: up to {waiting} older partition(s) to repair wait for later ticks "
            f"(at most {MAX_PARTITIONS_PER_REPAIR_RUN} a tick, newest first)"
        )
    tagged = [
        dg.RunRequest(
            run_key=r.run_key,
            partition_key=r.partition_key,
            run_config=r.run_config,
            tags={**r.tags, REPAIR_SERIES_TAG: path},
            asset_selection=[asset.key],
        )
        for r in requests
    ]
    return tagged, None, scanned


def scan_start(
    store: CandleStore, symbol: Symbol, timeframe: Timeframe, oldest: datetime, state: ScanState | None, now: datetime
) -> datetime:
    """Where this tick's gap scan of a series begins: at `oldest` (its oldest fetched day) on the first
    scan and once every FULL_SCAN_EVERY; else at the earliest of the day the last scan ended, the oldest
    window fetched since (LEDGER_MARGIN before it), and the oldest provider gap still pending. Bars and
    the fetch ledger change only by fetches, each recorded with the window it covered, so a gap before
    that point is one the last scan saw, given up or not pending."""
    if state is None or now - state.full_at >= FULL_SCAN_EVERY:
        return oldest
    changed = store.oldest_fetched_since(symbol.name, timeframe, state.scanned_at - LEDGER_MARGIN)
    points = [state.end] + [p for p in (changed, state.pending_since) if p is not None]
    return max(oldest, day_start(min(points)))
