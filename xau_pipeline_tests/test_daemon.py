"""The real Dagster daemon ticks a schedule and materializes the new partition against the stand-in."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from xau_pipeline_tests.conftest import TEST_API_KEY

# These tests count credits or partitions of "today": keep them clear of a UTC midnight.
# Starts the Dagster daemon and waits for its tick (about 30 s).
pytestmark = [pytest.mark.slow, pytest.mark.process, pytest.mark.usefixtures("away_from_midnight")]

REPO = Path(__file__).resolve().parent.parent
DAEMON = Path(sys.executable).parent / "dagster-daemon"


def test_the_daemon_materializes_the_partition_after_a_tick(stand_in, store, tmp_path):
    stand_in.configure(weekend_bars=True)
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: xau_pipeline_tests.daemon_defs\n"
        f"      working_directory: {REPO}\n"
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "TWELVE_DATA_BASE_URL": stand_in.url,
        "TWELVE_DATA_API_KEY": TEST_API_KEY,
        "XAU_DATABASE_URL": store.url,
    }
    daemon = subprocess.Popen(
        [str(DAEMON), "run", "-w", str(tmp_path / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    # The partition of the bar that closed a minute before the tick: today's, or yesterday's just after midnight.
    since = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    stored = 0
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and daemon.poll() is None:
            with store.engine.connect() as connection:
                stored = connection.execute(
                    sa.text("SELECT count(*) FROM candles WHERE timeframe = 'M15' AND \"timestamp\" >= :since"),
                    {"since": since},
                ).scalar()
            if stored:
                break
            time.sleep(2)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        output = daemon.communicate(timeout=30)[0].decode(errors="replace")
    assert stored > 0, output[-3000:]
    now = datetime.now(UTC)
    assert stand_in.time_series_calls() >= 1
    assert all(r.params["timezone"] == "UTC" for r in stand_in.requests)
    with store.engine.connect() as connection:
        newest = connection.execute(sa.text('SELECT max("timestamp") FROM candles')).scalar()
        kinds = {row.kind for row in connection.execute(sa.text("SELECT kind FROM api_calls"))}
    assert (now - newest).total_seconds() < 3 * 3600
    assert kinds == {"schedule"}
