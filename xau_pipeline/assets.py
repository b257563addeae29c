"""One partitioned candle asset per (symbol, timeframe), with its checks in the same step, built by one factory."""

# No `from __future__ import annotations` here: Dagster reads the Config annotation at runtime.
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import dagster as dg
from pydantic import Field

from xau_pipeline.api.links import chart_url
from xau_pipeline.bars import subtract
from xau_pipeline.catch_up import series_allotment
from xau_pipeline.check_target import day_evaluation, latest_materializations, log_day_evaluations
from xau_pipeline.checks import (
    M15,
    SEVERITY,
    UNPARTITIONED,
    WHY_NOT_JUDGED,
    CandleChecks,
    Verdict,
    check_specs,
)
from xau_pipeline.credit_budget import CreditBudgetExhausted
from xau_pipeline.heap import long_lived_heap_frozen
from xau_pipeline.ingest import IngestReport, ingest
from xau_pipeline.markdown import markdown_table
from xau_pipeline.partitions import CATCH_UP_CREDITS_TAG, CATCH_UP_TAG
from xau_pipeline.publication import LIVE_TAG
from xau_pipeline.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.settings import Settings
from xau_pipeline.store.candle_store import CandleStore, DaySummary, SchemaNotCurrentError, StoreUnavailableError
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import Timeframe
from xau_pipeline.twelvedata.errors import TwelveDataError
from xau_pipeline.utc import utc_label, utc_now

NEWEST_BARS_SHOWN = 5
Verdicts = dict[str, list[tuple[str, Verdict]]]


class CandleFetchConfig(dg.Config):
    force_refetch: bool = Field(
        default=False, description="Fetch the whole window again, even bars already stored closed (costs credits)."
    )


def _newest_bars_table(store: CandleStore, report: IngestReport) -> str:
    rows = store.newest(report.symbol.name, report.timeframe, report.start, report.end, NEWEST_BARS_SHOWN)
    return markdown_table(
        ("open time (UTC)", "open", "high", "low", "close"),
        [(f"{r.timestamp:%Y-%m-%d %H:%M}", r.open, r.high, r.low, r.close) for r in rows],
    )


def kind_of_work(tags: Mapping[str, str]) -> str:
    """Which share of the credit budget a run draws on: schedule ticks and the publication sensor's
    runs (live work), repair sensor runs, or backfill (the UI's backfills and the history catch-up)."""
    if CATCH_UP_TAG in tags:
        return "backfill"
    if "dagster/schedule_name" in tags or LIVE_TAG in tags:
        return "schedule"
    if "dagster/sensor_name" in tags:
        return "repair"
    return "backfill"


def _ledger_table(store: CandleStore, report: IngestReport, run_id: str) -> str:
    rows = store.calls_of_run(run_id, report.symbol.api_symbol, report.timeframe.interval)
    return markdown_table(
        ("at (UTC)", "window (UTC)", "credits", "outcome"),
        [
            (
                f"{r.at:%Y-%m-%d %H:%M:%S}",
                f"{utc_label(r.window_start)} .. {utc_label(r.window_end)}",
                r.credits,
                r.outcome,
            )
            for r in rows
        ],
        empty="no API call",
    )


def _quarantine_table(report: IngestReport) -> str:
    return markdown_table(
        ("open time (UTC)", "reason", "raw values"),
        [(utc_label(r.open_time), r.reason, r.raw.replace("|", "/")[:120]) for r in report.quarantine_samples],
        empty="none",
    )


def report_metadata(store: CandleStore, report: IngestReport, run_id: str) -> dict[str, Any]:
    """The run's figures: what one ingest asked for, paid, wrote and quarantined (a single-day run's
    materialization, and a failed run's metadata)."""
    stored, first, last = store.summary(report.symbol.name, report.timeframe, report.start, report.end)
    stopped = {} if report.complete else {"stopped_early": f"{type(report.error).__name__}: {report.error}"}
    return {
        **stopped,
        "dagster/row_count": stored,
        "rows_inserted": report.counts.inserted,
        "rows_updated": report.counts.updated,
        "rows_unchanged": report.counts.unchanged,
        "window": f"{utc_label(report.start)} .. {utc_label(report.end)}",
        "first_bar": utc_label(first),
        "last_bar": utc_label(last),
        "api_calls": report.calls,
        "api_credits": report.credits,
        "forming_bars_skipped": report.forming_dropped,
        # Closed bars received before their publication could be trusted: stored, not final yet.
        "bars_not_final": report.provisional,
        "bars_quarantined": report.quarantined,
        "quarantined_bars": dg.MetadataValue.md(_quarantine_table(report)),
        "newest_bars": dg.MetadataValue.md(_newest_bars_table(store, report)),
        "api_call_ledger": dg.MetadataValue.md(_ledger_table(store, report, run_id)),
    }


