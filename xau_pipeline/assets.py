"""One partitioned candle asset per (symbol, timeframe), built by one factory."""

# No `from __future__ import annotations` here: Dagster reads the Config annotation at runtime.
from datetime import datetime

import dagster as dg
from pydantic import Field

from xau_pipeline.api.links import chart_url
from xau_pipeline.credit_budget import CreditBudget, CreditBudgetExhausted, calls_of_run
from xau_pipeline.ingest import IngestReport, ingest
from xau_pipeline.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.store.candle_store import CandleStore, StoreUnavailableError
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import Timeframe
from xau_pipeline.twelvedata.errors import TwelveDataError

NEWEST_BARS_SHOWN = 5


class CandleFetchConfig(dg.Config):
    force_refetch: bool = Field(
        default=False, description="Fetch the whole window again, even bars already stored closed (costs credits)."
    )


def _utc(t: datetime | None) -> str:
    return "-" if t is None else f"{t:%Y-%m-%d %H:%M} UTC"


def _newest_bars_table(store: CandleStore, report: IngestReport) -> str:
    rows = store.newest(report.symbol.name, report.timeframe, report.start, report.end, NEWEST_BARS_SHOWN)
    lines = ["| open time (UTC) | open | high | low | close |", "|---|---|---|---|---|"]
    lines += [f"| {r.timestamp:%Y-%m-%d %H:%M} | {r.open} | {r.high} | {r.low} | {r.close} |" for r in rows]
    return "\n".join(lines)


def kind_of_work(tags: dict[str, str]) -> str:
    """Which share of the credit budget a run draws on: schedule ticks, repair sensor runs, or backfill."""
    if "dagster/schedule_name" in tags:
        return "schedule"
    if "dagster/sensor_name" in tags:
        return "repair"
    return "backfill"


def _ledger_table(store: CandleStore, report: IngestReport, run_id: str) -> str:
    rows = calls_of_run(store.engine, run_id, report.symbol.api_symbol, report.timeframe.interval)
    lines = ["| at (UTC) | window (UTC) | credits | outcome |", "|---|---|---|---|"]
    lines += [
        f"| {r.at:%Y-%m-%d %H:%M:%S} | {_utc(r.window_start)} .. {_utc(r.window_end)} | {r.credits} | {r.outcome} |"
        for r in rows
    ]
    return "\n".join(lines) if rows else "no API call"


def report_metadata(store: CandleStore, report: IngestReport, run_id: str) -> dict[str, object]:
    """What the UI shows for a materialization."""
    stored, first, last = store.summary(report.symbol.name, report.timeframe, report.start, report.end)
    stopped = {} if report.complete else {"stopped_early": f"{type(report.fetch.error).__name__}: {report.fetch.error}"}
    return {
        **stopped,
        "dagster/row_count": stored,
        "rows_inserted": report.counts.inserted,
        "rows_updated": report.counts.updated,
        "rows_unchanged": report.counts.unchanged,
        "window": f"{_utc(report.start)} .. {_utc(report.end)}",
        "first_bar": _utc(first),
        "last_bar": _utc(last),
        "api_calls": report.fetch.calls,
        "api_credits": report.fetch.credits,
        "forming_bars_skipped": report.fetch.forming_dropped,
        "newest_bars": dg.MetadataValue.md(_newest_bars_table(store, report)),
        "api_call_ledger": dg.MetadataValue.md(_ledger_table(store, report, run_id)),
    }


def build_candle_asset(
    symbol: Symbol, timeframe: Timeframe, partitions_def: dg.PartitionsDefinition
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
        description=(
            f"{symbol.api_symbol} {timeframe.name} ({timeframe.interval}) OHLC candles from Twelve Data, "
            "upserted into PostgreSQL `candles`; only closed bars, only what was not fetched closed before. "
            f"Chart (`xau-pipeline serve`): {chart_url(symbol.name, timeframe.name)}"
        ),
        metadata={"chart": dg.MetadataValue.url(chart_url(symbol.name, timeframe.name))},
    )
    def candles(
        context: dg.AssetExecutionContext,
        config: CandleFetchConfig,
        twelvedata: TwelveDataResource,
        candle_store: CandleStoreResource,
    ) -> dg.MaterializeResult:
        start, end = context.partition_time_window
        try:
            store = candle_store.store()
            budget = CreditBudget(
                store.engine,
                twelvedata.budget_settings(),
                kind_of_work(context.run.tags),
                context.run.run_id,
                log=context.log,
            )
            client = twelvedata.client(log=context.log, budget=budget)
            try:
                report = ingest(
                    client, store, symbol, timeframe, start, end, force=config.force_refetch, log=context.log
                )
            finally:
                client.close()
        except (TwelveDataError, StoreUnavailableError) as exc:
            raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from None
        error = report.fetch.error
        if error is not None and not isinstance(error, TwelveDataError):
            raise error  # not an API failure: a bug or an outage, shown with its traceback
        if error is not None and not isinstance(error, CreditBudgetExhausted):
            raise dg.Failure(
                description=f"{type(error).__name__}: {error} (the {len(report.fetch.windows)} window(s) fetched before it are stored)",
                metadata=report_metadata(store, report, context.run.run_id),
                allow_retries=False,
            )
        return dg.MaterializeResult(metadata=report_metadata(store, report, context.run.run_id))

    return candles
