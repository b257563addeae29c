"""dagster-postgres's event log holding one open connection and storing a batch of check evaluations
in one transaction of two statements. Imported only by storage.py and evaluations.py, each inside a
guard: its Dagster internals (registry.py: `EVENTS_TABLE`, `EXECUTIONS_TABLE`, `EVENT_TO_ROW`,
`INDEX_TRANSACTION`, `STORE_CHECK_EVENT`) are imported or called here, and nowhere else.

`PostgresEventLogStorage` opens a new connection for every event it stores (`poolclass=NullPool` in
its `__init__`); only the webserver switches it to a pool (`optimize_for_webserver`, public). A run
worker writes every log line, check evaluation and materialization batch through it: a one-year
backfill's thousands of per-day evaluations each paid for a connection (docs/measurements.md,
"Per-day evaluations: what they cost").

Dagster's `store_event_batch` refuses check evaluations (`BATCH_WRITABLE_EVENTS` in
`dagster/_core/events/__init__.py`); this one stores a batch of them, as
`evaluations.log_day_evaluations` sends a ranged run's per-day evaluations: one insert of the events
and one upsert of their execution rows, in one transaction. The pool is AUTOCOMMIT (as
`optimize_for_webserver` builds it), so the transaction is dagster-postgres's `index_transaction`
(READ COMMITTED for its duration): if the upsert fails, no event stays, and Dagster's fallback
(each event stored alone) writes each evaluation once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster_postgres import PostgresEventLogStorage
from sqlalchemy.dialects.postgresql import distinct_on, insert

from xau_pipeline.dagster_internals.targets import MaterializationTarget

# One connection held per process; beyond it, threads writing at once (the daemon's) open
# connections that close when returned, as without a pool.
MAX_OVERFLOW = 10
# Reconnect after an hour, before a server or proxy closes an idle connection on its side.
POOL_RECYCLE_SECONDS = 3600
# PostgreSQL's own default (no limit); the webserver sets its own when it optimizes its storage.
NO_STATEMENT_TIMEOUT = 0

CHECK_EVALUATION = dg.DagsterEventType.ASSET_CHECK_EVALUATION
# The execution row a planned check wrote, one per (asset, check, run, partition): Dagster's
# `idx_asset_check_executions_unique` index, which holds as a key only where run and partition are
# set (PostgreSQL counts NULLs as distinct), so only such evaluations are batched.
EXECUTION_KEY = ("asset_key", "check_name", "run_id", "partition")


_EXECUTIONS = insert(AssetCheckExecutionsTable)
# RETURNING makes SQLAlchemy batch the rows into multi-row statements ("insertmanyvalues"); without it
# psycopg2's executemany runs one statement per row.
UPSERT_EXECUTION = _EXECUTIONS.on_conflict_do_update(
    index_elements=list(EXECUTION_KEY),
    set_={
        column: _EXECUTIONS.excluded[column]
        for column in (
            "execution_status",
            "evaluation_event",
            "evaluation_event_timestamp",
            "evaluation_event_storage_id",
            "materialization_event_storage_id",
        )
    },
).returning(AssetCheckExecutionsTable.c.id)


_EVENTS = SqlEventLogStorageTable.c
# Each partition's newest materialization, on Dagster's `idx_events_by_asset_partition` index
# (asset_key, dagster_event_type, partition, id); the ids alone, not the serialized events.
LATEST_MATERIALIZATIONS = (
    sa.select(_EVENTS.partition, _EVENTS.id, _EVENTS.run_id, _EVENTS.timestamp)
    .ext(distinct_on(_EVENTS.partition))
    .where(
        _EVENTS.asset_key == sa.bindparam("asset_key"),
        _EVENTS.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION.value,
        _EVENTS.partition.in_(sa.bindparam("partitions", expanding=True)),
    )
    .order_by(_EVENTS.partition, _EVENTS.id.desc())
)


def batchable_check_evaluation(event: dg.EventLogEntry) -> bool:
    """A run's evaluation of one partition of a check: the kind this event log stores in batches."""
    dagster_event = event.dagster_event
    if dagster_event is None or dagster_event.event_type != CHECK_EVALUATION or not event.run_id:
        return False
    return dagster_event.asset_check_evaluation_data.partition is not None