def fully_fetched_partitions(
    store: CandleStore, report: IngestReport, partitions_def: dg.PartitionsDefinition, keys: list[str]
) -> list[str]:
    """The partition keys whose bars (those that could have closed) were all fetched closed."""
    covered = store.covered(report.symbol.name, report.timeframe, report.start, report.end)
    done = []
    for key in keys:
        window = partitions_def.time_window_for_partition_key(key)  # type: ignore[attr-defined]
        start, end = window.start, min(window.end, report.end)
        if start < end and not subtract((start, end), covered):
            done.append(key)
    return done


def days_to_judge(
    materialized_before: set[str], report: IngestReport, partitions_def: dg.PartitionsDefinition, keys: list[str]
) -> list[str]:
    """The run's days that were not materialized before it, or that one of its fetched windows overlaps."""
    fetched = [(w.start, w.end) for w in report.windows]
    chosen = []
    for key in keys:
        window = partitions_def.time_window_for_partition_key(key)  # type: ignore[attr-defined]
        if key not in materialized_before or any(s < window.end and window.start < e for s, e in fetched):
            chosen.append(key)
    return chosen


def day_metadata(day: DaySummary | None) -> dict[str, Any]:
    """One partition's own figures: the bars stored for that UTC day, its first and last bar, its newest bars."""
    newest = day.newest if day else []
    return {
        "dagster/row_count": day.bars if day else 0,
        "first_bar": utc_label(day.first if day else None),
        "last_bar": utc_label(day.last if day else None),
        "newest_bars": dg.MetadataValue.md(
            markdown_table(
                ("open time (UTC)", "open", "high", "low", "close"),
                [(f"{t:%Y-%m-%d %H:%M}", o, h, low, c) for t, o, h, low, c in newest],
            )
        ),
    }


def run_summary(report: IngestReport, partitions: int) -> str:
    """The run's totals, for its log (a ranged run's materializations carry each day's own figures)."""
    stopped = "" if report.complete else f"; stopped early: {type(report.error).__name__}: {report.error}"
    return (
        f"run totals over {partitions} partition(s) {utc_label(report.start)} .. {utc_label(report.end)}: "
        f"{report.calls} API call(s), {report.credits} credit(s), {report.counts.inserted} row(s) inserted, "
        f"{report.counts.updated} updated, {report.counts.unchanged} unchanged, "
        f"{report.forming_dropped} still-forming bar(s) skipped, {report.provisional} not final yet, "
        f"{report.quarantined} quarantined{stopped}"
    )


def _ingest(
    context: dg.AssetExecutionContext,
    config: CandleFetchConfig,
    twelvedata: TwelveDataResource,
    store: CandleStore,
    symbol: Symbol,
    timeframe: Timeframe,
    history_start: datetime,
) -> IngestReport:
    """Fetch what the run's window lacks and store it; dg.Failure for an API failure (fetched windows kept)."""
    start, end = context.partition_time_window
    try:
        allotment = context.run.tags.get(CATCH_UP_CREDITS_TAG)
        budget = store.credit_budget(
            twelvedata.budget_settings(),
            kind_of_work(context.run.tags),
            context.run.run_id,
            log=context.log,
            run_allotment=series_allotment(allotment, timeframe) if allotment else None,
        )
        client = twelvedata.client(log=context.log, budget=budget)
        try:
            report = ingest(
                client,
                store,
                symbol,
                timeframe,
                start,
                end,
                force=config.force_refetch,
                log=context.log,
                run_id=context.run.run_id,
                # A catch-up run's oldest window is a whole page reaching into older missing history.
                read_ahead_to=history_start if CATCH_UP_TAG in context.run.tags else None,
            )
        finally:
            client.close()
    except (TwelveDataError, StoreUnavailableError, SchemaNotCurrentError) as exc:
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from None
    error = report.error
    if isinstance(error, StoreUnavailableError):
        # One typed line: what happened, and that nothing was half-written (each window is one transaction).
        raise dg.Failure(
            description=f"StoreUnavailableError: {error} ({len(report.windows)} window(s) stored before it)",
            allow_retries=False,
        )
    if error is not None and not isinstance(error, TwelveDataError):
        raise error  # not an API failure: a bug, shown with its traceback
    if error is not None and not isinstance(error, CreditBudgetExhausted):
        raise dg.Failure(
            description=f"{type(error).__name__}: {error} (the {len(report.windows)} window(s) fetched before it are stored)",
            metadata=report_metadata(store, report, context.run.run_id),
            allow_retries=False,
        )
    return report


