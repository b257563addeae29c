"""A ranged run's per-day check evaluations: each one's target materialization, and all of them logged
as one batch, through Dagster internals looked up when a run needs them (registry.py).

Dagster 1.13.27 counts a partition's check evaluation in the check's Partitions tab only when it
targets that partition's latest materialization (`AssetCheckPartitionInfo.is_current`). A ranged
step gets no such target from a typed `AssetCheckResult`, so a day's evaluation is built here, its
target's type (`TARGET_TYPE`) exported only privately.

`context.log_event` stores each evaluation on its own: a year of four series is thousands of single
writes. Dagster batches a ranged step's materializations by logging them with
`DagsterEventBatchMetadata` (`execute_step.py`, `_store_output`), which
`DagsterInstance.handle_new_event` buffers until the batch ends or `DAGSTER_EVENT_BATCH_SIZE` events,
then hands to the event log's `store_event_batch`. `log_day_evaluations` logs the evaluations the
same way where the instance's event log is the pooled one (storage.py), which stores such a batch
(Dagster's own refuses check evaluations).

Where an internal is missing or changed, the public path: evaluations without a target, logged one
at a time with `context.log_event`, and one warning line in the run's log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from xau_pipeline.dagster_internals.registry import (
    BATCH_ID,
    BATCH_METADATA,
    EVALUATION_INTERNALS,
    FROM_STEP,
    STEP_EVENTS,
    TARGET_TYPE,
    Internal,
    missing,
    resolve,
    warning_line,
)
from xau_pipeline.dagster_internals.targets import MaterializationTarget

__all__ = [
    "MaterializationTarget",
    "day_evaluation",
    "latest_materializations",
    "log_day_evaluations",
    "stores_evaluations_in_batches",
]


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
    """One partition's evaluation, targeting `target` (that partition's stored materialization, or
    none, as where Dagster's target type is missing)."""
    target_type = resolve(TARGET_TYPE)
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=check_name,
        passed=passed,
        partition=partition,
        severity=severity,
        metadata=metadata,
        description=description,
        target_materialization_data=(
            target_type(storage_id=target.storage_id, run_id=target.run_id, timestamp=target.timestamp)
            if target is not None and target_type is not None
            else None
        ),
    )


def _pooled_event_log_class() -> type | None:
    """The pooled event log's class, or None where its internals are missing (storage.py then builds
    dagster-postgres's plain storage)."""
    try:
        from xau_pipeline.dagster_internals.event_log import PooledPostgresEventLogStorage
    except (ImportError, AttributeError):
        return None
    return PooledPostgresEventLogStorage


def stores_evaluations_in_batches(instance: dg.DagsterInstance) -> bool:
    """Whether the instance's event log stores a batch of check evaluations (ours does; Dagster's own
    storages refuse one and would fall back to single writes after printing the refusal)."""
    pooled = _pooled_event_log_class()
    return pooled is not None and isinstance(instance.event_log_storage, pooled)


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, days: Sequence[str]
) -> dict[str, dg.EventLogRecord | MaterializationTarget]:
    """Each of `days`' newest stored materialization of `key` (days never materialized are left out):
    on the project's event log one query of ids; elsewhere Dagster's records, one query for the days
    materialized by the newest runs and one per day left (as Dagster looks one up for a one-day run)."""
    if not days:
        return {}
    if stores_evaluations_in_batches(instance):
        return dict(instance.event_log_storage.latest_materializations(key, days))  # type: ignore[attr-defined]
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


_warned_runs: set[str] = set()


def _warn_once(context: dg.AssetExecutionContext, absent: Sequence[Internal]) -> None:
    """One warning line per run naming the internals missing, however many steps log evaluations."""
    run_id = context.run.run_id
    if run_id in _warned_runs:
        return
    _warned_runs.add(run_id)
    fallback = "per-day check evaluations logged one at a time" + (
        ", without their target materialization" if TARGET_TYPE in absent else ""
    )
    context.log.warning(warning_line(absent, fallback))


def log_day_evaluations(context: dg.AssetExecutionContext, evaluations: Sequence[dg.AssetCheckEvaluation]) -> None:
    """Log `evaluations` as `context.log_event` would (stored, and in the step's events), as one
    batch where the instance's event log stores batches of them, else one at a time."""
    absent = missing(EVALUATION_INTERNALS)
    logged = resolve(STEP_EVENTS, context.op_execution_context)  # what `log_event` appends to
    if not isinstance(logged, list):
        absent.append(STEP_EVENTS)
    if absent:
        _warn_once(context, absent)
    if absent or not stores_evaluations_in_batches(context.instance):
        for evaluation in evaluations:
            context.log_event(evaluation)
        return
    batch_metadata, from_step = resolve(BATCH_METADATA), resolve(FROM_STEP)
    batch = resolve(BATCH_ID)()
    step = context.get_step_execution_context()
    last = len(evaluations) - 1
    try:  # every event built before any is logged: a changed signature logs none of them twice
        events = [
            from_step(
                event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                step_context=step,
                event_specific_data=evaluation,
                # `DagsterEvent.asset_check_evaluation`'s message
                message=(
                    f"Asset check '{evaluation.check_name}' on '{evaluation.asset_key.to_user_string()}' "
                    + ("passed." if evaluation.passed else "did not pass.")
                    + ("" if evaluation.description is None else f" Description: '{evaluation.description}'")
                ),
                batch_metadata=batch_metadata(batch, index == last),
            )
            for index, evaluation in enumerate(evaluations)
        ]
    except TypeError:
        _warn_once(context, [FROM_STEP, BATCH_METADATA])
        for evaluation in evaluations:
            context.log_event(evaluation)
        return
    logged.extend(events)
