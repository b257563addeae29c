"""Dagster's storage kept bounded: tick retention, the freshness daemon off, and the maintenance job
that prunes old debugging history while the UI's partition and check views stay true."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import daily_partitions, partition_range_tags
from xau_pipeline.defs.maintenance import (
    JOB_NAME,
    MAINTENANCE_TAG,
    build_maintenance_schedule,
    dagster_maintenance,
    dagster_tables,
)
from xau_pipeline.defs.resources import TwelveDataResource
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.settings import Settings, SettingsError
from xau_pipeline_dev.testing import temporary_database
from xau_pipeline_tests.check_statuses import CHECK_PARTITION_STATUSES, statuses_by_check
from xau_pipeline_tests.conftest import NO_CREDIT_LIMITS, REPO, dagster_instance_on

DEFS = Path(__file__).with_name("checks_defs.py")
M15 = build_candle_asset(Symbol("XAU/USD"), TIMEFRAMES_BY_NAME["M15"], daily_partitions("2024-01-01"))
DAYS = ["2024-03-11", "2024-03-12", "2024-03-13", "2024-03-14", "2024-03-15"]  # Monday to Friday
FAILED_DAY = "2024-03-18"  # the next Monday: its only run fails
INSTANCE_FILES = ("dagster.yaml", "deploy/dagster.yaml")
# (A check's planned event stays only where it is the verdict a kept check execution row names: a
# check planned and never evaluated.)
DEBUG_EVENT_TYPES = {
    t.value
    for t in (
        dg.DagsterEventType.ENGINE_EVENT,
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_OUTPUT,
        dg.DagsterEventType.HANDLED_OUTPUT,
        dg.DagsterEventType.RUN_START,
        dg.DagsterEventType.RUN_SUCCESS,
    )
}
EVENT_TYPES_OF_RUN = sa.text("SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = :run GROUP BY 1")
LOG_LINES_OF_RUN = sa.text("SELECT count(*) FROM event_logs WHERE run_id = :run AND dagster_event_type IS NULL")
AGE_RUN = sa.text("UPDATE runs SET end_time = :end WHERE run_id = :run")
AGE_EVENTS = sa.text("UPDATE event_logs SET timestamp = timestamp - make_interval(days => :days) WHERE run_id = :run")
# A run still going (e.g. a long backfill): Dagster's status column as its daemon leaves it mid-run.
UNFINISH_RUN = sa.text("UPDATE runs SET status = 'STARTED', end_time = NULL WHERE run_id = :run")
ASSET_PARTITION_STATUSES = """
query Partitions($asset: AssetKeyInput!) {
  assetNodeOrError(assetKey: $asset) {
    ... on AssetNode { assetPartitionStatuses { ... on TimePartitionStatuses { ranges { startKey endKey status } } } }
  }
}
"""


# --- The private surface: Dagster's table and column names --------------------------------------


def test_the_tables_and_columns_pruned_are_dagsters_own():
    """xau_pipeline/defs/maintenance/dagster_tables.py deletes from Dagster's tables by name. When a Dagster
    upgrade renames or drops one, this fails: read the new `dagster._core.storage.*.schema` modules
    and Dagster's storage code for the rows the UI reads (materialized and failed partitions, check
    verdicts), adapt dagster_tables.py's statements and TABLE_COLUMNS, and rerun this file (its
    pruning test checks that every day and every verdict is still shown afterwards)."""
    from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata
    from dagster._core.storage.runs.schema import RunStorageSqlMetadata
    from dagster._core.storage.schedules.schema import ScheduleStorageSqlMetadata

    tables = {**SqlEventLogStorageMetadata.tables, **RunStorageSqlMetadata.tables, **ScheduleStorageSqlMetadata.tables}
    upgrade = "Dagster's schema changed: see this test's docstring for what to do on an upgrade"
    for table, columns in dagster_tables.TABLE_COLUMNS.items():
        assert table in tables, f"{upgrade} (table {table} is gone)"
        missing = set(columns) - set(tables[table].columns.keys())
        assert not missing, f"{upgrade} ({table} has no column {sorted(missing)})"
    statuses = {s.value for s in dg.DagsterRunStatus}
    assert set(dagster_tables.FINISHED_RUN_STATUSES) <= statuses, upgrade
    from dagster._core.scheduler.instigation import TickStatus

    assert set(dagster_tables.FINISHED_TICK_STATUSES) <= {s.value for s in TickStatus}, upgrade


# --- Settings and instance files ---------------------------------------------------------------


def test_the_retention_age_is_read_from_the_environment_and_checked():
    assert Settings.from_env({}).dagster_retention_days == 14
    assert Settings.from_env({"XAU_DAGSTER_RETENTION_DAYS": "30"}).dagster_retention_days == 30
    for bad in ("0", "-3", "two weeks"):
        with pytest.raises(SettingsError) as raised:
            Settings.from_env({"XAU_DAGSTER_RETENTION_DAYS": bad})
        assert raised.value.variables == ("XAU_DAGSTER_RETENTION_DAYS",)
    assert "`XAU_DAGSTER_RETENTION_DAYS`" in (REPO / "README.md").read_text()


def test_the_schedule_carries_the_age_and_ticks_away_from_the_live_runs_minutes():
    schedule = build_maintenance_schedule(Settings.from_env({"XAU_DAGSTER_RETENTION_DAYS": "21"}))
    assert schedule.job_name == JOB_NAME
    assert schedule.execution_timezone == "UTC"
    # 03:10 UTC (README), away from the candle runs' :02/:17/:32/:47 (test_schedules.SHIPPED_SCHEDULES).
    assert schedule.cron_schedule == "10 3 * * *"
    request = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=datetime.now(UTC)))
    (run,) = request.run_requests or []
    assert run.run_config["ops"]["prune_dagster_storage"]["config"]["retention_days"] == 21
    assert dagster_maintenance.tags[MAINTENANCE_TAG]


@pytest.mark.parametrize("instance_file", INSTANCE_FILES)
def test_the_instance_files_purge_ticks_turn_freshness_off_and_run_one_maintenance_at_a_time(instance_file):
    config = yaml.safe_load((REPO / instance_file).read_text())
    for kind in ("schedule", "sensor"):
        days = config["retention"][kind]["purge_after_days"]
        assert 0 < days["skipped"] <= days["failure"] <= days["success"], days
        assert days["success"] >= Settings.from_env({}).dagster_retention_days
    assert config["freshness"] == {"enabled": False}
    limits = {rule["key"]: rule["limit"] for rule in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limits[MAINTENANCE_TAG] == 1


def test_the_helm_values_purge_ticks_as_deploy_dagster_yaml_and_turn_freshness_off():
    values = yaml.safe_load((REPO / "deploy" / "k8s" / "values.yaml").read_text())
    instance = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    assert values["retention"]["enabled"] is True
    for kind in ("schedule", "sensor"):
        assert values["retention"][kind]["purgeAfterDays"] == instance["retention"][kind]["purge_after_days"]
    assert values["additionalInstanceConfig"]["freshness"] == instance["freshness"]


@pytest.fixture
def dagster_url(database_url):
    with temporary_database(database_url, "xau_test_maintenance") as url:
        yield url


def test_an_instance_of_dagster_yaml_runs_no_freshness_daemon_and_purges_ticks_as_configured(
    dagster_url, tmp_path, monkeypatch
):
    """What the daemon starts comes from the instance (`get_required_daemon_types`): the freshness
    daemon only when `freshness: enabled` is not false."""
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import TickStatus

    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("XAU_DAGSTER_PG_URL", dagster_url)
    with dg.DagsterInstance.get() as instance:
        daemons = instance.get_required_daemon_types()
        assert "SCHEDULER" in daemons and "SENSOR" in daemons
        assert "FRESHNESS_DAEMON" not in daemons
        schedule = instance.get_tick_retention_settings(InstigatorType.SCHEDULE)
        assert schedule[TickStatus.SKIPPED] == 1 and schedule[TickStatus.SUCCESS] == 14
        assert instance.get_tick_retention_settings(InstigatorType.SENSOR)[TickStatus.SKIPPED] == 1


# --- The maintenance job on a real instance ------------------------------------------------------


@pytest.fixture(params=["project", "postgres"])
def instance(request, database_url, tmp_path):
    """A Dagster instance on PostgreSQL of its own: the project's storage (dagster.yaml) or Dagster's
    own `storage: postgres:` (the Helm chart's)."""
    with dagster_instance_on(request.param, database_url, tmp_path) as (fresh, _):
        yield fresh


def ui_views(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The asset's partition statuses and its checks' per-day verdicts, read through the UI's GraphQL
    (which rebuilds the partition status cache when it was wiped)."""
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    with define_out_of_process_context(str(DEFS), None, instance) as context:
        variables = {"asset": {"path": asset_key.path}}
        partitions = execute_dagster_graphql(context, ASSET_PARTITION_STATUSES, variables)
        checks = execute_dagster_graphql(context, CHECK_PARTITION_STATUSES, variables)
    days: dict[str, str] = {}
    for status_range in partitions.data["assetNodeOrError"]["assetPartitionStatuses"]["ranges"]:
        day = datetime.fromisoformat(status_range["startKey"])
        while day.strftime("%Y-%m-%d") <= status_range["endKey"]:
            days[day.strftime("%Y-%m-%d")] = status_range["status"]
            day += timedelta(days=1)
    return days, statuses_by_check(checks.data["assetNodeOrError"])


def check_history(instance: dg.DagsterInstance, check: str, day: str) -> list[str]:
    """The runs of a check's stored executions for one day, newest first (the check page's history)."""
    from xau_pipeline.dagster_internals import partition_key_filter

    PartitionKeyFilter = partition_key_filter()

    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(M15.key, check), limit=100, partition_filter=PartitionKeyFilter(key=day)
    )
    for record in records:  # the verdict itself is kept in the execution row, its event log copy gone
        assert record.event is not None and record.event.dagster_event is not None
    return [record.run_id for record in records]


@pytest.mark.slow
def test_a_failed_ranged_run_shows_each_of_its_days_failed(instance, resources, stand_in):
    """The UI's partition view is true of a failed backfill: Dagster marks a partition failed only from
    a planned event of its own (not so under DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS)."""
    refused = TwelveDataResource(api_key="wrong-key", base_url=stand_in.url, backoff_seconds=0.01, **NO_CREDIT_LIMITS)
    failed = dg.materialize(
        [M15],
        instance=instance,
        resources={**resources, "twelvedata": refused},
        tags=partition_range_tags(DAYS[0], DAYS[2]),
        raise_on_error=False,
    )
    assert not failed.success
    partitions, _ = ui_views(instance, M15.key)
    assert {day: partitions.get(day) for day in DAYS} == dict.fromkeys(DAYS[:3], "FAILED") | dict.fromkeys(DAYS[3:])


@pytest.mark.slow
def test_maintenance_prunes_old_debug_history_and_every_day_and_verdict_is_still_shown_after_a_cache_rebuild(
    instance, resources, stand_in
):
    stand_in.configure(holes=[(datetime(2024, 3, 12, 10, tzinfo=UTC), datetime(2024, 3, 12, 11, tzinfo=UTC))])
    refetch = {"ops": {"xauusd__candles_m15": {"config": {"force_refetch": True}}}}

    def run(**kwargs) -> str:
        result = dg.materialize([M15], instance=instance, resources=resources, **kwargs)
        assert result.success
        return result.run_id

    ranged = run(tags=partition_range_tags(DAYS[0], DAYS[2]))  # Tuesday's no_gaps fails (a hole)
    stand_in.configure(holes=[])
    tuesday_again = run(partition_key=DAYS[1], run_config=refetch)  # supersedes Tuesday's day and verdicts
    thursday_first = run(partition_key=DAYS[3])
    thursday_again = run(partition_key=DAYS[3], run_config=refetch)  # leaves the first run nothing newest
    going = run(partition_key=DAYS[4])
    refused = TwelveDataResource(api_key="wrong-key", base_url=stand_in.url, backoff_seconds=0.01, **NO_CREDIT_LIMITS)
    failed = dg.materialize(
        [M15],
        instance=instance,
        resources={**resources, "twelvedata": refused},
        partition_key=FAILED_DAY,
        raise_on_error=False,
    )
    assert not failed.success
    finished = [ranged, tuesday_again, thursday_first, thursday_again, failed.run_id]

    engine = sa.create_engine(dagster_tables.storage_url(instance), poolclass=sa.pool.NullPool)
    long_ago = (datetime.now(UTC) - timedelta(days=30)).timestamp()
    with engine.begin() as connection:
        for run_id in [*finished, going]:
            connection.execute(AGE_RUN, {"end": long_ago, "run": run_id})
            connection.execute(AGE_EVENTS, {"days": 30, "run": run_id})
        connection.execute(UNFINISH_RUN, {"run": going})
        going_events = dict(connection.execute(EVENT_TYPES_OF_RUN, {"run": going}).all())
        assert DEBUG_EVENT_TYPES & set(going_events)
        for run_id in finished[:-1]:
            assert connection.execute(LOG_LINES_OF_RUN, {"run": run_id}).scalar_one() > 0

    partitions_before, checks_before = ui_views(instance, M15.key)
    assert [partitions_before.get(day) for day in DAYS] == ["MATERIALIZED"] * 5
    assert partitions_before[FAILED_DAY] == "FAILED"
    assert [checks_before["no_gaps"].get(day) for day in DAYS] == ["SUCCEEDED"] * 5
    assert set(checks_before) >= {"no_gaps", "ohlc_valid", "quarantine_empty"}

    result = dagster_maintenance.execute_in_process(
        instance=instance, run_config={"ops": {"prune_dagster_storage": {"config": {"retention_days": 14}}}}
    )
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    metadata = output.step_output_data.metadata
    assert metadata["deleted_event_logs"].value > 0 and metadata["runs_past_cutoff"].value == 5
    assert metadata["deleted_runs"].value == 1  # Thursday's first run: nothing of it is newest any more
    assert "| event_logs |" in metadata["tables"].value

    with engine.connect() as connection:
        for run_id in [ranged, tuesday_again, thursday_again]:
            kinds = dict(connection.execute(EVENT_TYPES_OF_RUN, {"run": run_id}).all())
            assert not DEBUG_EVENT_TYPES & set(kinds), (run_id, kinds)
            assert connection.execute(LOG_LINES_OF_RUN, {"run": run_id}).scalar_one() == 0
            assert kinds.get(dg.DagsterEventType.ASSET_MATERIALIZATION.value), kinds
        # The run still going keeps every event, however old.
        assert dict(connection.execute(EVENT_TYPES_OF_RUN, {"run": going}).all()) == going_events
    engine.dispose()
    assert instance.get_run_by_id(thursday_first) is None
    assert instance.get_run_by_id(ranged) is not None
    assert instance.get_run_by_id(failed.run_id) is not None  # it holds the failed day's planned event
    # Tuesday: the ranged run's superseded materialization and verdicts are gone, the newest stay.
    tuesday = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=M15.key, asset_partitions=[DAYS[1]]), limit=10
    ).records
    assert [record.run_id for record in tuesday] == [tuesday_again]
    assert check_history(instance, "no_gaps", DAYS[1]) == [tuesday_again]
    assert check_history(instance, "no_gaps", DAYS[0]) == [ranged]

    instance.wipe_asset_cached_status([M15.key])
    assert instance.get_materialized_partitions(M15.key) == set(DAYS)
    partitions_after, checks_after = ui_views(instance, M15.key)
    assert partitions_after == partitions_before
    assert checks_after == checks_before
