"""A ranged run's per-day evaluations (xau_pipeline/dagster_internals/evaluations.py): each targets its
day's materialization, and all are stored as one batch in one transaction on the project's storage."""

import dagster as dg
import pytest
import sqlalchemy as sa

from xau_pipeline.dagster_internals import (
    day_evaluation,
    latest_materializations,
    log_day_evaluations,
    stores_evaluations_in_batches,
)
from xau_pipeline.defs.candles.partitions import partition_range_tags
from xau_pipeline_tests.conftest import dagster_instance_on

BATCHING = (
    f"Dagster {dg.__version__} no longer stores a ranged run's per-day check evaluations as one batch through "
    "xau_pipeline/dagster_internals/evaluations.py's `log_day_evaluations` (`DagsterEvent.from_step` with "
    "`DagsterEventBatchMetadata`, "
    "buffered by `DagsterInstance.handle_new_event` up to DAGSTER_EVENT_BATCH_SIZE) and "
    "xau_pipeline/dagster_internals/event_log.py's `PooledPostgresEventLogStorage.store_event_batch`. Read how the new version "
    "logs and batches events, update those two modules, and rerun this test and test_check_partitions.py; "
    "until then a year's backfill writes each evaluation on its own (docs/measurements.md, "
    "'Per-day evaluations: what they cost')."
)
DAYS = ["2024-03-11", "2024-03-12", "2024-03-13"]
CHECKS = ("first", "second")
UNJUDGED = "range_only"  # planned for each day, given a result for the range only
PLANNED = sa.text(
    "SELECT partition, execution_status, evaluation_event FROM asset_check_executions "
    "WHERE run_id = :run AND check_name = :check AND partition IS NOT NULL ORDER BY 1"
)
# A transaction's rows share their `xmin` (the id of the transaction that wrote them).
EVALUATIONS = sa.text(
    "SELECT count(*), count(DISTINCT e.xmin::text) FROM event_logs e "
    "JOIN asset_check_executions c ON c.evaluation_event_storage_id = e.id "
    "WHERE c.run_id = :run AND c.partition IS NOT NULL AND c.execution_status <> 'PLANNED'"
)
EXECUTIONS = sa.text(
    "SELECT c.check_name, c.partition, c.execution_status, c.materialization_event_storage_id, e.dagster_event_type "
    "FROM asset_check_executions c JOIN event_logs e ON e.id = c.evaluation_event_storage_id "
    "WHERE c.run_id = :run AND c.partition IS NOT NULL AND c.execution_status <> 'PLANNED' ORDER BY 1, 2"
)


