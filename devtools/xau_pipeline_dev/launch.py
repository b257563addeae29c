"""`python -m xau_pipeline_dev.launch run|demo`: what `make run` and `make demo` start.

run   Start the Dagster UI and daemon (`dagster dev`) on 127.0.0.1:3000 (XAU_UI_HOST, XAU_UI_PORT),
      and the read-only HTTP API (`xau-pipeline serve`) on 127.0.0.1:8000 (XAU_API_HOST, XAU_API_PORT).
      Without XAU_DATABASE_URL, an embedded PostgreSQL (files in <project>/.pgdata, or XAU_PGDATA)
      holds the candles (database `xau`) and Dagster's runs, events and schedules (database
      `dagster`). With XAU_DATABASE_URL, that database holds both, Dagster's in its own schema
      `dagster`, unless XAU_DAGSTER_PG_URL names another. Needs TWELVE_DATA_API_KEY.
demo  The same, offline: a Twelve Data stand-in in this process (127.0.0.1:8765, key `demo-key`,
      the free plan's limits, each bar published 18-120 s after its close and now and then later:
      XAU_DEMO_PUBLICATION_DELAY, XAU_DEMO_BEFORE_PUBLICATION) and the last three weeks of every
      timeframe stored first, by one run of the candle assets (their checks judging each day); the
      partitions start with those three weeks (unless XAU_HISTORY_START says otherwise), so the
      history catch-up finds no history to fetch on the first start.

Either writes the settings it runs with, none secret, beside its embedded database's port
(.pgdata/settings.json), for the command line run from the same folder (xau_pipeline.launch_settings).

Ctrl-C or SIGTERM stops Dagster, then the API, then the embedded PostgreSQL. Exit status 2: configuration.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, closing, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from xau_pipeline import launch_settings
from xau_pipeline.defs.candles.twelvedata_pool import POOL, with_plan_limits
from xau_pipeline.settings import Settings, SettingsError, apply_dagster_environment, shared_settings
from xau_pipeline.store.candle_store import CandleStore, StoreUnavailableError
from xau_pipeline.store.database import embedded_data_dir

EXIT_CONFIG = 2
EXIT_FAILURE = 1
DEMO_PORT = 8765
DEMO_KEY = "demo-key"
DEMO_DAYS = 21
# Tags the run that stores the demo's data, so the UI's run list says what it was.
DEMO_TAG = "xau_pipeline/demo"
DAGSTER_SCHEMA = "dagster"
SHUTDOWN_GRACE_SECONDS = 60

NO_KEY_MESSAGE = """\
TWELVE_DATA_API_KEY is not set: the pipeline needs a Twelve Data API key to fetch candles.
  - Get a free key at https://twelvedata.com/pricing (8 credits a minute, 800 a day), then
      export TWELVE_DATA_API_KEY=your-key
      make run
  - Or try it offline against the local Twelve Data stand-in, with three weeks of demo data:
      make demo
"""


class LaunchError(Exception):
    """A problem to report in one message, with an exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILURE):
        super().__init__(message)
        self.status = status


def say(message: str) -> None:
    print(f"[xau_pipeline] {message}", flush=True)


