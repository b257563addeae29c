"""The instance's Dagster storage: dagster-postgres's, its event log keeping one connection open per process."""

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from xau_pipeline.dagster_internals.storage import PooledPostgresStorage
from xau_pipeline.store.database import temporary_database
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