def _utc_naive(timestamp: float) -> datetime:
    # Dagster stores its timestamps as naive UTC (`SqlEventLogStorage._event_insert_timestamp`).
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    """`PostgresEventLogStorage` holding one open connection (a pool of one, as Dagster's webserver
    uses) instead of opening one per stored event, and storing a batch of partition check
    evaluations in one transaction of two statements."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, token_provider: Any = None) -> None:
        super().__init__(postgres_url, should_autocreate_tables, token_provider=token_provider)
        self.optimize_for_webserver(
            statement_timeout=NO_STATEMENT_TIMEOUT, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=MAX_OVERFLOW
        )
        self._checks_table_exists = False

    @property
    def supports_asset_checks(self) -> bool:
        # Dagster asks the database whether the checks table exists before storing each check
        # event (one more query per event); once it exists it stays.
        if not self._checks_table_exists:
            self._checks_table_exists = bool(super().supports_asset_checks)
        return self._checks_table_exists

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        evaluations = [event for event in events if batchable_check_evaluation(event)]
        keys = {self._execution_key(event) for event in evaluations}
        if not evaluations or len(evaluations) < len(events) or len(keys) < len(evaluations):
            super().store_event_batch(events)  # Dagster's own (refuses check evaluations)
            return
        self.store_check_evaluations(evaluations)

    def store_check_evaluations(self, events: Sequence[dg.EventLogEntry]) -> None:
        """Store partition check evaluations of runs: their events, then each one's execution row
        (the planned row updated, or inserted where none was planned), as Dagster's
        `_update_asset_check_evaluation` does one event at a time."""
        rows = [self._event_to_row(event) for event in events]  # serializes each event once
        # Both statements are executed with many parameter sets, not as one statement of many VALUES:
        # SQLAlchemy compiles a bound parameter per value of the latter (about 20 us each, a second
        # for a thousand evaluations) and only once for the former (its "insertmanyvalues" batches).
        with self.index_transaction() as connection:
            ids = (
                connection.execute(
                    SqlEventLogStorageTable.insert().returning(
                        SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
                    ),
                    rows,
                )
                .scalars()
                .all()
            )
            executions = [
                self._execution_row(event, row["event"], int(event_id))
                for event, row, event_id in zip(events, rows, ids, strict=True)
            ]
            connection.execute(UPSERT_EXECUTION, executions).close()

    def latest_materializations(
        self, asset_key: dg.AssetKey, partitions: Sequence[str]
    ) -> dict[str, MaterializationTarget]:
        """Each of `partitions`' newest stored materialization, in one query that reads no event:
        `fetch_materializations` deserializes each record, metadata and all (a year's days: 0.2 s)."""
        if not partitions:
            return {}
        with self.index_connection() as connection:
            rows = connection.execute(
                LATEST_MATERIALIZATIONS, {"asset_key": asset_key.to_string(), "partitions": list(partitions)}
            ).all()
        # Stored as naive UTC, from the event's own timestamp (`_event_insert_timestamp`).
        return {
            row.partition: MaterializationTarget(row.id, row.run_id, row.timestamp.replace(tzinfo=UTC).timestamp())
            for row in rows
        }

    def store_asset_check_event(self, event: dg.EventLogEntry, event_id: int | None) -> None:
        planned = event.dagster_event
        if planned is None or planned.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
            super().store_asset_check_event(event, event_id)
            return
        # Dagster's `_store_asset_check_evaluation_planned` serializes the planned event once per
        # partition it plans (a year's range: 365 times, for each check); the rows are the same.
        data = planned.asset_check_planned_data
        keys = data.partitions_subset.get_partition_keys() if data.partitions_subset else [None]
        serialized = dg.serialize_value(event)
        common = {
            "asset_key": data.asset_key.to_string(),
            "check_name": data.check_name,
            "run_id": event.run_id,
            "execution_status": "PLANNED",
            "evaluation_event": serialized,
            "evaluation_event_timestamp": _utc_naive(event.timestamp),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as connection:
            connection.execute(
                AssetCheckExecutionsTable.insert().returning(AssetCheckExecutionsTable.c.id),
                [{**common, "partition": key} for key in keys],
            ).close()

    @staticmethod
    def _execution_key(event: dg.EventLogEntry) -> tuple[str, str, str, str | None]:
        evaluation = event.get_dagster_event().asset_check_evaluation_data
        return (evaluation.asset_key.to_string(), evaluation.check_name, event.run_id, evaluation.partition)

    def _execution_row(self, event: dg.EventLogEntry, serialized: str, event_id: int) -> dict[str, Any]:
        evaluation = event.get_dagster_event().asset_check_evaluation_data
        target = evaluation.target_materialization_data
        return {
            **dict(zip(EXECUTION_KEY, self._execution_key(event), strict=True)),
            "execution_status": "SUCCEEDED" if evaluation.passed else "FAILED",
            "evaluation_event": serialized,
            "evaluation_event_timestamp": _utc_naive(event.timestamp),
            "evaluation_event_storage_id": event_id,
            "materialization_event_storage_id": target.storage_id if target else None,
        }
