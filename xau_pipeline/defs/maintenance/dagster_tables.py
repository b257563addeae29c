"""Pruning Dagster's own tables: the one place the project writes SQL against Dagster's storage.

Dagster OSS 1.13 has no retention for runs and event logs (only ticks, `retention:` in
dagster.yaml), and `DagsterInstance.delete_run` deletes a run's materializations with it, so the next
rebuild of the partition status cache would show those days as never materialized. What is pruned
here, only for runs finished more than the retention age ago (`runs.end_time`):

- `event_logs`: every event (log lines, engine, step, input/output, run lifecycle and planned
  events) except, per asset, event type and partition, the newest materialization, observation,
  planned materialization and failed materialization (what `get_materialized_partitions`, the failed
  partitions of a cache rebuild and the asset's latest event read), and the target materializations
  that a kept `asset_check_executions` row names. A check evaluation's event goes too: its execution
  row holds the same serialized evaluation (`evaluation_event`), which is what the check views read,
  and of the event only its id (`evaluation_event_storage_id`, compared, never joined);
- `asset_event_tags`: the tags of the deleted events;
- `asset_check_executions`: every row but the newest per asset, check and partition (the verdict
  the check's Partitions tab shows);
- `runs`, `run_tags`: runs that own no event and no check execution any more (runs owning a kept
  event stay, so their links and the failed-partition bookkeeping stay true);
- `job_ticks`: finished ticks older than the age, but each schedule's or sensor's newest.

Every delete is a batch of at most `batch_size` rows in a transaction of its own, on rows no live
run writes (old, finished runs), with a short `lock_timeout`: live runs are never waited on and
never wait. Space is then handed back to PostgreSQL with plain `VACUUM (ANALYZE, SKIP_LOCKED)`, which
takes no lock that blocks reads or writes (the freed pages are reused by new rows, so the tables
stop growing); `VACUUM FULL` would shrink the files but holds an exclusive lock on each table for as
long as it rewrites it, stopping every run that logs an event meanwhile.

The table and column names below are Dagster's (`dagster._core.storage.{event_log,runs,schedules}.schema`);
xau_pipeline_tests/test_maintenance.py fails when an upgrade changes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa

# What this module reads or deletes, table by table (checked against Dagster's schema by the tests).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "event_logs": ("id", "run_id", "dagster_event_type", "asset_key", "partition"),
    "asset_event_tags": ("event_id",),
    "asset_check_executions": (
        "id",
        "asset_key",
        "check_name",
        "partition",
        "run_id",
        "materialization_event_storage_id",
    ),
    "runs": ("run_id", "status", "end_time"),
    "run_tags": ("run_id",),
    "job_ticks": ("id", "job_origin_id", "status", "timestamp"),
}
PRUNED_TABLES = tuple(TABLE_COLUMNS)

FINISHED_RUN_STATUSES = tuple(
    status.value for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
)
_EVENT = dg.DagsterEventType
# Per asset, type and partition the newest of these stays: the partition status cache is rebuilt from
# them (materialized: the materializations; failed: a planned materialization with none after it).
NEWEST_KEPT_EVENT_TYPES = tuple(
    t.value
    for t in (
        _EVENT.ASSET_MATERIALIZATION,
        _EVENT.ASSET_OBSERVATION,
        _EVENT.ASSET_MATERIALIZATION_PLANNED,
        _EVENT.ASSET_FAILED_TO_MATERIALIZE,
    )
)
# Tick statuses of Dagster's `TickStatus` that are finished (STARTED is a tick being evaluated).
FINISHED_TICK_STATUSES = ("SKIPPED", "SUCCESS", "FAILURE")

# A batch never waits more than this for a row or table lock held by someone else (it fails instead,
# and the rows are pruned the next day).
LOCK_TIMEOUT_MS = 2000
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout
# The setup statements read whole tables (a first pass over a long backlog); they take no lock a writer waits on.
STATEMENT_TIMEOUT_MS = 600_000
APPLICATION_NAME = "xau_dagster_maintenance"

OLD_RUNS = sa.text(
    "CREATE TEMPORARY TABLE xau_old_runs AS SELECT run_id FROM runs "
    "WHERE status IN :statuses AND end_time < :cutoff AND run_id IS NOT NULL"
).bindparams(sa.bindparam("statuses", expanding=True))
NEWEST_CHECKS = sa.text(
    "CREATE TEMPORARY TABLE xau_newest_checks AS SELECT max(id) AS id FROM asset_check_executions "
    "GROUP BY asset_key, check_name, partition"
)
KEPT_EVENTS = sa.text(
    "CREATE TEMPORARY TABLE xau_kept_events AS "
    "SELECT max(id) AS id FROM event_logs WHERE asset_key IS NOT NULL AND dagster_event_type IN :types "
    "GROUP BY asset_key, dagster_event_type, partition "
    "UNION SELECT materialization_event_storage_id FROM asset_check_executions "
    "WHERE materialization_event_storage_id IS NOT NULL"
).bindparams(sa.bindparam("types", expanding=True))
LAST_OLD_EVENT = sa.text("SELECT max(e.id) FROM event_logs e JOIN xau_old_runs o ON o.run_id = e.run_id")
FIRST_EVENT = sa.text("SELECT min(id) FROM event_logs")
# The id `n` rows past `lo` (the end of a window of n rows), none when fewer remain.
EVENT_WINDOW_END = sa.text("SELECT id FROM event_logs WHERE id >= :lo ORDER BY id OFFSET :n LIMIT 1")


def _delete_old_rows(table: str, kept: str, returning: str = "") -> sa.TextClause:
    """Delete the rows of `table` in an id window [:lo, :hi) that belong to old runs and are not in `kept`."""
    return sa.text(
        f"DELETE FROM {table} t WHERE t.id >= :lo AND t.id < :hi "
        "AND t.run_id IN (SELECT run_id FROM xau_old_runs) "
        f"AND NOT EXISTS (SELECT 1 FROM {kept} k WHERE k.id = t.id){returning}"
    )


DELETE_EVENTS = _delete_old_rows("event_logs", "xau_kept_events", " RETURNING t.id")
DELETE_EVENT_TAGS = sa.text("DELETE FROM asset_event_tags WHERE event_id = ANY(:ids)")
CHECK_ID_RANGE = sa.text("SELECT min(id), max(id) FROM asset_check_executions")
DELETE_CHECKS = _delete_old_rows("asset_check_executions", "xau_newest_checks")
DOOMED_RUNS = sa.text(
    "SELECT o.run_id FROM xau_old_runs o "
    "WHERE NOT EXISTS (SELECT 1 FROM event_logs e WHERE e.run_id = o.run_id) "
    "AND o.run_id NOT IN (SELECT run_id FROM asset_check_executions WHERE run_id IS NOT NULL)"
)
DELETE_RUN_TAGS = sa.text("DELETE FROM run_tags WHERE run_id = ANY(:ids)")
DELETE_RUNS = sa.text("DELETE FROM runs WHERE run_id = ANY(:ids)")
DELETE_TICKS = sa.text(
    "DELETE FROM job_ticks WHERE id IN (SELECT t.id FROM job_ticks t WHERE t.status IN :statuses "
    "AND t.timestamp < :cutoff AND t.id NOT IN (SELECT max(id) FROM job_ticks GROUP BY job_origin_id) "
    "ORDER BY t.id LIMIT :n)"
).bindparams(sa.bindparam("statuses", expanding=True))
TABLE_SIZE = sa.text("SELECT pg_total_relation_size(CAST(:table AS regclass))")
VACUUM = "VACUUM (ANALYZE, SKIP_LOCKED) {table}"


@dataclass(frozen=True)
class TableFigures:
    """A table's rows and its size on disk with indexes and TOAST (`pg_total_relation_size`)."""

    rows: int
    bytes: int