@dg.multi_asset(
    specs=[dg.AssetSpec("batch_probe")],
    partitions_def=dg.DailyPartitionsDefinition(start_date="2024-03-01"),
    check_specs=[dg.AssetCheckSpec(name, asset="batch_probe") for name in (*CHECKS, UNJUDGED)],
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def batch_probe(context: dg.AssetExecutionContext):
    """Materializes its range, then logs each day's evaluation of each check (the second check fails
    on the middle day) through `log_day_evaluations`, as a candle asset does."""
    yield dg.MaterializeResult(asset_key="batch_probe")
    key = dg.AssetKey("batch_probe")
    targets = latest_materializations(context.instance, key, DAYS)
    log_day_evaluations(
        context,
        [
            day_evaluation(
                key, name, day, not (name == "second" and day == DAYS[1]), dg.AssetCheckSeverity.ERROR, targets[day]
            )
            for name in CHECKS
            for day in DAYS
        ],
    )
    for name in (*CHECKS, UNJUDGED):
        yield dg.AssetCheckResult(check_name=name, passed=True)


@pytest.fixture
def project_instance(database_url, tmp_path):
    """A Dagster instance on the project's storage (dagster.yaml's), in a database of its own."""
    with dagster_instance_on("project", database_url, tmp_path) as (instance, url):
        yield instance, url


def test_a_ranged_runs_day_evaluations_are_stored_in_one_batch_each_on_its_days_execution_row(
    project_instance, monkeypatch, capfd
):
    """Dagster plans one execution row per check and partition of the range (the batch updates
    those of the days judged; the others stay planned)."""
    instance, url = project_instance
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    assert stores_evaluations_in_batches(instance), BATCHING
    result = dg.materialize([batch_probe], instance=instance, tags=partition_range_tags(DAYS[0], DAYS[-1]))
    assert result.success
    in_step = [(e.check_name, e.partition, e.passed) for e in result.get_asset_check_evaluations() if e.partition]
    assert sorted(in_step) == sorted(
        (name, day, not (name == "second" and day == DAYS[1])) for name in CHECKS for day in DAYS
    ), BATCHING
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        stored, transactions = connection.execute(EVALUATIONS, {"run": result.run_id}).one()
        executions = connection.execute(EXECUTIONS, {"run": result.run_id}).all()
        planned = connection.execute(PLANNED, {"run": result.run_id, "check": UNJUDGED}).all()
    engine.dispose()
    assert [(day, status) for day, status, _ in planned] == [(day, "PLANNED") for day in DAYS]
    event = dg.deserialize_value(planned[0][2], dg.EventLogEntry)
    assert event.get_dagster_event().event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
    assert stored == len(CHECKS) * len(DAYS), BATCHING
    assert transactions == 1, f"{BATCHING} ({stored} evaluations were stored in {transactions} transactions)"
    assert "Exception while storing event batch" not in capfd.readouterr().err, BATCHING
    materializations = {
        record.partition_key: record.storage_id
        for record in instance.fetch_materializations(dg.AssetKey("batch_probe"), limit=10).records
    }
    assert [tuple(row) for row in executions] == [
        (
            name,
            day,
            "FAILED" if (name, day) == ("second", DAYS[1]) else "SUCCEEDED",
            materializations[day],
            "ASSET_CHECK_EVALUATION",
        )
        for name in CHECKS
        for day in DAYS
    ]


def test_on_dagsters_own_storage_day_evaluations_are_logged_one_at_a_time(database_url, tmp_path, monkeypatch, capfd):
    """Dagster's `storage: postgres:` (the Helm chart's) refuses a batch of check evaluations: they
    are logged as `context.log_event` logs them, with no refusal printed."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    with dagster_instance_on("postgres", database_url, tmp_path) as (instance, url):
        assert not stores_evaluations_in_batches(instance)
        result = dg.materialize([batch_probe], instance=instance, tags=partition_range_tags(DAYS[0], DAYS[-1]))
        assert result.success
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            stored, transactions = connection.execute(EVALUATIONS, {"run": result.run_id}).one()
        engine.dispose()
    assert (stored, transactions) == (len(CHECKS) * len(DAYS),) * 2
    assert "Exception while storing event batch" not in capfd.readouterr().err


@pytest.mark.parametrize("storage", ["project", "postgres"])
def test_each_days_target_is_its_newest_stored_materialization(database_url, tmp_path, storage):
    """On the project's event log, one query of ids; on Dagster's, its records: the same targets, a
    day materialized again by a later run targeting the later one, a day never materialized none."""
    with dagster_instance_on(storage, database_url, tmp_path) as (instance, _):
        assert stores_evaluations_in_batches(instance) == (storage == "project")
        ranged = dg.materialize([batch_probe], instance=instance, tags=partition_range_tags(DAYS[0], DAYS[-1]))
        again = dg.materialize([batch_probe], instance=instance, partition_key=DAYS[1])
        assert ranged.success and again.success
        key = dg.AssetKey("batch_probe")
        targets = latest_materializations(instance, key, [*DAYS, "2024-03-20"])
        newest = {
            day: instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), 1
            ).records[0]
            for day in DAYS
        }
    assert sorted(targets) == DAYS
    assert {day: (t.storage_id, t.run_id) for day, t in targets.items()} == {
        day: (r.storage_id, r.run_id) for day, r in newest.items()
    }
    assert targets[DAYS[1]].run_id == again.run_id and targets[DAYS[0]].run_id == ranged.run_id
    for day in DAYS:
        assert targets[day].timestamp == pytest.approx(newest[day].timestamp, abs=1e-6)