def _materialization(
    context: dg.AssetExecutionContext,
    store: CandleStore,
    report: IngestReport,
    key: dg.AssetKey,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    verdicts: Verdicts,
    materialized: list[str],
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
    """Materialize the run's days (their keys added to `materialized`). A single-partition run: the day is the run, and carries the run's figures too.

    A ranged run: each partition carries its own day's figures (`add_asset_metadata` per partition
    key); the run's totals and ledger go to the run's log, not onto every partition.
    A run stopped by the credit budget materializes only the days it fetched wholly, so the UI and the
    repair sensor see the rest as not materialized.
    """
    run_id = context.run.run_id
    start, end = context.partition_time_window
    if report.error is not None:
        keys = context.partition_keys
        done = fully_fetched_partitions(store, report, partitions_def, keys)
        context.log.warning(
            f"stopped early ({type(report.error).__name__}: {report.error}): {len(done)} of {len(keys)} "
            f"partition(s) fully fetched and materialized; the other {len(keys) - len(done)} stay "
            "unmaterialized until a later run fetches them"
        )
        days = store.day_summaries(report.symbol.name, report.timeframe, start, end, NEWEST_BARS_SHOWN)
        judged = by_day(verdicts)
        materialized.extend(done)
        for partition in done:
            # No typed result materializes a subset of a ranged step's partitions in Dagster 1.13. Yielded,
            # not logged: stored before the step goes on, so the day's check evaluations can target it.
            yield (
                dg.AssetMaterialization(
                    asset_key=key,
                    partition=partition,
                    metadata={
                        **day_metadata(days.get(partition)),
                        **day_verdicts(judged, partition, sorted(verdicts)),
                        "stopped_early": str(report.error),
                    },
                )
            )
        context.log.info(run_summary(report, len(keys)))
        return
    materialized.extend(context.partition_keys)
    if context.has_partition_key:
        yield dg.MaterializeResult(asset_key=key, metadata=report_metadata(store, report, run_id))
        return
    days = store.day_summaries(report.symbol.name, report.timeframe, start, end, NEWEST_BARS_SHOWN)
    judged = by_day(verdicts)
    for partition in context.partition_keys:
        metadata = {**day_metadata(days.get(partition)), **day_verdicts(judged, partition, sorted(verdicts))}
        context.add_asset_metadata(metadata, asset_key=key, partition_key=partition)
    context.log.info(run_summary(report, len(context.partition_keys)))
    if report.calls:
        context.log.info(f"API call ledger of this run:\n{_ledger_table(store, report, run_id)}")
    yield dg.MaterializeResult(asset_key=key)


def judge_run(context: dg.AssetExecutionContext, checks: CandleChecks, keys: Sequence[str]) -> Verdicts:
    """Each selected check's verdict on each of the run's days `keys` (a day it does not judge is left out)."""
    names = sorted(check_key.name for check_key in context.selected_asset_check_keys)
    return {
        name: [(day, verdict) for day in keys if (verdict := checks.judge(name, day)) is not None] for name in names
    }


def by_day(verdicts: Verdicts) -> dict[str, list[tuple[str, Verdict]]] | None:
    """The run's verdicts per day: [(check, verdict)]; None when the run judged no check."""
    if not verdicts:
        return None
    days: dict[str, list[tuple[str, Verdict]]] = {}
    for name, judged in verdicts.items():
        for day, verdict in judged:
            days.setdefault(day, []).append((name, verdict))
    return days


def day_verdicts(
    days: dict[str, list[tuple[str, Verdict]]] | None, day: str, names: Sequence[str] = ()
) -> dict[str, Any]:
    """`checks`: one day's verdicts of the run's checks (`by_day`), and why any of `names` judged nothing,
    for that day's materialization in a ranged run."""
    if days is None:
        return {}
    rows = [(name, _verdict_word(name, verdict), _why(verdict)) for name, verdict in days.get(day, [])]
    judged = {name for name, _ in days.get(day, [])}
    rows += [(name, "not judged", WHY_NOT_JUDGED[name]) for name in names if name not in judged]
    return {
        "checks": dg.MetadataValue.md(markdown_table(("check", "verdict", "why"), rows, empty="none judged this day"))
    }


def _verdict_word(name: str, verdict: Verdict) -> str:
    if verdict.passed:
        return "passed"
    return f"{'could not be judged' if verdict.unjudged else 'failed'} ({SEVERITY[name].value})"


def _why(verdict: Verdict) -> str:
    """The verdict's description, else its plain figures (`bars_compared 23, mismatches 0`)."""
    if verdict.description:
        return verdict.description.replace("|", "/")
    return ", ".join(f"{k} {v}" for k, v in verdict.metadata.items() if isinstance(v, (int, float, str)))


def range_result(name: str, judged: list[tuple[str, Verdict]], keys: Sequence[str]) -> dg.AssetCheckResult:
    """A ranged run's one typed result for check `name`: failed if any judged day failed. It stands for the
    range, not a day (the check page's latest execution); each judged day's own evaluation is logged
    for its partition (`day_evaluations`), and its verdicts are in its materialization's `checks`."""
    failed = [(day, verdict) for day, verdict in judged if not verdict.passed]
    warned = sum(verdict.unjudged for _, verdict in failed)
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failed,
        severity=SEVERITY[name],
        description=(
            f"the run's range {keys[0]} .. {keys[-1]}, not one day: {len(judged)} day(s) judged, "
            f"{len(failed) - warned} failed"
            + (f", {warned} could not be judged" if warned else "")
            + "; each day's verdicts are in its materialization's `checks`"
        ),
        metadata={
            # A range in which one day was judged (the others closed or empty) shows that day's figures too.
            **(judged[0][1].metadata if len(judged) == 1 else {}),
            "range": f"{keys[0]} .. {keys[-1]}",
            "days_judged": len(judged),
            "days_failed": len(failed) - warned,
            "days_that_could_not_be_judged": warned,
            "days_not_judged": len(keys) - len(judged),
            "failed_days": dg.MetadataValue.md(
                markdown_table(("day", "why"), [(day, verdict.description or "") for day, verdict in failed])
            ),
        },
    )


