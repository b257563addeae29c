"""The one place that reaches into Dagster's internals for check evaluations: an evaluation's target
materialization, and logging a ranged run's per-day evaluations as one batch.

Dagster 1.13.27 counts a partition's check evaluation in the check's Partitions tab only when it
targets that partition's latest materialization (`AssetCheckPartitionInfo.is_current`). A ranged
step gets no such target from a typed `AssetCheckResult`, so a day's evaluation is built here.

`context.log_event` stores each evaluation on its own (`DagsterEvent.from_step` with no batch
metadata): a year of four series is thousands of single writes. Dagster batches a ranged step's
materializations by logging them with `DagsterEventBatchMetadata` (`execute_step.py`,
`_store_output`), which `DagsterInstance.handle_new_event` buffers until the batch ends or
`DAGSTER_EVENT_BATCH_SIZE` events, then hands to the event log's `store_event_batch`.
`log_day_evaluations` logs the evaluations the same way, where the instance's event log is
`PooledPostgresEventLogStorage`, which stores such a batch (Dagster's own refuses check evaluations).
test_check_target.py fails, saying what to do, if an upgrade moves or changes any of this.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

# `target_materialization_data` is documented in the public docstring of `dg.AssetCheckEvaluation`
# ("The latest materialization at execution time of the check."), but its type is exported only
# from this private module.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

# How Dagster marks events it stores as one batch (`dagster/_core/events/__init__.py`).
from dagster._core.events import DagsterEventBatchMetadata, generate_event_batch_id

from xau_pipeline.dagster_storage import MaterializationTarget, PooledPostgresEventLogStorage

__all__ = ["day_evaluation", "latest_materializations", "log_day_evaluations", "stores_evaluations_in_batches"]


def day_evaluation(
    asset_key: dg.AssetKey,
    check_name: str,
    partition: str,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    target: dg.EventLogRecord | MaterializationTarget | None,
    metadata: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> dg.AssetCheckEvaluation:
    """One partition's evaluation, targeting `target` (that partition's stored materialization, or none)."""
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=check_name,
        passed=passed,
        partition=partition,
        severity=severity,
        metadata=metadata,
        description=description,
        target_materialization_data=(
            AssetCheckEvaluationTargetMaterializationData(
                storage_id=target.storage_id, run_id=target.run_id, timestamp=target.timestamp
            )
            if target is not None
            else None
        ),
    )


def stores_evaluations_in_batches(instance: dg.DagsterInstance) -> bool:
    """Whether the instance's event log stores a batch of check evaluations (ours does; Dagster's own
    storages refuse one and would fall back to single writes after printing the refusal)."""
    return isinstance(instance.event_log_storage, PooledPostgresEventLogStorage)


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, days: Sequence[str]
) -> dict[str, dg.EventLogRecord | MaterializationTarget]:
    """Each of `days`' newest stored materialization of `key` (days never materialized are left out):
    on the project's event log one query of ids; elsewhere Dagster's records, one query for the days
    materialized by the newest runs and one per day left (as Dagster looks one up for a one-day run)."""
    if not days:
        return {}
    storage = instance.event_log_storage
    if isinstance(storage, PooledPostgresEventLogStorage):
        return dict(storage.latest_materializations(key, days))
    newest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(days)), len(days)
    )
    targets: dict[str, dg.EventLogRecord | MaterializationTarget] = {}
    for record in newest.records:
        if record.partition_key is not None:
            targets.setdefault(record.partition_key, record)
    for day in days:
        if day not in targets:
            older = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), 1)
            if older.records:
                targets[day] = older.records[0]
    return targets


def log_day_evaluations(context: dg.AssetExecutionContext, evaluations: Sequence[dg.AssetCheckEvaluation]) -> None:
    """Log `evaluations` as `context.log_event` would (stored, and in the step's events), as one
    batch where the instance's event log stores batches of them, else one at a time."""
    if not stores_evaluations_in_batches(context.instance):
        for evaluation in evaluations:
            context.log_event(evaluation)
        return
    step = context.get_step_execution_context()
    logged = context.op_execution_context._events  # what `log_event` appends to: the step's own events
    batch = generate_event_batch_id()
    last = len(evaluations) - 1
    for index, evaluation in enumerate(evaluations):
        logged.append(
            dg.DagsterEvent.from_step(
                event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                step_context=step,
                event_specific_data=evaluation,
                # `DagsterEvent.asset_check_evaluation`'s message
                message=(
                    f"Asset check '{evaluation.check_name}' on '{evaluation.asset_key.to_user_string()}' "
                    + ("passed." if evaluation.passed else "did not pass.")
                    + ("" if evaluation.description is None else f" Description: '{evaluation.description}'")
                ),
                batch_metadata=DagsterEventBatchMetadata(batch, index == last),
            )
        )
