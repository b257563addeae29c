"""The production topology, without containers: code server, webserver and daemon as separate
processes over gRPC, each run in a process of its own, PostgreSQL for all state, the stand-in for
Twelve Data; and what survives a code server restart, a daemon SIGKILL and a run worker SIGKILL.

One set of processes serves the whole module; each test stands alone on it (its own days of the
history, or the module's `backfill` fixture), in any order. All of it is derived from deploy/
(xau_pipeline_tests/topology.py).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import psutil
import pytest
import sqlalchemy as sa

from xau_pipeline.defs.automation.schedules import AFTER_CLOSE
from xau_pipeline.store.database import normalize_url
from xau_pipeline_dev.testing import temporary_database
from xau_pipeline_tests.conftest import DEFAULT_TEST_SERVER, NO_PUBLICATION_DELAY, TEST_API_KEY, _server_answers
from xau_pipeline_tests.launch_graphql import BACKFILL_STATUS, LAUNCH_BACKFILL, LAUNCH_RUN
from xau_pipeline_tests.topology import Topology, deploy_instance, local_instance, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.process, pytest.mark.usefixtures("away_from_midnight")]

TODAY = datetime.now(UTC).date()
HISTORY_START = TODAY - timedelta(days=200)
M15 = ["xauusd", "candles_m15"]
ALL_ASSETS = [["xauusd", f"candles_{tf}"] for tf in ("m15", "h1", "h4", "d1")]
TIMEFRAMES = (("15min", "M15"), ("1h", "H1"), ("4h", "H4"), ("1day", "D1"))  # Twelve Data interval, ours
RUN_TIMEOUT = 90
TERMINAL_RUN = ("SUCCESS", "FAILURE", "CANCELED")


def day(offset: int) -> str:
    return (HISTORY_START + timedelta(days=offset)).isoformat()


@pytest.fixture(scope="module")
def databases(request):
    """Two databases of the module's own, as compose has them: the candles and Dagster's state."""
    server = normalize_url(os.environ.get("XAU_TEST_DATABASE_URL") or DEFAULT_TEST_SERVER)
    if not _server_answers(server):
        server = request.getfixturevalue("embedded_postgres").url
    with (
        temporary_database(server, "xau_topology_candles") as candles,
        temporary_database(server, "xau_topology_dagster") as dagster,
    ):
        yield candles, dagster


@pytest.fixture(scope="module")
def stand_in(session_stand_in):
    session_stand_in.restore_defaults(credits_per_minute=None, credits_per_day=None, **NO_PUBLICATION_DELAY)
    yield session_stand_in
    session_stand_in.restore_defaults(credits_per_minute=None, credits_per_day=None, **NO_PUBLICATION_DELAY)


@pytest.fixture(scope="module")
def topology(databases, stand_in, tmp_path_factory):
    candles_url, dagster_url = databases
    home = tmp_path_factory.mktemp("dagster_home")
    topology = Topology(
        home,
        values={"XAU_PG_PASSWORD": "", "TWELVE_DATA_API_KEY": TEST_API_KEY},
        local={"XAU_DATABASE_URL": candles_url, "XAU_DAGSTER_PG_URL": dagster_url},
        extra_env={
            "TWELVE_DATA_BASE_URL": stand_in.url,
            # A 24/7 calendar (the stand-in serves weekend bars): no tick is skipped for a closed market.
            "XAU_SYMBOLS": "XAU/USD:24x7",
            "XAU_HISTORY_START": HISTORY_START.isoformat(),
            "XAU_CATCH_UP": "off",
            "TWELVE_DATA_CREDITS_PER_MINUTE": "10000",
            "TWELVE_DATA_CREDITS_PER_DAY": "100000",
        },
    )
    try:
        topology.code.start()
        topology.webserver.start()
        topology.daemon.start()
        wait_for("the webserver to load the code location over gRPC", topology.loaded_location, 90, topology.logs)
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="module")
def candles(databases):
    engine = sa.create_engine(databases[0], poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def instance(databases, topology):
    """The topology's Dagster instance, opened from the test process (to read and rewind schedule state)."""
    import dagster as dg

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XAU_DAGSTER_PG_URL", databases[1])
        with dg.DagsterInstance.from_config(str(topology.home)) as opened:
            yield opened