@dataclass
class PruneReport:
    """What one maintenance pass deleted per table, and each table before and after it."""

    cutoff: datetime
    old_runs: int = 0
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRUNED_TABLES, 0))
    before: dict[str, TableFigures] = field(default_factory=dict)
    after: dict[str, TableFigures] = field(default_factory=dict)
    skipped_batches: int = 0
    seconds: float = 0.0

    def total_bytes(self, figures: dict[str, TableFigures]) -> int:
        return sum(f.bytes for f in figures.values())


def storage_url(instance: dg.DagsterInstance) -> str:
    """The PostgreSQL URL of the instance's runs, event log and schedules (one database), from
    dagster-postgres's storages (`storage: postgres:` or the project's `custom:`)."""
    from dagster_postgres.event_log import PostgresEventLogStorage
    from dagster_postgres.run_storage import PostgresRunStorage
    from dagster_postgres.schedule_storage import PostgresScheduleStorage

    storages = (instance.event_log_storage, instance.run_storage, instance.schedule_storage)
    kinds = (PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage)
    if not all(isinstance(s, kind) for s, kind in zip(storages, kinds, strict=True)):
        raise ValueError(
            "Dagster's storage is not dagster-postgres's (dagster.yaml `storage: postgres:` or the project's "
            "`custom:`): the maintenance job prunes only PostgreSQL storage"
        )
    urls = {str(getattr(s, "postgres_url")) for s in storages}  # noqa: B009 (dagster-postgres attribute)
    if len(urls) != 1:
        raise ValueError("Dagster's runs, event log and schedules are in different databases: not supported")
    return urls.pop()