def project_root() -> Path:
    """The folder holding workspace.yaml: the current one when started from the project, else the package's."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (candidate / "workspace.yaml").exists() and (candidate / "dagster.yaml").exists():
            return candidate.resolve()
    raise LaunchError("cannot find workspace.yaml and dagster.yaml: run this from the project folder", EXIT_CONFIG)


def _check_port_free(host: str, port: int) -> None:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise LaunchError(
                f"cannot serve the UI on {host}:{port} ({exc.strerror}): is another `make run` running? "
                "Stop it, or set XAU_UI_PORT to another port."
            ) from None


# ---- databases ---------------------------------------------------------------------------------


def _with_schema(url: str, schema: str) -> str:
    """`url` with every connection's search_path set to `schema` (psycopg2 `options`)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    existing = parsed.query.get("options")
    options = " ".join(filter(None, [existing if isinstance(existing, str) else None, f"-csearch_path={schema}"]))
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def _ensure_schema(url: str, schema: str) -> None:
    import sqlalchemy as sa

    from xau_pipeline.store.database import safe_url

    engine = sa.create_engine(url, connect_args={"connect_timeout": 10}, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    except sa.exc.OperationalError as exc:
        raise LaunchError(f"cannot reach the database at {safe_url(url)}: {str(exc.orig).strip()}") from None
    except sa.exc.ProgrammingError as exc:
        raise LaunchError(
            f"cannot create schema {schema!r} for Dagster in {safe_url(url)} ({str(exc.orig).strip()}); "
            "set XAU_DAGSTER_PG_URL to a database Dagster may use",
            EXIT_CONFIG,
        ) from None
    finally:
        engine.dispose()


def prepare_databases(root: Path, stack: ExitStack) -> tuple[str, str]:
    """(candle URL, Dagster storage URL), starting the embedded PostgreSQL when no database is configured."""
    from xau_pipeline.store.database import EMBEDDED_CANDLE_DATABASE, normalize_url, safe_url

    try:
        dagster_url = normalize_url(os.environ["XAU_DAGSTER_PG_URL"]) if os.environ.get("XAU_DAGSTER_PG_URL") else None
        candles_url = normalize_url(os.environ["XAU_DATABASE_URL"]) if os.environ.get("XAU_DATABASE_URL") else None
    except ValueError as exc:
        raise LaunchError(str(exc), EXIT_CONFIG) from None

    if candles_url is None:
        from xau_pipeline_dev import embedded_postgres

        data_dir = embedded_data_dir(os.environ, root)
        started = time.perf_counter()
        try:
            server = embedded_postgres.start(data_dir)
        except embedded_postgres.EmbeddedPostgresError as exc:
            raise LaunchError(str(exc)) from None
        stack.callback(_stop_embedded, server)
        candles_url = server.ensure_database(EMBEDDED_CANDLE_DATABASE)
        if dagster_url is None:
            dagster_url = server.ensure_database("dagster")
        say(
            f"embedded PostgreSQL ready in {time.perf_counter() - started:.1f} s on 127.0.0.1:{server.port} "
            f"(files in {server.data_dir}; set XAU_DATABASE_URL to use your own server)"
        )
    elif dagster_url is None:
        # One database for both: Dagster's tables (and its own Alembic version table) in schema `dagster`.
        _ensure_schema(candles_url, DAGSTER_SCHEMA)
        dagster_url = _with_schema(candles_url, DAGSTER_SCHEMA)
    say(f"candles in {safe_url(candles_url)}; Dagster's runs and events in {safe_url(dagster_url)}")
    return candles_url, dagster_url


def share_settings(data_dir: Path, mode: str) -> Path:
    """Writes the settings the pipeline runs with (none secret) beside the embedded database's port,
    where the command line run from this folder reads them (xau_pipeline.launch_settings)."""
    api_key = "the stand-in's demo key" if mode == "demo" else "TWELVE_DATA_API_KEY, set where `make run` runs"
    data_dir.mkdir(parents=True, exist_ok=True)
    return launch_settings.write(data_dir, f"make {mode}", api_key, shared_settings())


def _stop_embedded(server) -> None:
    server.stop()
    say("embedded PostgreSQL stopped")


def prepare_dagster_home(root: Path, settings: Settings) -> Path:
    """DAGSTER_HOME with the project's dagster.yaml, its `twelvedata` pool sized for the plan's credits."""
    home = Path(os.environ.get("DAGSTER_HOME") or root / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    text, limits = with_plan_limits((root / "dagster.yaml").read_text(), settings.budget.per_minute)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    say(
        f"pool {POOL}: {limits.twelvedata} run(s) at a time, {limits.catch_up} of them catch-up "
        f"({settings.budget.per_minute} credits a minute)"
    )
    return home


def load_settings() -> Settings:
    """The pipeline's settings, checked before anything runs: one line for any that cannot work."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise LaunchError(str(exc), EXIT_CONFIG) from None


def migrate_candle_database(settings: Settings) -> None:
    """The one migration at start-up (under PostgreSQL's advisory lock, so concurrent starts are safe)."""
    try:
        revision = CandleStore(settings.database_url).migrate()
    except StoreUnavailableError as exc:
        raise LaunchError(str(exc)) from None
    say(f"candle database schema at revision {revision}")


# ---- demo ----------------------------------------------------------------------------------------


def demo_publication() -> dict[str, Any]:
    """The stand-in's publication settings for `make demo`: XAU_DEMO_PUBLICATION_DELAY (MIN,MAX seconds
    after each close, 0 for none) and XAU_DEMO_BEFORE_PUBLICATION (absent or provisional)."""
    import argparse

    from xau_pipeline_dev.twelvedata_standin.__main__ import seconds_range
    from xau_pipeline_dev.twelvedata_standin.server import BEFORE_PUBLICATION

    chosen: dict[str, Any] = {}
    if text := os.environ.get("XAU_DEMO_PUBLICATION_DELAY", "").strip():
        try:
            chosen["publication_delay_seconds"] = delay = seconds_range(text)
        except argparse.ArgumentTypeError as exc:
            raise LaunchError(f"XAU_DEMO_PUBLICATION_DELAY: {exc}", EXIT_CONFIG) from None
        if delay[1] == 0:
            chosen["publication_late_share"] = 0.0
    if before := os.environ.get("XAU_DEMO_BEFORE_PUBLICATION", "").strip():
        if before not in BEFORE_PUBLICATION:
            raise LaunchError(
                f"XAU_DEMO_BEFORE_PUBLICATION must be one of {', '.join(BEFORE_PUBLICATION)}, not {before!r}",
                EXIT_CONFIG,
            )
        chosen["before_publication"] = before
    return chosen


def start_stand_in(stack: ExitStack) -> str:
    from xau_pipeline_dev.twelvedata_standin import StandIn, StandInConfig

    port = int(os.environ.get("XAU_DEMO_STANDIN_PORT") or DEMO_PORT)
    publication = demo_publication()
    try:
        stand_in = StandIn(StandInConfig(api_key=DEMO_KEY, port=port, **publication)).start()
    except OSError:
        stand_in = StandIn(StandInConfig(api_key=DEMO_KEY, port=0, **publication)).start()
        say(f"port {port} is taken; the stand-in uses {stand_in.url} instead")
    stack.callback(stand_in.stop)
    config = stand_in.config
    low, high = config.publication_delay_seconds
    late = config.publication_late_share
    say(
        f"Twelve Data stand-in on {stand_in.url} (key {DEMO_KEY}, 8 credits a minute, 800 a day; "
        + (
            f"each bar published {low:g}-{high:g} s after its close"
            + (f", {late:.0%} later" if late else "")
            + f", {config.before_publication} before; XAU_DEMO_PUBLICATION_DELAY=0 for none)"
            if high or late
            else "each bar published at its close)"
        )
    )
    return stand_in.url


def start_demo(stack: ExitStack) -> None:
    """The stand-in started, and the environment pointed at it: its URL and key, the demo's history start."""
    base_url = start_stand_in(stack)
    if os.environ.get("TWELVE_DATA_API_KEY") and os.environ.get("TWELVE_DATA_API_KEY") != DEMO_KEY:
        say("the demo uses the stand-in and its key, not your TWELVE_DATA_API_KEY")
    os.environ["TWELVE_DATA_BASE_URL"] = base_url
    os.environ["TWELVE_DATA_API_KEY"] = DEMO_KEY
    if not os.environ.get("XAU_HISTORY_START"):
        # The demo's history is what it stores: no catch-up run over years it never filled.
        os.environ["XAU_HISTORY_START"] = demo_first_day().date().isoformat()
        say(f"demo history from {os.environ['XAU_HISTORY_START']} (set XAU_HISTORY_START for more)")


def demo_first_day() -> datetime:
    """The first UTC day `make demo` stores: DEMO_DAYS before today."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=DEMO_DAYS)


def fill_demo_data(settings: Settings) -> None:
    """Store the last DEMO_DAYS days and today of every series by one run of every candle asset over
    them, as a backfill from the UI runs: each day materialized and judged by its checks."""
    import warnings

    import dagster as dg

    from xau_pipeline.definitions import build_definitions
    from xau_pipeline.defs.candles.partitions import partition_range_tags

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    started = time.perf_counter()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    history_start = datetime.combine(settings.history_start, datetime.min.time(), UTC)
    first_day = max(today - timedelta(days=DEMO_DAYS), history_start)
    defs = build_definitions(settings)
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [asset for asset in defs.assets or () if isinstance(asset, dg.AssetsDefinition)],
            instance=instance,
            resources=defs.resources,
            tags={**partition_range_tags(f"{first_day:%Y-%m-%d}", f"{today:%Y-%m-%d}"), DEMO_TAG: "seed"},
            raise_on_error=False,
        )
    days = (today - first_day).days + 1
    if not result.success:
        say(f"the demo data run {result.run_id} failed: see it in the UI (Runs)")
        return
    judged = sum(1 for evaluation in result.get_asset_check_evaluations() if evaluation.partition)
    say(
        f"demo data: {days} days of every series stored and judged ({judged} check results) by run "
        f"{result.run_id[:8]} in {time.perf_counter() - started:.1f} s"
    )


# ---- dagster dev ---------------------------------------------------------------------------------


def _group_members(pgid: int) -> list:
    import psutil

    members = []
    for process in psutil.process_iter(["status"]):
        with suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members


def _end_group(pgid: int, grace: float = 5.0) -> None:
    """Whatever `dagster dev` left behind in its process group: SIGTERM, then SIGKILL."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if not _group_members(pgid):
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)
        deadline = time.monotonic() + grace
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)


def run_dagster(root: Path, env: dict[str, str], host: str, port: int) -> int:
    """`dagster dev` in its own process group until it exits or we are told to stop; returns its status."""
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster)] if dagster.exists() else [sys.executable, "-m", "dagster"]
    command += ["dev", "-h", host, "-p", str(port), "-w", str(root / "workspace.yaml")]
    say(f"starting the Dagster UI and daemon on http://{host}:{port} (Ctrl-C stops everything)")
    process: subprocess.Popen | None = None
    stop_requested: list[float] = []  # monotonic time of each stop signal

    def on_signal(_signum, _frame):
        stop_requested.append(time.monotonic())
        if process is None:
            return
        with suppress(ProcessLookupError):
            if len(stop_requested) == 1:
                say("stopping Dagster...")
                process.send_signal(signal.SIGTERM)  # dagster dev treats it as Ctrl-C
            else:
                say("stopping Dagster at once")
                os.killpg(process.pid, signal.SIGKILL)

    # Installed before the child starts: a handler resets to the default there, while an ignored SIGINT
    # (as in a shell's background job) would stay ignored, and `dagster dev` maps SIGTERM to SIGINT's handler.
    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        # Its own process group: a terminal's Ctrl-C reaches us only, and we stop Dagster once, in order.
        process = subprocess.Popen(command, cwd=root, env=env, process_group=0)
        if stop_requested:  # a signal came while it was being started
            process.send_signal(signal.SIGTERM)
        while True:
            try:
                status = process.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if len(stop_requested) == 1 and time.monotonic() - stop_requested[0] > SHUTDOWN_GRACE_SECONDS:
                    on_signal(None, None)
    finally:
        if process is not None:
            _end_group(process.pid)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stop_requested:
        say("Dagster stopped")
        return 0
    return status


