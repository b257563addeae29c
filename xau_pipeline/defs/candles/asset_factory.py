"""One partitioned candle asset per (symbol, timeframe), with its checks in the same step, built by one factory."""

# No `from __future__ import annotations` here: Dagster reads the Config annotation at runtime.
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import dagster as dg
from pydantic import Field

from xau_pipeline.clock import utc_now
from xau_pipeline.defs.automation.catch_up_sensor import series_allotment
from xau_pipeline.defs.candles.check_results import check_results, judge_run
from xau_pipeline.defs.candles.checks import (
    M15,
    CandleChecks,
    check_specs,
)
from xau_pipeline.defs.candles.gc_freeze import long_lived_heap_frozen
from xau_pipeline.defs.candles.materialization import _materialization, fully_fetched_partitions, report_metadata
from xau_pipeline.defs.candles.partitions import CATCH_UP_CREDITS_TAG, CATCH_UP_TAG
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.ingest import IngestReport, ingest
from xau_pipeline.market.publication import LIVE_TAG
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.read_api_links import chart_url
from xau_pipeline.settings import Settings
from xau_pipeline.store.candle_store import CandleStore, SchemaNotCurrentError, StoreUnavailableError
from xau_pipeline.store.credit_budget import CreditBudgetExhausted
from xau_pipeline.twelvedata.errors import TwelveDataError


class CandleFetchConfig(dg.Config):
    force_refetch: bool = Field(
        default=False, description="Fetch the whole window again, even bars already stored closed (costs credits)."
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


def candle_spec(symbol: Symbol, timeframe: Timeframe, key: dg.AssetKey, chart: str) -> dg.AssetSpec:
    """The asset's spec: its group, kinds, description with the chart's link, and its M15 dependency."""
    return dg.AssetSpec(
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


@dataclass(frozen=True)
class CandleSeries:
    """What one asset's step works on: the series, its key and partitions, and the check tolerances."""

    symbol: Symbol
    timeframe: Timeframe
    key: dg.AssetKey
    partitions_def: dg.TimeWindowPartitionsDefinition
    max_jump: Decimal
    m15_tolerance: Decimal


def candle_step(
    context: dg.AssetExecutionContext,
    config: CandleFetchConfig,
    twelvedata: TwelveDataResource,
    candle_store: CandleStoreResource,
    series: CandleSeries,
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckResult]:
    """Fetch and store the run's window (when the asset is selected), then judge its days."""
    symbol, timeframe, key, partitions_def = series.symbol, series.timeframe, series.key, series.partitions_def
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
    checks = CandleChecks(
        store, symbol, timeframe, partitions_def, utc_now(), series.max_jump, series.m15_tolerance, keys
    )
    verdicts = judge_run(context, checks, keys)
    materialized: list[str] = []
    if report is not None:
        yield from _materialization(context, store, report, key, partitions_def, verdicts, materialized)
    yield from check_results(context, key, verdicts, materialized)


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
    series = CandleSeries(symbol, timeframe, key, partitions_def, settings.max_jump, settings.m15_tolerance)

    @dg.multi_asset(
        # The op name an @asset of this key had: run config written for it (force_refetch) still applies.
        name=f"{symbol.key_prefix}__{timeframe.key_suffix}",
        specs=[candle_spec(symbol, timeframe, key, chart)],
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
        # The run worker's long-lived heap is left out of garbage collections meanwhile (gc_freeze.py).
        with long_lived_heap_frozen():
            yield from candle_step(context, config, twelvedata, candle_store, series)

    return candles