def day_evaluations(
    context: dg.AssetExecutionContext, key: dg.AssetKey, verdicts: Verdicts, materialized: Sequence[str]
) -> None:
    """Log each judged day's evaluation of each partitioned check, targeting that day's latest stored
    materialization, so the check's Partitions tab counts it as current (passed or failed); all of
    them as one batch (`log_day_evaluations`), stored in one transaction on the project's storage.

    Called after the run's materializations are stored (Dagster writes a MaterializeResult's
    partitions as one batch before the step's generator resumes); `materialized` are the days this
    run materialized, whose targets must be this run's own.
    """
    judged_days = sorted({day for name, judged in verdicts.items() if name not in UNPARTITIONED for day, _ in judged})
    targets = latest_materializations(context.instance, key, judged_days)
    run_id = context.run.run_id
    unstored = [day for day in materialized if day in targets and targets[day].run_id != run_id]
    unstored += [day for day in materialized if day in judged_days and day not in targets]
    if unstored:
        context.log.warning(
            f"the materialization of {len(unstored)} day(s) ({', '.join(sorted(unstored)[:5])}) was not stored "
            "before its check evaluations: they target the day's earlier materialization, if any"
        )
    log_day_evaluations(
        context,
        [
            day_evaluation(
                key,
                name,
                day,
                verdict.passed,
                SEVERITY[name],
                targets.get(day),
                metadata=verdict.metadata,
                description=verdict.description,
            )
            for name, judged in verdicts.items()
            if name not in UNPARTITIONED
            for day, verdict in judged
        ],
    )


def check_results(
    context: dg.AssetExecutionContext, key: dg.AssetKey, verdicts: Verdicts, materialized: Sequence[str] = ()
) -> Iterator[dg.AssetCheckResult]:
    """The run's verdicts, as Dagster 1.13 can record them.

    One partition: a typed AssetCheckResult, which Dagster ties to that partition's materialization.
    A range: Dagster 1.13 gives a typed result no partition in a ranged step, so each judged day gets
    an evaluation logged for its partition, targeting that day's stored materialization
    (`day_evaluations`), and a range of several days one typed result for the range, yielded last
    (the check page's latest execution). Either way the check's Partitions tab shows every judged day
    passed or failed. See docs/architecture.md, "What a partition shows".
    """
    keys = context.partition_keys
    if not context.has_partition_key:
        day_evaluations(context, key, verdicts, materialized)
    summaries = []
    for name, judged in verdicts.items():
        severity = SEVERITY[name]
        if context.has_partition_key or name in UNPARTITIONED:  # fresh: judged on today's partition alone
            for _, verdict in judged:
                yield dg.AssetCheckResult(
                    check_name=name,
                    passed=verdict.passed,
                    severity=severity,
                    metadata=verdict.metadata,
                    description=verdict.description,
                )
        elif judged and len(keys) > 1:
            yield range_result(name, judged, keys)
        failing = [day for day, verdict in judged if not verdict.passed and not verdict.unjudged]
        warned = sum(verdict.unjudged for _, verdict in judged)
        not_judged = len(keys) - len(judged)
        summaries.append(
            f"{name} {sum(verdict.passed for _, verdict in judged)} day(s) passed, {len(failing)} failed"
            + (f" ({', '.join(failing[:10])}{' …' if len(failing) > 10 else ''})" if failing else "")
            + (f", {warned} warned they could not be judged" if warned else "")
            + (f", {not_judged} not judged" if not_judged else "")
        )
    if summaries:
        # One line for all checks: each log line is an event Dagster writes on its own.
        context.log.info("checks: " + "; ".join(summaries))


