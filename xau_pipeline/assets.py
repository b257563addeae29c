"""One partitioned candle asset per (symbol, timeframe), built by one factory."""

# No `from __future__ import annotations` here: Dagster reads the Config annotation at runtime.
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from xau_pipeline.api.links import DEFAULT_HOST, DEFAULT_PORT, api_base_url, chart_url
from xau_pipeline.bars import subtract
from xau_pipeline.credit_budget import CreditBudgetExhausted
from xau_pipeline.ingest import IngestReport, ingest
from xau_pipeline.markdown import markdown_table
from xau_pipeline.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.store.candle_store import CandleStore, SchemaNotCurrentError, StoreUnavailableError
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import Timeframe
from xau_pipeline.twelvedata.errors import TwelveDataError
from xau_pipeline.utc import utc_label

NEWEST_BARS_SHOWN = 5


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
    """Which share of the credit budget a run draws on: schedule ticks, repair sensor runs, or backfill."""
    if "dagster/schedule_name" in tags:
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
    """What the UI shows for a materialization."""
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


def build_candle_asset(
    symbol: Symbol,
    timeframe: Timeframe,
    partitions_def: dg.PartitionsDefinition,
    read_api_url: str = api_base_url(DEFAULT_HOST, DEFAULT_PORT),
) -> dg.AssetsDefinition:
    """The asset keeping `symbol`'s `timeframe` candles, one daily partition per UTC day of bar opens."""

    @dg.asset(
        name=timeframe.key_suffix,
        key_prefix=[symbol.key_prefix],
        group_name="candles",
        partitions_def=partitions_def,
        # A backfill over any range is one run fetching the range in as few calls as possible.
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"api", "postgres"},
        pool="twelvedata",
        # A backfill stopped by the credit budget materializes only the partitions it fully fetched.
        output_required=False,
        description=(
            f"{symbol.api_symbol} {timeframe.name} ({timeframe.interval}) OHLC candles from Twelve Data, "
            "upserted into PostgreSQL `candles`; only closed bars, only what was not fetched closed before. "
            f"Chart (`xau-pipeline serve`): {chart_url(read_api_url, symbol.name, timeframe.name)}"
        ),
        metadata={"chart": dg.MetadataValue.url(chart_url(read_api_url, symbol.name, timeframe.name))},
    )
    def candles(
        context: dg.AssetExecutionContext,
        config: CandleFetchConfig,
        twelvedata: TwelveDataResource,
        candle_store: CandleStoreResource,
    ) -> Iterator[dg.MaterializeResult]:
        start, end = context.partition_time_window
        try:
            store = candle_store.store()
            budget = store.credit_budget(
                twelvedata.budget_settings(), kind_of_work(context.run.tags), context.run.run_id, log=context.log
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
        metadata = report_metadata(store, report, context.run.run_id)
        if error is None:
            yield dg.MaterializeResult(metadata=metadata)
            return
        # Stopped by the budget: the partitions left (partly) unfetched stay unmaterialized, so the UI
        # and the repair sensor see them as missing; the rest are reported one by one.
        keys = context.partition_keys
        done = fully_fetched_partitions(store, report, partitions_def, keys)
        context.log.warning(
            f"stopped early: {len(done)} of {len(keys)} partition(s) fully fetched and materialized; "
            f"the other {len(keys) - len(done)} stay unmaterialized until a later run fetches them"
        )
        for key in done:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=context.asset_key,
                    partition=key,
                    metadata={**metadata, "partitions_fully_fetched": len(done), "partitions_requested": len(keys)},
                )
            )

    return candles