# ---- the HTTP API ----------------------------------------------------------------------------------


def start_api(stack: ExitStack, settings: Settings) -> None:
    """`xau-pipeline serve` beside Dagster (XAU_API_HOST, XAU_API_PORT, XAU_API_TOKEN), stopped when we
    stop. A problem with it is reported and Dagster starts anyway: the API is an extra."""
    from xau_pipeline.interfaces.http.server import check_bind

    host, port = settings.read_api_host, settings.read_api_port
    try:
        check_bind(host, settings.read_api_token)
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        say(f"the HTTP API is not started: cannot serve on {host}:{port} ({exc.strerror}); set XAU_API_PORT")
        return
    except ValueError as exc:
        say(f"the HTTP API is not started: {exc}")
        return
    command = [sys.executable, "-m", "xau_pipeline.interfaces.cli", "serve", "--host", host, "--port", str(port)]
    # Its own process group, like Dagster's: Ctrl-C reaches us, and we stop it once, after Dagster.
    process = subprocess.Popen(command, env=dict(os.environ), process_group=0)
    stack.callback(_stop_api, process)
    say(f"HTTP API on {settings.read_api_url} (docs at /docs, charts at /chart/M15, /chart/H1, ...)")


def _stop_api(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    say("HTTP API stopped")


# ---- main ----------------------------------------------------------------------------------------


def _raise_keyboard_interrupt(_signum, _frame):
    raise KeyboardInterrupt


def launch(mode: str) -> int:
    root = project_root()
    host = os.environ.get("XAU_UI_HOST") or "127.0.0.1"
    try:
        port = int(os.environ.get("XAU_UI_PORT") or 3000)
    except ValueError:
        raise LaunchError(
            f"XAU_UI_PORT must be a port number, got {os.environ['XAU_UI_PORT']!r}", EXIT_CONFIG
        ) from None
    if mode == "run" and not os.environ.get("TWELVE_DATA_API_KEY"):
        if os.environ.get("TWELVE_DATA_BASE_URL"):
            raise LaunchError(
                f"TWELVE_DATA_API_KEY is not set (the API at {os.environ['TWELVE_DATA_BASE_URL']} needs one too); "
                "`make demo` runs the stand-in with its key",
                EXIT_CONFIG,
            )
        sys.stderr.write(NO_KEY_MESSAGE)
        return EXIT_CONFIG
    _check_port_free(host, port)

    # Until Dagster runs, SIGTERM unwinds like Ctrl-C, so whatever was started is stopped.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    with ExitStack() as stack:
        try:
            if mode == "demo":
                start_demo(stack)
            embedded = not os.environ.get("XAU_DATABASE_URL")
            candles_url, dagster_url = prepare_databases(root, stack)
            os.environ["XAU_DATABASE_URL"] = candles_url
            os.environ["XAU_DAGSTER_PG_URL"] = dagster_url
            settings = load_settings()
            if embedded:
                say(
                    f"settings for the command line run from this folder in {share_settings(embedded_data_dir(os.environ, root), mode)}"
                )
            os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(root, settings))
            apply_dagster_environment()
            migrate_candle_database(settings)
            if mode == "demo":
                fill_demo_data(settings)
            start_api(stack, settings)
        except KeyboardInterrupt:
            say("interrupted")
            return 130
        return run_dagster(root, dict(os.environ), host, port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xau_pipeline_dev.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mode", choices=("run", "demo"))
    args = parser.parse_args(argv)
    try:
        return launch(args.mode)
    except LaunchError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.status


if __name__ == "__main__":
    raise SystemExit(main())