class Backfill(NamedTuple):
    id: str
    first: str
    last: str
    runs: list[dict]
    calls: list[sa.Row]  # the api_calls rows of kind `backfill` stored while its runs ran


@pytest.fixture(scope="module")
def backfill(topology, candles) -> Backfill:
    """A backfill of the four series over three days launched over GraphQL, its runs all ended with
    success: launched by the first test that asks for it."""
    first, last = day(150), day(152)
    calls_before = len(ledger(candles))
    backfill_id = launch_backfill(topology, ALL_ASSETS, first, last)
    runs = wait_for_backfill_runs(topology, backfill_id)
    # The backfill's calls (a schedule tick may fetch the newest bars meanwhile).
    calls = [row for row in ledger(candles)[calls_before:] if row.kind == "backfill"]
    return Backfill(backfill_id, first, last, runs, calls)


# --- helpers -------------------------------------------------------------------------------------


def launch_backfill(topology: Topology, assets: list[list[str]], first: str, last: str) -> str:
    launched = topology.graphql(
        LAUNCH_BACKFILL,
        params={
            "partitionsByAssets": [
                {"assetKey": {"path": key}, "partitions": {"range": {"start": first, "end": last}}} for key in assets
            ]
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def backfill_runs(topology: Topology, backfill_id: str) -> list[dict]:
    return topology.graphql(BACKFILL_RUNS, id=backfill_id)["runsOrError"]["results"]


def wait_for_backfill_runs(topology: Topology, backfill_id: str, timeout: float = RUN_TIMEOUT) -> list[dict]:
    """Until the backfill's runs have all ended (the backfill's own status follows at the backfill
    daemon's next iteration, every 30 s in Dagster); all of them must have succeeded."""

    def ended():
        runs = backfill_runs(topology, backfill_id)
        return runs if runs and all(run["status"] in TERMINAL_RUN for run in runs) else None

    runs = wait_for(f"the runs of backfill {backfill_id}", ended, timeout, topology.logs)
    assert all(run["status"] == "SUCCESS" for run in runs), (runs, topology.logs())
    return runs


def launch_range_run(topology: Topology, assets: list[list[str]], first: str, last: str) -> str:
    """One run over a range of days, as a single-run backfill launches it; queued for the daemon."""
    location = topology.loaded_location()
    assert location is not None
    launched = topology.graphql(
        LAUNCH_RUN,
        params={
            "selector": {
                "repositoryLocationName": location["name"],
                "repositoryName": "__repository__",
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": key} for key in assets],
            },
            "executionMetadata": {
                "tags": [
                    {"key": "dagster/asset_partition_range_start", "value": first},
                    {"key": "dagster/asset_partition_range_end", "value": last},
                ]
            },
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def run_status(topology: Topology, run_id: str) -> dict:
    return topology.graphql(RUN_STATUS, id=run_id)["runOrError"]


def wait_for_run(topology: Topology, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
    def ended():
        run = run_status(topology, run_id)
        return run if run["status"] in TERMINAL_RUN else None

    return wait_for(f"run {run_id} to end", ended, timeout, topology.logs)


def run_messages(topology: Topology, run_id: str) -> list[str]:
    logs = topology.graphql(RUN_LOGS, id=run_id)["logsForRun"]
    return [event["message"] for event in logs["events"]]


def worker_pid(topology: Topology, run_id: str) -> int | None:
    """The pid of the run's worker process, from its "Started process for run" event."""
    for message in run_messages(topology, run_id):
        if found := re.search(r"Started process for run \(pid: (\d+)\)", message):
            return int(found.group(1))
    return None


def ledger(candles: sa.Engine, run_id: str | None = None, outcome: str | None = None) -> list[sa.Row]:
    """The api_calls ledger, oldest first; of one run, with one outcome (`pending`)."""
    with candles.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT * FROM api_calls WHERE (:run_id IS NULL OR run_id = :run_id)"
                    " AND (:outcome IS NULL OR outcome = :outcome) ORDER BY id"
                ),
                {"run_id": run_id, "outcome": outcome},
            )
        )


def stored_windows(candles: sa.Engine, run_id: str) -> list[sa.Row]:
    return [row for row in ledger(candles, run_id=run_id) if row.outcome.startswith("ok")]


def stored_bars(candles: sa.Engine, timeframe: str, first: str, last: str) -> int:
    with candles.connect() as connection:
        return connection.execute(
            sa.text(
                'SELECT count(*) FROM candles WHERE timeframe = :tf AND "timestamp" >= :start AND "timestamp" < :end'
            ),
            {"tf": timeframe, "start": date.fromisoformat(first), "end": date.fromisoformat(last) + timedelta(days=1)},
        ).scalar_one()


def served_bars(stand_in, interval: str, first: str, last: str) -> int:
    """How many closed bars the stand-in has in [first, last] (what a complete range stores)."""
    start = datetime.fromisoformat(first).replace(tzinfo=UTC)
    end = datetime.fromisoformat(last).replace(tzinfo=UTC) + timedelta(days=1)
    return len(stand_in.bars("XAU/USD", interval, start, end))


def time_series_windows(stand_in) -> list[tuple[str, str, str]]:
    return [
        (r.params["interval"], r.params["start_date"], r.params["end_date"])
        for r in stand_in.requests
        if r.path == "/time_series"
    ]


def paid_twice(candles: sa.Engine) -> list[tuple]:
    """Windows whose answer was stored more than once: credits paid twice for the same bars."""
    stored = Counter(
        (row.interval, row.window_start, row.window_end) for row in ledger(candles) if row.outcome.startswith("ok")
    )
    return [window for window, count in stored.items() if count > 1]


def schedule_for(topology: Topology, asset_path: list[str]) -> dict:
    """The one schedule that targets the asset (looked up, not named: names may change)."""
    repositories = topology.graphql(SCHEDULES)["repositoriesOrError"]["nodes"]
    schedules = [
        schedule
        for repository in repositories
        for schedule in repository["schedules"]
        if asset_path in [key["path"] for key in (schedule["assetSelection"] or {}).get("assetKeys", [])]
    ]
    assert len(schedules) == 1, schedules
    return schedules[0]


# --- the tests, on one topology, each standing alone -----------------------------------------


def test_the_instance_is_deploy_dagster_yaml_with_the_default_run_launcher(topology):
    config, shipped = local_instance(), deploy_instance()
    assert config["run_launcher"]["class"] == "DefaultRunLauncher"
    assert config["run_monitoring"] == {**shipped["run_monitoring"], "poll_interval_seconds": 1}
    assert config["run_monitoring"]["enabled"] is True
    unchanged = set(shipped) - {"run_launcher", "run_monitoring"}
    assert {key: config[key] for key in unchanged} == {key: shipped[key] for key in unchanged}
    info = topology.graphql("{ instance { info runLauncher { name } } }")["instance"]
    assert info["runLauncher"]["name"] == "DefaultRunLauncher"
    assert "PostgresRunStorage" in info["info"] and "PostgresScheduleStorage" in info["info"]


def test_a_backfill_launched_over_graphql_stores_its_range(backfill, stand_in, candles):
    for interval, timeframe in TIMEFRAMES:
        expected = served_bars(stand_in, interval, backfill.first, backfill.last)
        assert expected > 0
        assert stored_bars(candles, timeframe, backfill.first, backfill.last) == expected, timeframe
    assert len(backfill.calls) == 4, backfill.calls  # one window per series: the minimum
    assert all(row.outcome.startswith("ok") for row in backfill.calls), backfill.calls
    assert {row.run_id for row in backfill.calls} <= {run["runId"] for run in backfill.runs}


def test_the_daemon_killed_mid_run_loses_no_run_no_tick_and_pays_no_credit_twice(topology, stand_in, candles, instance):
    from dagster._core.scheduler.instigation import ScheduleInstigatorData
    from dagster._utils.schedules import get_latest_completed_cron_tick

    schedule = schedule_for(topology, M15)

    def its_state():
        return [s for s in instance.all_instigator_state() if s.instigator_name == schedule["name"]]

    # The daemon records a schedule's state at its first look at it.
    (state,) = wait_for(f"the daemon to record {schedule['name']}", its_state, 60, topology.logs)
    first, last = day(170), day(172)
    stand_in.configure(delay_seconds=1.5)
    try:
        in_flight = launch_range_run(topology, ALL_ASSETS, first, last)
        wait_for(
            "a call of the run in flight",
            lambda: ledger(candles, run_id=in_flight, outcome="pending"),
            60,
            topology.logs,
        )
        topology.daemon.kill()  # SIGKILL: no shutdown of its own
        queued = launch_range_run(topology, [M15], day(175), day(175))  # queued while no daemon runs the queue

        # While it is down, a close passes: the M15 schedule's cursor is put back before the latest
        # tick time, which is what a daemon down across that tick leaves in the schedule storage.
        tick_time = get_latest_completed_cron_tick(schedule["cronSchedule"], datetime.now(UTC), "UTC")
        (state,) = its_state()
        rewound = tick_time.timestamp() - 60
        instance.update_instigator_state(
            state.with_data(ScheduleInstigatorData(state.instigator_data.cron_schedule, rewound, rewound))
        )
        topology.daemon.start()
        assert wait_for_run(topology, in_flight)["status"] == "SUCCESS", topology.logs()
    finally:
        stand_in.configure(delay_seconds=0.0)
    for interval, timeframe in TIMEFRAMES:
        assert stored_bars(candles, timeframe, first, last) == served_bars(stand_in, interval, first, last), timeframe
    assert wait_for_run(topology, queued)["status"] == "SUCCESS", topology.logs()
    assert stored_bars(candles, "M15", day(175), day(175)) == served_bars(stand_in, "15min", day(175), day(175))

    def the_missed_tick():
        ticks = topology.graphql(SCHEDULE_TICKS, name=schedule["name"], **repository_selector(topology))
        ticks = ticks["scheduleOrError"]["scheduleState"]["ticks"]
        found = [t for t in ticks if abs(t["timestamp"] - tick_time.timestamp()) < 1 and t["status"] == "SUCCESS"]
        return found[0] if found else None

    tick = wait_for(f"the {tick_time:%H:%M} tick of {schedule['name']}", the_missed_tick, 60, topology.logs)
    (tick_run_id,) = tick["runIds"]
    assert wait_for_run(topology, tick_run_id)["status"] == "SUCCESS", topology.logs()
    bar_open = tick_time - timedelta(minutes=15) - AFTER_CLOSE  # the bar that closed AFTER_CLOSE before the tick
    with candles.connect() as connection:
        assert (
            connection.execute(
                sa.text("SELECT count(*) FROM candles WHERE timeframe = 'M15' AND \"timestamp\" = :t"), {"t": bar_open}
            ).scalar_one()
            == 1
        )
    assert paid_twice(candles) == []
    assert len(ledger(candles)) == len(time_series_windows(stand_in))  # every paid call is in the ledger, once


def test_a_run_worker_killed_is_marked_failed_and_the_rerun_pays_only_for_what_is_missing(topology, stand_in, candles):
    first, last = day(0), day(110)  # three M15 windows of 5000 bars
    stand_in.configure(delay_seconds=1.0)
    try:
        run_id = launch_range_run(topology, [M15], first, last)

        def mid_call_after_a_stored_window():
            calls = ledger(candles, run_id=run_id)
            done = any(row.outcome.startswith("ok") for row in calls)
            return done and any(row.outcome == "pending" for row in calls)

        wait_for("a window stored and the next call in flight", mid_call_after_a_stored_window, 60, topology.logs)
        pid = worker_pid(topology, run_id)
        assert pid is not None
        psutil.Process(pid).kill()  # SIGKILL
        failed = wait_for_run(topology, run_id, timeout=30)
    finally:
        stand_in.configure(delay_seconds=0.0)
    messages = run_messages(topology, run_id)
    assert failed["status"] == "FAILURE", (failed, messages)
    # With the default run launcher it is the code server, whose child the worker is, that sees it
    # die (Dagster's run monitoring asks the launcher, and this one cannot check a worker's health).
    assert any("terminated by signal 9 (SIGKILL)" in m for m in messages), messages[-8:]
    stored_before = {(r.window_start, r.window_end) for r in stored_windows(candles, run_id)}

    rerun = topology.graphql(REEXECUTE, params={"parentRunId": run_id, "strategy": "FROM_FAILURE"})[
        "launchRunReexecution"
    ]
    assert rerun["__typename"] == "LaunchRunSuccess", (rerun, messages)
    rerun_id = rerun["run"]["runId"]
    assert wait_for_run(topology, rerun_id)["status"] == "SUCCESS", topology.logs()
    (lost,) = [row for row in ledger(candles, run_id=run_id) if not row.outcome.startswith("ok")]
    assert lost.outcome.startswith("lost"), lost  # settled by the rerun; its credit still counted
    rerun_calls = {(r.window_start, r.window_end) for r in ledger(candles, run_id=rerun_id)}
    assert not rerun_calls & stored_before, (rerun_calls, stored_before)  # nothing stored is paid again
    assert (lost.window_start, lost.window_end) in rerun_calls
    assert stored_bars(candles, "M15", first, last) == served_bars(stand_in, "15min", first, last)
    assert paid_twice(candles) == []


def test_the_backfill_is_marked_complete_by_the_backfill_daemon(topology, backfill):
    def completed():
        status = topology.graphql(BACKFILL_STATUS, id=backfill.id)["partitionBackfillOrError"]
        return status if status["status"] != "REQUESTED" else None

    status = wait_for("the backfill's status", completed, 45, topology.logs)
    assert status["status"] == "COMPLETED_SUCCESS", status


def test_the_code_server_restarted_the_webserver_reconnects_and_the_next_run_uses_the_new_process(
    topology, stand_in, candles
):
    before = topology.loaded_location()
    assert before is not None
    old = topology.code.process
    topology.code.stop()
    assert old is not None and old.poll() is not None
    topology.code.start()

    def reconnected():
        entry = topology.loaded_location()
        return entry if entry and entry["updatedTimestamp"] > before["updatedTimestamp"] else None

    wait_for("the webserver to reload the restarted code server", reconnected, 60, topology.logs)

    stand_in.configure(delay_seconds=2.0)  # keeps the run's worker alive long enough to look at it
    try:
        run_id = launch_range_run(topology, [M15], day(160), day(160))
        pid = wait_for("the run's worker to start", lambda: worker_pid(topology, run_id), 60, topology.logs)
        ancestors = [p.pid for p in psutil.Process(pid).parents()]
    finally:
        stand_in.configure(delay_seconds=0.0)
    assert topology.code.pid in ancestors, (pid, ancestors, topology.code.pid)
    assert old.pid not in ancestors
    assert wait_for_run(topology, run_id)["status"] == "SUCCESS", topology.logs()
    assert stored_bars(candles, "M15", day(160), day(160)) == served_bars(stand_in, "15min", day(160), day(160))


def repository_selector(topology: Topology) -> dict:
    entry = topology.loaded_location()
    assert entry is not None
    return {"location": entry["name"], "repository": "__repository__"}


BACKFILL_RUNS = """
query BackfillRuns($id: String!) {
  runsOrError(filter: { tags: [{ key: "dagster/backfill", value: $id }] }) {
    __typename ... on Runs { results { runId status } }
  }
}
"""
RUN_STATUS = "query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runId status } } }"
RUN_LOGS = """
query Logs($id: ID!) {
  logsForRun(runId: $id) { __typename ... on EventConnection { events { __typename ... on MessageEvent { message } } } }
}
"""
REEXECUTE = """
mutation Reexecute($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
SCHEDULES = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { schedules {
  name cronSchedule assetSelection { assetKeys { path } }
} } } } }
"""
SCHEDULE_TICKS = """
query Ticks($location: String!, $repository: String!, $name: String!) {
  scheduleOrError(scheduleSelector: {
    repositoryLocationName: $location, repositoryName: $repository, scheduleName: $name
  }) {
    __typename
    ... on Schedule { scheduleState { ticks(limit: 10) { timestamp status runIds skipReason } } }
  }
}
"""
