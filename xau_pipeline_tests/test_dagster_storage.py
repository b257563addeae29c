"""The instance's Dagster storage: dagster-postgres's, its event log keeping one connection open per process."""

import logging
import time

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from xau_pipeline.dagster_internals.storage import PooledPostgresStorage
from xau_pipeline_dev.testing import temporary_database
from xau_pipeline_tests.conftest import REPO

APPLICATION = "xau_storage_test"
BACKENDS = sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name AND datname = current_database()")


@pytest.mark.parametrize("instance_file", ["dagster.yaml", "deploy/dagster.yaml"])
def test_both_instance_files_name_the_pooled_storage_with_the_same_url_setting(instance_file):
    storage = yaml.safe_load((REPO / instance_file).read_text())["storage"]
    assert storage["custom"]["module"] == PooledPostgresStorage.__module__
    assert storage["custom"]["class"] == PooledPostgresStorage.__name__
    assert storage["custom"]["config"] == {"postgres_url": {"env": "XAU_DAGSTER_PG_URL"}}


@pytest.fixture
def dagster_database_url(database_url):
    """A database of the test's own: Dagster's tables must not land in the session's candle database."""
    with temporary_database(database_url, "xau_dagster_storage") as url:
        yield url


def test_a_run_workers_instance_stores_its_events_through_one_open_connection(
    dagster_database_url, tmp_path, monkeypatch
):
    """A run worker rebuilds the instance from its ref: every event it stores goes through the same
    PostgreSQL backend, where dagster-postgres's own storage opens (and closes) one per event."""
    database_url = dagster_database_url
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("XAU_DAGSTER_PG_URL", f"{database_url}?application_name={APPLICATION}")
    watcher = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with dg.DagsterInstance.get() as home_instance, dg.DagsterInstance.from_ref(home_instance.get_ref()) as worker:
        worker.report_runless_asset_event(dg.AssetMaterialization("pool_probe", partition="first"))
        with watcher.connect() as connection:
            first = set(connection.execute(BACKENDS, {"name": APPLICATION}).scalars())
        for day in range(30):
            worker.report_runless_asset_event(dg.AssetMaterialization("pool_probe", partition=f"day-{day}"))
        with watcher.connect() as connection:
            after = set(connection.execute(BACKENDS, {"name": APPLICATION}).scalars())
        stored = worker.fetch_materializations(dg.AssetKey("pool_probe"), limit=100).records
    watcher.dispose()
    assert len(stored) == 31
    assert len(first) == 1, f"{len(first)} connection(s) open after the first event: no pool held one"
    assert after == first, "later events were stored through other connections than the first"


# The upsert of a batch's execution rows fails for check "doomed" (as a constraint or a lost
# connection would fail it).
REFUSE_DOOMED = (
    "CREATE FUNCTION refuse_doomed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.check_name = 'doomed' THEN RAISE EXCEPTION 'doomed check'; END IF; RETURN NEW; END $$",
    "CREATE TRIGGER refuse_doomed BEFORE INSERT OR UPDATE ON asset_check_executions "
    "FOR EACH ROW EXECUTE FUNCTION refuse_doomed()",
)
# The transactions the run's event rows and execution rows were written in (xmin: the writer's id).
WRITERS = sa.text(
    "SELECT (SELECT count(*) FROM event_logs WHERE run_id = :run AND dagster_event_type = 'ASSET_CHECK_EVALUATION'), "
    "(SELECT count(*) FROM asset_check_executions WHERE run_id = :run), "
    "(SELECT count(DISTINCT xmin::text) FROM (SELECT xmin FROM event_logs WHERE run_id = :run "
    "AND dagster_event_type = 'ASSET_CHECK_EVALUATION' UNION ALL "
    "SELECT xmin FROM asset_check_executions WHERE run_id = :run) AS rows)"
)


def evaluation_events(run_id: str, checks: list[str]) -> list[dg.EventLogEntry]:
    """A run's partition check evaluations, as the pooled event log receives a batch of them."""
    return [
        dg.EventLogEntry(
            error_info=None,
            level=logging.INFO,
            user_message="",
            run_id=run_id,
            timestamp=time.time(),
            dagster_event=dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
                job_name="probe_job",
                event_specific_data=dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey("probe"), check_name=check, passed=True, partition="2024-03-12"
                ),
            ),
        )
        for check in checks
    ]


def test_a_batch_of_evaluations_is_one_transaction_its_events_and_execution_rows_or_nothing(
    dagster_database_url, tmp_path
):
    """On the AUTOCOMMIT pool the insert and the upsert would commit apart: a failed upsert would leave
    the events, and Dagster's fallback (each event stored alone) would store them twice."""
    storage = yaml.safe_load((REPO / "dagster.yaml").read_text())["storage"]
    storage["custom"]["config"] = {"postgres_url": dagster_database_url}
    overrides = {"storage": storage, "telemetry": {"enabled": False}}
    engine = sa.create_engine(dagster_database_url, poolclass=sa.pool.NullPool)
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as instance:
        event_log = instance.event_log_storage
        event_log.store_event_batch(evaluation_events("kept", ["first", "second"]))
        with engine.begin() as connection:
            for statement in REFUSE_DOOMED:
                connection.execute(sa.text(statement))
        with pytest.raises(sa.exc.InternalError, match="doomed check"):
            event_log.store_event_batch(evaluation_events("split", ["first", "doomed"]))
    with engine.connect() as connection:
        kept = tuple(connection.execute(WRITERS, {"run": "kept"}).one())
        split = tuple(connection.execute(WRITERS, {"run": "split"}).one())
    engine.dispose()
    assert kept == (2, 2, 1), f"(events, execution rows, transactions) {kept}: not one transaction"
    assert split == (0, 0, 0), f"(events, execution rows, transactions) {split}: the failed batch left rows"
