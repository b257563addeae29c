"""The embedded PostgreSQL fallback, run even where a server is available so CI keeps it honest."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psutil
import pytest
import sqlalchemy as sa

from xau_pipeline.market.bars import Bar
from xau_pipeline.market.timeframes import timeframe
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.migrate import current_revision, head_revision
from xau_pipeline_dev import embedded_postgres
from xau_pipeline_tests.conftest import REPO

# Every test starts (and stops) an embedded PostgreSQL.
pytestmark = pytest.mark.process

UTC = UTC
T0 = datetime(2024, 1, 2, tzinfo=UTC)
M15 = timeframe("M15")


def alive(pid: int) -> bool:
    """A zombie (exited, not yet reaped by its new parent) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def bars(n: int, base: str = "2050.12345") -> list[Bar]:
    price = Decimal(base)
    return [
        Bar(T0 + i * M15.bar, price + i, price + i + 1, price + i - 1, price + i + Decimal("0.5")) for i in range(n)
    ]


def test_the_candle_store_migrates_upserts_and_reads_on_the_embedded_database(embedded_database_url, embedded_postgres):
    assert embedded_database_url.startswith(f"postgresql+psycopg2://postgres@127.0.0.1:{embedded_postgres.port}/")
    store = CandleStore(embedded_database_url)
    store.migrate()
    assert current_revision(store.engine) == head_revision()
    with store.engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE candles, fetch_coverage, api_calls"))

    first = store.write("XAUUSD", M15, bars(8), [])
    assert (first.inserted, first.updated, first.unchanged) == (8, 0, 0)
    revised = bars(8)
    revised[3] = Bar(revised[3].open_time, Decimal("1"), Decimal("3"), Decimal("0.5"), Decimal("2.00001"))
    again = store.write("XAUUSD", M15, revised, [])
    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 7)

    count, first_bar, last_bar = store.summary("XAUUSD", M15, T0, T0 + timedelta(days=1))
    assert (count, first_bar, last_bar) == (8, T0, T0 + 7 * M15.bar)
    newest = store.newest("XAUUSD", M15, T0, T0 + timedelta(days=1), limit=8)
    closes = {row.timestamp: row.close for row in newest}
    assert closes[T0 + 3 * M15.bar] == Decimal("2.00001")
    assert str(closes[T0]) == "2050.62345"


def _start_in_child(data_dir) -> subprocess.Popen:
    """A process that starts the embedded server, says its postmaster pid, and waits to be killed."""
    code = (
        "import sys, time; from xau_pipeline_dev import embedded_postgres as e; "
        f"s = e.start({str(data_dir)!r}); print(s.pid, flush=True); time.sleep(600)"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_crashed_run_does_not_block_the_next_start(request):
    data_dir = REPO / ".pgdata" / f"test-{os.getpid()}-crash"
    request.addfinalizer(lambda: embedded_postgres.remove(data_dir))

    # 1. The owning process is killed: its postmaster lives on as an orphan and is restarted.
    child = _start_in_child(data_dir)
    orphan_pid = int(child.stdout.readline())
    child.kill()
    child.wait(10)
    assert alive(orphan_pid)
    server = embedded_postgres.start(data_dir)
    try:
        assert server.pid != orphan_pid and not alive(orphan_pid)
        with sa.create_engine(server.url, poolclass=sa.pool.NullPool).connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar() == 1
        # A second owner is refused while this one runs.
        with pytest.raises(embedded_postgres.EmbeddedPostgresError, match="in use by another process"):
            embedded_postgres.start(data_dir)
        # 2. The postmaster itself dies: its postmaster.pid stays behind, naming a pid now in other hands.
        crashed = psutil.Process(server.pid)
        children = crashed.children()
        crashed.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(alive(p.pid) for p in [crashed, *children]) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    pid_file = server.cluster / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")

    with embedded_postgres.start(data_dir) as again:
        assert again.running
        with sa.create_engine(again.url, poolclass=sa.pool.NullPool).connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar() == 1
        pid = again.pid
    assert not alive(pid)
