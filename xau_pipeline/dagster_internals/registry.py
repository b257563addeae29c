"""Every Dagster internal the project uses, each with what it is for and what to do when an upgrade
moves or changes it: the fence's code and its guard tests (test_dagster_internals.py) resolve them
here, by name, at the moment they are needed, never when the code location loads."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any, NamedTuple


class Internal(NamedTuple):
    """A private Dagster name: `attribute` of `module` (`Class.name` for a class's member), or of a
    live object (`instance_attribute`), looked up only when used."""

    module: str
    attribute: str
    used_for: str
    on_upgrade: str
    instance_attribute: bool = False

    @property
    def name(self) -> str:
        return f"{self.module}.{self.attribute}"


PARTITIONS_TAB = (
    "then run test_check_partitions.py: without it each day a ranged run judges shows as skipped or missing in "
    "the check's Partitions tab"
)
BATCH = (
    "then rerun test_day_evaluations.py; until then a ranged run logs its per-day evaluations one at a time "
    "(docs/measurements.md, 'Per-day evaluations: what they cost')"
)
POOL = (
    "then rerun test_dagster_storage.py and test_day_evaluations.py; until then dagster.yaml's storage is "
    "dagster-postgres's plain one (a connection per stored event, evaluations one at a time)"
)

TARGET_TYPE = Internal(
    "dagster._core.definitions.asset_checks.asset_check_evaluation",
    "AssetCheckEvaluationTargetMaterializationData",
    "the target materialization of a ranged run's per-day evaluation (documented in `dg.AssetCheckEvaluation`'s "
    "docstring, its type exported only privately)",
    "find where `dg.AssetCheckEvaluation.target_materialization_data`'s type lives now (or a public way to give a "
    f"partition's evaluation its target materialization), {PARTITIONS_TAB}",
)
BATCH_METADATA = Internal(
    "dagster._core.events",
    "DagsterEventBatchMetadata",
    "marks the per-day evaluations as one batch, as Dagster marks a ranged step's materializations "
    "(`execute_step.py`, `_store_output`)",
    f"read how the new version marks the events of a batch (`_store_output`), {BATCH}",
)
BATCH_ID = Internal(
    "dagster._core.events",
    "generate_event_batch_id",
    "the id of that batch",
    f"read how the new version makes a batch's id (`_store_output`), {BATCH}",
)
FROM_STEP = Internal(
    "dagster",
    "DagsterEvent.from_step",
    "builds each evaluation's event as `context.log_event` does, with the batch marks",
    f"read how `OpExecutionContext.log_event` builds its event now, {BATCH}",
)
STEP_EVENTS = Internal(
    "dagster",
    "OpExecutionContext._events",
    "the step's list of events that `context.log_event` appends to, which the batch is appended to",
    f"read what `OpExecutionContext.log_event` appends to now, {BATCH}",
    instance_attribute=True,
)
EVENTS_TABLE = Internal(
    "dagster._core.storage.event_log.schema",
    "SqlEventLogStorageTable",
    "the `event_logs` table the pooled event log inserts a batch of evaluations into and reads targets from",
    f"find the event log's table definitions now, {POOL}",
)
EXECUTIONS_TABLE = Internal(
    "dagster._core.storage.event_log.schema",
    "AssetCheckExecutionsTable",
    "the `asset_check_executions` table whose rows the pooled event log upserts for a batch",
    f"find the check executions table now (and its unique index on asset, check, run and partition), {POOL}",
)
EVENT_TO_ROW = Internal(
    "dagster_postgres",
    "PostgresEventLogStorage._event_to_row",
    "serializes a stored event into its `event_logs` row, as `store_event` does",
    f"read how `SqlEventLogStorage.store_event` builds its row now, {POOL}",
)
INDEX_TRANSACTION = Internal(
    "dagster_postgres",
    "PostgresEventLogStorage.index_transaction",
    "a connection in a real transaction (READ COMMITTED on the AUTOCOMMIT pool) for the batch's two statements",
    f"find how dagster-postgres opens a transaction on its event log's engine now, {POOL}",
)
STORE_CHECK_EVENT = Internal(
    "dagster_postgres",
    "PostgresEventLogStorage.store_asset_check_event",
    "overridden to write a ranged run's planned execution rows with one serialization",
    f"read how `SqlEventLogStorage.store_event` stores check events now (`store_asset_check_event`), {POOL}",
)
STORAGE_INIT = Internal(
    "dagster_postgres",
    "DagsterPostgresStorage.__init__",
    "skipped by the pooled storage, which builds the three storages itself (the parent's would build "
    "dagster-postgres's own event log)",
    "compare the attributes `DagsterPostgresStorage.__init__` sets with `PooledPostgresStorage.__init__`'s and "
    f"set any new one there too, {POOL}",
)
PG_CONFIG = Internal(
    "dagster_postgres.utils",
    "pg_url_from_config",
    "reads `postgres_url` (or its parts) from the storage's configuration, as `DagsterPostgresStorage` does",
    f"read how `DagsterPostgresStorage.from_config_value` reads its configuration now, {POOL}",
)
PG_TOKEN = Internal(
    "dagster_postgres.utils",
    "get_token_provider_from_config",
    "the configuration's token provider, as `DagsterPostgresStorage` passes it to its storages",
    f"read how `DagsterPostgresStorage.from_config_value` reads its configuration now, {POOL}",
)

PARTITION_KEY_FILTER = Internal(
    "dagster._core.event_api",
    "PartitionKeyFilter",
    "asks the event log for one day's newest check verdicts (the alert sensor; no public way in 1.13)",
    "find where `PartitionKeyFilter` moved (or a public way to read one partition's newest check verdicts), "
    "then run test_alerts.py; until then the alerts on check verdicts are off (staleness and failing runs "
    "still alert)",
)

EVALUATION_INTERNALS = (TARGET_TYPE, BATCH_METADATA, BATCH_ID, FROM_STEP, STEP_EVENTS)
STORAGE_INTERNALS = (
    EVENTS_TABLE,
    EXECUTIONS_TABLE,
    EVENT_TO_ROW,
    INDEX_TRANSACTION,
    STORE_CHECK_EVENT,
    STORAGE_INIT,
    PG_CONFIG,
    PG_TOKEN,
)
ALERT_INTERNALS = (PARTITION_KEY_FILTER,)
INTERNALS = EVALUATION_INTERNALS + STORAGE_INTERNALS + ALERT_INTERNALS


SEE = "see xau_pipeline/dagster_internals/registry.py"


def resolve(internal: Internal, owner: Any = None) -> Any:
    """`internal` as Dagster has it now (looked up on `owner` for an instance attribute), or None."""
    try:
        value: Any = owner if internal.instance_attribute else importlib.import_module(internal.module)
    except ImportError:
        return None
    parts = internal.attribute.split(".")
    for part in parts[1:] if internal.instance_attribute else parts:
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def missing(internals: Iterable[Internal]) -> list[Internal]:
    """Those of `internals` (not instance attributes) that Dagster no longer has where they were."""
    return [internal for internal in internals if not internal.instance_attribute and resolve(internal) is None]


def what_to_do(internal: Internal) -> str:
    """The guard's message for `internal`."""
    import dagster as dg

    return (
        f"Dagster {dg.__version__} moved or changed {internal.name} ({internal.used_for}). On this upgrade: "
        f"{internal.on_upgrade}. Update xau_pipeline/dagster_internals/registry.py and the module that uses it."
    )


def warning_line(absent: Iterable[Internal], fallback: str) -> str:
    """The one line a process or run logs when it falls back to Dagster's public path."""
    names = ", ".join(internal.name for internal in absent)
    return f"Dagster internals missing or changed ({names}): {fallback}; {SEE}"
