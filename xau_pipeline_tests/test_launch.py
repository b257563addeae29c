"""The README's run command: `python -m xau_pipeline_dev.launch run` (what `make run` starts)."""

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import psutil
import pytest
import requests

from xau_pipeline_dev import embedded_postgres
from xau_pipeline_tests.conftest import REPO, TEST_API_KEY

LAUNCH = [sys.executable, "-m", "xau_pipeline_dev.launch", "run"]
WORKSPACE_QUERY = """{
  workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
  } } }
  instance { info }
}"""


def clean_env(**overrides) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWELVE_DATA_", "XAU_", "DAGSTER_"))}
    return {**env, **overrides}


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.process
def test_run_without_a_key_says_how_to_get_one_and_exits_2(tmp_path):
    data_dir = REPO / ".pgdata" / f"test-nokey-{os.getpid()}"
    result = subprocess.run(
        LAUNCH, cwd=REPO, env=clean_env(XAU_PGDATA=str(data_dir), DAGSTER_HOME=str(tmp_path)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "TWELVE_DATA_API_KEY" in result.stderr
    assert "https://twelvedata.com/pricing" in result.stderr
    assert "export TWELVE_DATA_API_KEY=" in result.stderr
    assert "make demo" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not data_dir.exists()  # nothing was started


def install_inputs(clone: Path) -> list[str]:
    """The files the Makefile's install stamp depends on (the prerequisites of `$(STAMP):`)."""
    (rule,) = [line for line in (clone / "Makefile").read_text().splitlines() if line.startswith("$(STAMP):")]
    return rule.split(":", 1)[1].split()


def fresh_clone(tmp_path) -> Path:
    """A clone of the committed project whose install inputs look older than the venv's install stamp,
    so `make run` reuses the test's virtualenv instead of reinstalling the project from the clone
    (which would leave the virtualenv's editable installs pointing into the temporary clone)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=60)
    inputs = install_inputs(clone)
    assert "setup.py" in inputs and "pyproject.toml" in inputs, inputs
    for name in inputs:
        os.utime(clone / name, (0, 0))
    return clone


@pytest.mark.slow
@pytest.mark.process
def test_make_run_in_a_fresh_clone_starts_the_embedded_database_and_the_ui_and_stops_both(stand_in, tmp_path):
    """The README's run command in a fresh clone: no XAU_DATABASE_URL, so the embedded PostgreSQL."""
    clone = fresh_clone(tmp_path)
    data_dir = REPO / ".pgdata" / f"test-launch-{os.getpid()}"
    port, api_port = free_port(), free_port()
    env = clean_env(
        XAU_PGDATA=str(data_dir),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        XAU_UI_PORT=str(port),
        XAU_API_PORT=str(api_port),
        TWELVE_DATA_BASE_URL=stand_in.url,
        TWELVE_DATA_API_KEY=TEST_API_KEY,
    )
    log = tmp_path / "launch.log"
    stamp = Path(sys.executable).parent.parent / ".installed"
    stamp_before = stamp.stat().st_mtime_ns if stamp.exists() else None
    started = time.monotonic()
    with open(log, "wb") as out:
        make = subprocess.Popen(
            ["make", "run", f"VENV={Path(sys.executable).parent.parent}"],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    spawned: dict[int, psutil.Process] = {}  # everything the launcher started, seen while it ran
    try:
        base = f"http://127.0.0.1:{port}"
        entry, info, answered_after = None, "", None
        while time.monotonic() - started < 60 and make.poll() is None:
            spawned.update((p.pid, p) for p in launcher_children(make.pid))
            try:
                if answered_after is None and requests.get(f"{base}/server_info", timeout=2).ok:
                    answered_after = time.monotonic() - started
                if answered_after is not None:
                    data = requests.post(f"{base}/graphql", json={"query": WORKSPACE_QUERY}, timeout=5).json()["data"]
                    entry = data["workspaceOrError"]["locationEntries"][0]
                    info = data["instance"]["info"] or ""
                    if entry["loadStatus"] == "LOADED":
                        break
            except requests.RequestException:
                pass
            time.sleep(0.25)
        output = log.read_text(errors="replace")
        assert answered_after is not None, f"the UI never answered:\n{output[-3000:]}"
        assert entry is not None and entry["loadStatus"] == "LOADED", f"{entry}\n{output[-3000:]}"
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
        assert "PostgresRunStorage" in info and "PostgresEventLogStorage" in info, info[:2000]
        postmaster = int((data_dir / "cluster" / "postmaster.pid").read_text().split()[0])
        assert alive(postmaster)
        print(f"UI answered {answered_after:.1f} s after launch; code location loaded")
        health = requests.get(f"http://127.0.0.1:{api_port}/health", timeout=10)  # the HTTP API beside it
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text

        (python_launcher,) = [
            p for p in launcher_children(make.pid) if "xau_pipeline_dev.launch" in " ".join(p.cmdline())
        ]
        python_launcher.send_signal(signal.SIGTERM)  # what Ctrl-C in the terminal would reach
        assert make.wait(timeout=90) == 0, log.read_text(errors="replace")[-3000:]
        output = log.read_text(errors="replace")
        assert "[xau_pipeline] Dagster stopped" in output and "[xau_pipeline] embedded PostgreSQL stopped" in output
        assert "[xau_pipeline] HTTP API stopped" in output
        assert not alive(postmaster)
        assert not [p.cmdline() for p in spawned.values() if running(p)]  # dagster dev, webserver, daemon, code server
        # The test's virtualenv was used as it is, not reinstalled from the clone.
        assert (stamp.stat().st_mtime_ns if stamp.exists() else None) == stamp_before
    finally:
        if make.poll() is None:
            make.kill()
            make.wait(10)
        for process in spawned.values():
            if running(process):
                process.kill()
        embedded_postgres.remove(data_dir)


def launcher_children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def assert_run_console_is_info_only(capfd) -> None:
    """A run on the instance dagster.yaml configures prints INFO lines, not Dagster's DEBUG line per
    event, and still stores every event."""
    import dagster as dg

    @dg.asset
    def probe(context: dg.AssetExecutionContext) -> None:
        context.log.info("probe says hello")

    capfd.readouterr()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([probe], instance=instance)
        stored = {e.dagster_event.event_type_value for e in instance.all_logs(result.run_id) if e.dagster_event}
    console = capfd.readouterr()
    printed = console.out + console.err
    assert "probe says hello" in printed
    assert " - DEBUG - " not in printed, printed[:2000]
    assert {"STEP_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION"} <= stored


def test_a_given_database_holds_the_candles_and_dagster_in_its_own_schema(database_url, monkeypatch, tmp_path, capfd):
    import shutil
    from contextlib import ExitStack

    import dagster as dg
    import sqlalchemy as sa

    from xau_pipeline.store.candle_store import CandleStore
    from xau_pipeline_dev import launch

    monkeypatch.setenv("XAU_DATABASE_URL", database_url.replace("postgresql+psycopg2://", "postgresql://"))
    monkeypatch.delenv("XAU_DAGSTER_PG_URL", raising=False)
    with ExitStack() as stack:
        candles_url, dagster_url = launch.prepare_databases(REPO, stack)
    assert candles_url == database_url
    assert dagster_url.startswith(database_url + "?options=") and "search_path" in dagster_url

    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("XAU_DAGSTER_PG_URL", dagster_url)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_runs() == []
    CandleStore(candles_url).migrate()
    assert_run_console_is_info_only(capfd)
    with sa.create_engine(candles_url, poolclass=sa.pool.NullPool).connect() as connection:
        tables = set(connection.execute(sa.text(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_schema IN ('public', 'dagster')"
        )).scalars())  # fmt: skip
    assert {"public.candles", "dagster.runs", "dagster.event_logs"} <= tables
    assert "public.runs" not in tables


# ---- make demo -----------------------------------------------------------------------------------

DEMO_VARIABLES = ("TWELVE_DATA_BASE_URL", "TWELVE_DATA_API_KEY", "XAU_HISTORY_START", "XAU_DEMO_STANDIN_PORT")


def forget_on_teardown(monkeypatch, *names: str) -> None:
    """Each of `names` unset now and put back as it was after the test (the launcher sets them itself)."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def xau_pipeline(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The CLI as a newcomer runs it from the project folder in a second shell: no setting in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "xau_pipeline.interfaces.cli", *args],
        cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.process
def test_the_cli_beside_make_demo_uses_the_demos_settings(embedded_postgres, tmp_path, monkeypatch):
    """`status` and `doctor` run from the folder of a `make demo` see its history start and stand-in."""
    from contextlib import ExitStack

    import sqlalchemy as sa

    from xau_pipeline.store.candle_store import CandleStore
    from xau_pipeline.store.database import EMBEDDED_CANDLE_DATABASE
    from xau_pipeline_dev import launch

    folder = tmp_path / "project"
    data_dir = folder / ".pgdata"
    data_dir.mkdir(parents=True)
    # The embedded database as the demo leaves it: migrated, its port in .pgdata/port.
    CandleStore(embedded_postgres.ensure_database(EMBEDDED_CANDLE_DATABASE)).migrate()
    (data_dir / "port").write_text(f"{embedded_postgres.port}\n")
    forget_on_teardown(monkeypatch, *DEMO_VARIABLES, "XAU_PGDATA")
    monkeypatch.setenv("XAU_DEMO_STANDIN_PORT", str(free_port()))
    monkeypatch.setenv("XAU_DEMO_PUBLICATION_DELAY", "0")
    try:
        with ExitStack() as stack:
            launch.start_demo(stack)
            written = launch.share_settings(data_dir, "demo")
            base_url, history_start = os.environ["TWELVE_DATA_BASE_URL"], os.environ["XAU_HISTORY_START"]
            assert base_url.startswith("http://127.0.0.1:") and history_start != "2024-01-01"
            assert launch.DEMO_KEY not in written.read_text()  # no key, not even the stand-in's

            status = xau_pipeline("status", cwd=folder)
            assert status.returncode == 0, status.stderr
            assert (
                f"`make demo` running from this folder (.pgdata/settings.json): Twelve Data at {base_url}"
                in status.stdout
            )
            assert f"history since {history_start}:" in status.stdout, status.stdout

            doctor = xau_pipeline("doctor", cwd=folder)
            assert doctor.returncode == 0, doctor.stdout + doctor.stderr
            assert (
                "ok    api key: the `make demo` running from this folder uses the stand-in's demo key" in doctor.stdout
            )
            assert f"ok    api: {base_url} reachable" in doctor.stdout
            assert f"ok    history: since {history_start}:" in doctor.stdout
            assert "api.twelvedata.com" not in doctor.stdout

            # A variable set in the shell wins over the demo's.
            own = xau_pipeline("status", cwd=folder, XAU_HISTORY_START="2025-06-02")
            assert "history since 2025-06-02:" in own.stdout, own.stdout + own.stderr
    finally:
        engine = sa.create_engine(embedded_postgres.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{EMBEDDED_CANDLE_DATABASE}" WITH (FORCE)'))
        engine.dispose()


@pytest.mark.slow
def test_the_demos_days_are_stored_by_a_run_that_judges_each_of_them(
    database_url, store, stand_in, tmp_path, monkeypatch
):
    """Every day `make demo` stores has its checks' verdict in the check's Partitions tab, as after a backfill."""
    from datetime import UTC, date, datetime, timedelta

    import dagster as dg
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    from xau_pipeline.market.timeframes import TIMEFRAMES
    from xau_pipeline.settings import Settings
    from xau_pipeline_dev import launch
    from xau_pipeline_dev.testing import temporary_database
    from xau_pipeline_tests.check_statuses import CHECK_PARTITION_STATUSES, statuses_by_check

    first_day = launch.demo_first_day().date()
    today = datetime.now(UTC).date()
    with temporary_database(database_url, "xau_test_dagster") as dagster_url:
        # The environment `make demo` gives the pipeline, on the test's databases and stand-in.
        for name, value in {
            "XAU_DATABASE_URL": store.url,
            "XAU_DAGSTER_PG_URL": dagster_url,
            "TWELVE_DATA_BASE_URL": stand_in.url,
            "TWELVE_DATA_API_KEY": TEST_API_KEY,
            "XAU_HISTORY_START": first_day.isoformat(),
            "DAGSTER_HOME": str(tmp_path),
            "XAU_SYMBOLS": "XAU/USD",
        }.items():
            monkeypatch.setenv(name, value)
        settings = Settings.from_env()
        launch.prepare_dagster_home(REPO, settings)
        launch.fill_demo_data(settings)

        with dg.DagsterInstance.get() as instance:
            (run,) = instance.get_runs()
            assert run.tags[launch.DEMO_TAG] == "seed"
            with define_out_of_process_context(str(REPO / "xau_pipeline" / "definitions.py"), None, instance) as ctx:
                days = [(first_day + timedelta(days=n)).isoformat() for n in range((today - first_day).days + 1)]
                assert len(days) == launch.DEMO_DAYS + 1
                for tf in TIMEFRAMES:
                    path = ["xauusd", tf.key_suffix]
                    result = execute_dagster_graphql(ctx, CHECK_PARTITION_STATUSES, {"asset": {"path": path}})
                    no_gaps = statuses_by_check(result.data["assetNodeOrError"])["no_gaps"]
                    assert [day for day in days if day not in no_gaps] == [], (tf.name, no_gaps)
                    # Judged: passed, or skipped where no bar was expected (a Saturday); none failed.
                    closed = {no_gaps[day] for day in days if date.fromisoformat(day) < today}
                    assert closed <= {"SUCCEEDED", "SKIPPED"} and "SUCCEEDED" in closed, (tf.name, no_gaps)