@contextmanager
def _maintenance_engine(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.NullPool,
        connect_args={
            "application_name": APPLICATION_NAME,
            "options": f"-c lock_timeout={LOCK_TIMEOUT_MS} -c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )
    try:
        yield engine
    finally:
        engine.dispose()


def table_figures(connection: sa.Connection) -> dict[str, TableFigures]:
    """Rows and bytes of every table this module prunes."""
    figures = {}
    for table in PRUNED_TABLES:
        rows = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        size = connection.execute(TABLE_SIZE, {"table": table}).scalar_one()
        figures[table] = TableFigures(int(rows), int(size))
    connection.commit()
    return figures


def prune(
    url: str,
    cutoff: datetime,
    batch_size: int = 5000,
    log: Callable[[str], Any] = lambda _: None,
    vacuum: bool = True,
) -> PruneReport:
    """Delete what only served debugging from runs finished before `cutoff` (UTC), batch by batch,
    then VACUUM the pruned tables (see the module's docstring for what stays)."""
    started = time.monotonic()
    report = PruneReport(cutoff=cutoff)
    with _maintenance_engine(url) as engine:
        with engine.connect() as connection:
            report.before = table_figures(connection)
            # The temporary tables below live as long as this connection; each batch is a transaction.
            with connection.begin():
                connection.execute(
                    OLD_RUNS, {"statuses": list(FINISHED_RUN_STATUSES), "cutoff": cutoff.timestamp()}
                ).close()
                connection.execute(sa.text("ALTER TABLE xau_old_runs ADD PRIMARY KEY (run_id)"))
                connection.execute(sa.text("ANALYZE xau_old_runs"))
                report.old_runs = connection.execute(sa.text("SELECT count(*) FROM xau_old_runs")).scalar_one()
            log(f"{report.old_runs} run(s) finished before {cutoff:%Y-%m-%d %H:%M} UTC")
            if report.old_runs:
                _prune_check_executions(connection, report, batch_size)
                _prune_events(connection, report, batch_size)
                _prune_runs(connection, report, batch_size)
            _prune_ticks(connection, report, batch_size, cutoff)
        for table, count in report.deleted.items():
            log(f"{table}: {count} row(s) deleted")
        if vacuum:  # VACUUM runs outside a transaction block
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(sa.text("SET statement_timeout = 0"))
                for table in PRUNED_TABLES:
                    connection.execute(sa.text(VACUUM.format(table=table)))
        with engine.connect() as connection:
            report.after = table_figures(connection)
    report.seconds = time.monotonic() - started
    return report


def _lock_timeout(exc: sa.exc.OperationalError) -> bool:
    return getattr(exc.orig, "pgcode", None) == LOCK_NOT_AVAILABLE


def _batch(
    connection: sa.Connection, report: PruneReport, statement: sa.TextClause, params: dict[str, Any]
) -> tuple[int, list[Any]]:
    """One statement in a transaction of its own: its row count and returned rows. A lock it cannot
    get within LOCK_TIMEOUT_MS skips it (counted in the report)."""
    try:
        with connection.begin():
            result = connection.execute(statement, params)
            rows = list(result.all()) if result.returns_rows else []
            return result.rowcount, rows
    except sa.exc.OperationalError as exc:
        if not _lock_timeout(exc):
            raise
        report.skipped_batches += 1
        return 0, []


def _prune_check_executions(connection: sa.Connection, report: PruneReport, batch_size: int) -> None:
    with connection.begin():
        connection.execute(NEWEST_CHECKS)
        connection.execute(sa.text("ALTER TABLE xau_newest_checks ADD PRIMARY KEY (id)"))
        first, last = connection.execute(CHECK_ID_RANGE).one()
    if first is None:
        return
    for lo in range(first, last + 1, batch_size):
        count, _ = _batch(connection, report, DELETE_CHECKS, {"lo": lo, "hi": lo + batch_size})
        report.deleted["asset_check_executions"] += count


def _prune_events(connection: sa.Connection, report: PruneReport, batch_size: int) -> None:
    with connection.begin():
        connection.execute(KEPT_EVENTS, {"types": list(NEWEST_KEPT_EVENT_TYPES)})
        connection.execute(sa.text("DELETE FROM xau_kept_events WHERE id IS NULL"))
        connection.execute(sa.text("ALTER TABLE xau_kept_events ADD PRIMARY KEY (id)"))
        connection.execute(sa.text("ANALYZE xau_kept_events"))
        lo = connection.execute(FIRST_EVENT).scalar()
        last = connection.execute(LAST_OLD_EVENT).scalar()
    if lo is None or last is None:
        return
    while lo <= last:
        with connection.begin():
            hi = connection.execute(EVENT_WINDOW_END, {"lo": lo, "n": batch_size}).scalar()
        hi = min(hi if hi is not None else last + 1, last + 1)
        _, rows = _batch(connection, report, DELETE_EVENTS, {"lo": lo, "hi": hi})
        ids = [row[0] for row in rows]
        report.deleted["event_logs"] += len(ids)
        if ids:
            tags, _ = _batch(connection, report, DELETE_EVENT_TAGS, {"ids": ids})
            report.deleted["asset_event_tags"] += tags
        lo = hi


def _prune_runs(connection: sa.Connection, report: PruneReport, batch_size: int) -> None:
    with connection.begin():
        doomed = list(connection.execute(DOOMED_RUNS).scalars())
    step = max(1, batch_size // 10)  # a run has a handful of tags
    for start in range(0, len(doomed), step):
        ids = doomed[start : start + step]
        try:
            with connection.begin():
                tags = connection.execute(DELETE_RUN_TAGS, {"ids": ids}).rowcount
                runs = connection.execute(DELETE_RUNS, {"ids": ids}).rowcount
        except sa.exc.OperationalError as exc:
            if not _lock_timeout(exc):
                raise
            report.skipped_batches += 1
            continue
        report.deleted["run_tags"] += tags
        report.deleted["runs"] += runs


def _prune_ticks(connection: sa.Connection, report: PruneReport, batch_size: int, cutoff: datetime) -> None:
    params = {
        "statuses": list(FINISHED_TICK_STATUSES),
        # Dagster stores tick timestamps as naive UTC.
        "cutoff": cutoff.astimezone(UTC).replace(tzinfo=None),
        "n": batch_size,
    }
    while True:
        count, _ = _batch(connection, report, DELETE_TICKS, params)
        report.deleted["job_ticks"] += count
        if count < batch_size:
            return
