"""Dagster's storage kept bounded: a daily job pruning what only serves debugging past an age.

The job is an op job of its own (no asset, no partition), tagged MAINTENANCE_TAG: dagster.yaml
lets one such run go at a time and it takes no slot of the `twelvedata` pool (only the candle assets
declare that pool). Its schedule ticks at 03:10 UTC, away from the :02/:17/:32/:47 minutes at which
the candle schedules start their runs. What it deletes and keeps: xau_pipeline/defs/maintenance/dagster_tables.py.
"""

from datetime import timedelta

import dagster as dg

from xau_pipeline.clock import utc_now
from xau_pipeline.defs.maintenance.dagster_tables import PRUNED_TABLES, PruneReport, prune, storage_url
from xau_pipeline.settings import DEFAULT_DAGSTER_RETENTION_DAYS, Settings

JOB_NAME = "dagster_maintenance"
MAINTENANCE_TAG = "xau_pipeline/maintenance"
CRON = "10 3 * * *"
DEFAULT_BATCH_SIZE = 5000
MB = 1024 * 1024


class MaintenanceConfig(dg.Config):
    """How old a finished run must be before its debugging history is pruned, and the batch size."""

    retention_days: int = DEFAULT_DAGSTER_RETENTION_DAYS
    batch_size: int = DEFAULT_BATCH_SIZE


def report_table(report: PruneReport) -> str:
    """Markdown: per table, rows deleted and rows and MB before and after."""
    lines = ["| table | deleted | rows before | rows after | MB before | MB after |", "|---|---|---|---|---|---|"]
    for table in PRUNED_TABLES:
        before, after = report.before[table], report.after[table]
        lines.append(
            f"| {table} | {report.deleted[table]:,} | {before.rows:,} | {after.rows:,} "
            f"| {before.bytes / MB:.2f} | {after.bytes / MB:.2f} |"
        )
    return "\n".join(lines)


@dg.op(name="prune_dagster_storage")
def prune_dagster_storage(context: dg.OpExecutionContext, config: MaintenanceConfig) -> dg.Output[None]:
    """Delete log lines, engine, step and planned events, superseded materializations and check
    verdicts, runs left with nothing and finished ticks older than `retention_days`, then VACUUM."""
    if config.retention_days < 1 or config.batch_size < 1:
        raise dg.Failure("retention_days and batch_size must be at least 1")
    cutoff = utc_now() - timedelta(days=config.retention_days)
    report = prune(storage_url(context.instance), cutoff, batch_size=config.batch_size, log=context.log.info)
    before, after = report.total_bytes(report.before), report.total_bytes(report.after)
    context.log.info(
        f"Dagster's tables {before / MB:.1f} MB before, {after / MB:.1f} MB after, in {report.seconds:.1f} s"
        + (
            f"; {report.skipped_batches} batch(es) skipped on a lock, retried tomorrow"
            if report.skipped_batches
            else ""
        )
    )
    metadata: dict[str, dg.RawMetadataValue] = {
        "cutoff": dg.MetadataValue.timestamp(cutoff),
        "runs_past_cutoff": report.old_runs,
        "tables": dg.MetadataValue.md(report_table(report)),
        "mb_before": round(before / MB, 2),
        "mb_after": round(after / MB, 2),
        "seconds": round(report.seconds, 2),
        "skipped_batches": report.skipped_batches,
    }
    metadata.update({f"deleted_{table}": count for table, count in report.deleted.items()})
    return dg.Output(None, metadata=metadata)


@dg.job(name=JOB_NAME, tags={MAINTENANCE_TAG: "prune"}, executor_def=dg.in_process_executor)
def dagster_maintenance() -> None:
    """Prune Dagster's run and event history past its age (XAU_DAGSTER_RETENTION_DAYS) and reclaim the space."""
    prune_dagster_storage()


def build_maintenance_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """The maintenance job daily at 03:10 UTC, with the retention age of the code location's settings
    in its run config (a run started elsewhere, e.g. in a container, keeps it)."""
    return dg.ScheduleDefinition(
        name=f"{JOB_NAME}_daily",
        job=dagster_maintenance,
        cron_schedule=CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        run_config={"ops": {"prune_dagster_storage": {"config": {"retention_days": settings.dagster_retention_days}}}},
        description=(
            f"Daily: prune Dagster's history of runs finished over {settings.dagster_retention_days} days ago, "
            "keeping each partition's newest materialization and each check's newest verdict."
        ),
    )