def build_candle_asset(
    symbol: Symbol,
    timeframe: Timeframe,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settings: Settings | None = None,
) -> dg.AssetsDefinition:
    """The asset keeping `symbol`'s `timeframe` candles, one daily partition per UTC day of bar opens,
    with its checks evaluated in the same step (one step per series)."""
    key = dg.AssetKey([symbol.key_prefix, timeframe.key_suffix])
    settings = settings or Settings(database_url="")
    chart = chart_url(settings.read_api_url, symbol.name, timeframe.name)
    max_jump, m15_tolerance = settings.max_jump, settings.m15_tolerance

    @dg.multi_asset(
        # The op name an @asset of this key had: run config written for it (force_refetch) still applies.
        name=f"{symbol.key_prefix}__{timeframe.key_suffix}",
        specs=[
            dg.AssetSpec(
                key,
                group_name="candles",
                kinds={"api", "postgres"},
                # consistent_with_m15 compares with the M15 bars: in a run with both, M15 is stored first.
                deps=[dg.AssetKey([symbol.key_prefix, M15.key_suffix])] if timeframe.bar > M15.bar else [],
                description=(
                    f"{symbol.api_symbol} {timeframe.name} ({timeframe.interval}) OHLC candles from Twelve Data, "
                    "upserted into PostgreSQL `candles`; only closed bars, only what was not fetched closed before. "
                    f"Chart (`xau-pipeline serve`): {chart}"
                ),
                metadata={"chart": dg.MetadataValue.url(chart)},
                # A backfill stopped by the credit budget materializes only the partitions it fully fetched.
                skippable=True,
            )
        ],
        check_specs=check_specs(timeframe, key, partitions_def),
        partitions_def=partitions_def,
        # A backfill over any range is one run fetching the range in as few calls as possible.
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="twelvedata",
        # The checks can run alone (from the UI, or a check-only selection).
        can_subset=True,
    )
    def candles(
        context: dg.AssetExecutionContext,
        config: CandleFetchConfig,
        twelvedata: TwelveDataResource,
        candle_store: CandleStoreResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckResult]:
        # The run worker's long-lived heap is left out of garbage collections meanwhile (xau_pipeline.heap).
        with long_lived_heap_frozen():
            try:
                store = candle_store.store()
            except (StoreUnavailableError, SchemaNotCurrentError) as exc:
                raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from None
            report = (
                _ingest(context, config, twelvedata, store, symbol, timeframe, partitions_def.start)
                if key in context.selected_asset_keys
                else None
            )
            keys = context.partition_keys
            if report is not None and report.error is not None:
                # Stopped early (the credit budget): only the days fetched wholly are judged; the others were
                # not fetched yet, which is no gap.
                keys = fully_fetched_partitions(store, report, partitions_def, keys)
            if report is not None and CATCH_UP_TAG in context.run.tags and len(keys) > 1:
                # A catch-up run's range is set by the series furthest behind: for this one it may re-cover
                # days an earlier run already stored and judged. Each day's evaluation is a write of its own,
                # so only the days not materialized before, or that this run fetched bars for, are judged.
                keys = days_to_judge(context.instance.get_materialized_partitions(key), report, partitions_def, keys)
            checks = CandleChecks(store, symbol, timeframe, partitions_def, utc_now(), max_jump, m15_tolerance, keys)
            verdicts = judge_run(context, checks, keys)
            materialized: list[str] = []
            if report is not None:
                yield from _materialization(context, store, report, key, partitions_def, verdicts, materialized)
            yield from check_results(context, key, verdicts, materialized)

    return candles
