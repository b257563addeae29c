"""What a candle step materializes: each day's own figures and verdicts, the run's totals, call ledger and quarantine in its log or metadata."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from xau_pipeline.clock import utc_label
from xau_pipeline.defs.candles.check_results import Verdicts, by_day, day_verdicts
from xau_pipeline.defs.candles.markdown_tables import markdown_table
from xau_pipeline.ingest import IngestReport
from xau_pipeline.market.bars import subtract
from xau_pipeline.store.candle_store import CandleStore, DaySummary

NEWEST_BARS_SHOWN = 5


def _newest_bars_table(store: CandleStore, report: IngestReport) -> str:
    rows = store.newest(report.symbol.name, report.timeframe, report.start, report.end, NEWEST_BARS_SHOWN)
    return markdown_table(
        ("open time (UTC)", "open", "high", "low", "close"),
        [(f"{r.timestamp:%Y-%m-%d %H:%M}", r.open, r.high, r.low, r.close) for r in rows],
    )


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
