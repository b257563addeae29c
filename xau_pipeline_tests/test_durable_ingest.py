"""Durable ingestion: a killed backfill keeps its windows, concurrent backfills pay each window once,
a lost database ends the run with one typed line and no half-written window, a rerun costs 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from xau_pipeline.ingest import ingest
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.candle_store import CandleStore, StoreUnavailableError
from xau_pipeline.store.credit_budget import LOST_OUTCOME, BudgetSettings
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline.twelvedata.retry_policy import RetryPolicy
from xau_pipeline.twelvedata.windows import WindowPlanner, merge_gaps
from xau_pipeline_tests.conftest import REPO, TEST_API_KEY

GOLD = Symbol("XAU/USD")
M15 = TIMEFRAMES_BY_NAME["M15"]
CME = calendar("cme_gold")
NO_LIMITS = BudgetSettings(per_minute=10_000, per_day=100_000, schedule_share=0, repair_share=0)


def planned_calls(start: datetime, end: datetime) -> int:
    return sum(WindowPlanner(s, M15.bar, CME).expected_calls for s in merge_gaps([(start, end)], M15.bar, CME))


def scalar(store: CandleStore, sql: str):
    with store.engine.connect() as connection:
        return connection.execute(sa.text(sql)).scalar()


def client_for(stand_in, store, run_id: str) -> TwelveDataClient:
    budget = store.credit_budget(NO_LIMITS, "backfill", run_id)
    return TwelveDataClient(
        TEST_API_KEY,
        stand_in.url,
        budget=budget,
        timeout_seconds=10,
        retry=RetryPolicy(first_pause=timedelta(seconds=0.01)),
    )


def assert_windows_whole(store: CandleStore, stand_in) -> None:
    """Every stored window holds exactly the bars served for it, and no bar lies outside a stored window."""
    with store.engine.connect() as connection:
        windows = list(connection.execute(sa.text("SELECT window_start, window_end, bars FROM fetch_coverage")))
        stored = {
            row[0]: row[1:]
            for row in connection.execute(
                sa.text("SELECT \"timestamp\", open, high, low, close FROM candles WHERE timeframe = 'M15'")
            )
        }
    expected = {}
    for w in windows:
        served = stand_in.bars("XAU/USD", "15min", w.window_start, w.window_end)
        assert len(served) == w.bars
        expected.update({b["datetime"]: (b["open"], b["high"], b["low"], b["close"]) for b in served})
    assert stored == expected


KILL_SCRIPT = """
import json, sys
from datetime import datetime
from xau_pipeline.store.credit_budget import BudgetSettings
from xau_pipeline.ingest import ingest
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.twelvedata.client import TwelveDataClient

a = json.loads(sys.argv[1])
store = CandleStore(a["db"])
budget = store.credit_budget(BudgetSettings(per_minute=10000, per_day=100000, schedule_share=0), "backfill", "killed")
client = TwelveDataClient(a["key"], a["url"], budget=budget)
ingest(client, store, Symbol("XAU/USD"), TIMEFRAMES_BY_NAME["M15"],
       datetime.fromisoformat(a["start"]), datetime.fromisoformat(a["end"]), run_id="killed")
print("finished", flush=True)
"""


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [2])
def test_a_backfill_killed_after_k_windows_keeps_them_and_the_rerun_pays_the_rest(stand_in, store, kill_after):
    start, end = datetime(2023, 1, 2, tzinfo=UTC), datetime(2023, 12, 29, tzinfo=UTC)
    n = planned_calls(start, end)
    assert n >= 4
    # CME hours: the calls planned on gold's calendar are then the calls made.
    stand_in.configure(delay_seconds=0.6, weekend_bars=False)
    args = {
        "db": store.url,
        "url": stand_in.url,
        "key": TEST_API_KEY,
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, json.dumps(args)], cwd=REPO, stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while scalar(store, "SELECT count(*) FROM fetch_coverage") < kill_after:
            assert child.poll() is None and time.monotonic() < deadline, "the backfill ended before it was killed"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    stand_in.configure(delay_seconds=0.0)
    time.sleep(0.7)  # the call the kill interrupted is answered (to nobody) and counted by the stand-in
    k = scalar(store, "SELECT count(*) FROM fetch_coverage")
    assert k == kill_after
    assert_windows_whole(store, stand_in)
    assert scalar(store, "SELECT count(*) FROM candles") == scalar(store, "SELECT sum(bars) FROM fetch_coverage") > 0
    assert scalar(store, "SELECT count(*) FROM api_calls WHERE outcome LIKE 'ok:%'") == k
    calls_before = stand_in.time_series_calls()

    report = ingest(client_for(stand_in, store, "rerun"), store, GOLD, M15, start, end, run_id="rerun")
    assert report.complete, report.error
    assert report.calls == stand_in.time_series_calls() - calls_before == n - k
    assert_windows_whole(store, stand_in)
    assert scalar(store, "SELECT count(*) FROM candles") == len(stand_in.bars("XAU/USD", "15min", start, end))
    # The killed process's in-flight call (if any) is settled as lost, its credit still counted.
    with store.engine.connect() as connection:
        killed = list(connection.execute(sa.text("SELECT credits, outcome FROM api_calls WHERE run_id = 'killed'")))
    assert all(o != "pending" for _, o in killed)
    assert all(c == 1 for c, _ in killed)
    assert [o for _, o in killed if not o.startswith("ok:")] in ([], [LOST_OUTCOME])
    print(f"kill after {k} of {n} windows: {len(killed)} + {report.credits} credits in all (goal {n})")


def run_concurrently(stand_in, store, ranges):
    barrier = threading.Barrier(len(ranges))
    reports = [None] * len(ranges)

    def work(i, span):
        client = client_for(stand_in, store, f"concurrent-{i}")
        barrier.wait(10)
        reports[i] = ingest(client, store, GOLD, M15, *span, run_id=f"concurrent-{i}")

    threads = [threading.Thread(target=work, args=(i, span)) for i, span in enumerate(ranges)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return reports


JAN1, FEB15, MAR30 = (
    datetime(2024, 1, 1, tzinfo=UTC),
    datetime(2024, 2, 15, tzinfo=UTC),
    datetime(2024, 3, 30, tzinfo=UTC),
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ranges", "minimum"),
    [
        ([(JAN1, MAR30)] * 3, 2),  # three identical runs: one run's calls
        ([(JAN1, FEB15), (JAN1, MAR30)], 2),  # whichever runs first, 2 calls cover both
    ],
    ids=["three-identical", "two-overlapping"],
)
def test_concurrent_overlapping_backfills_make_the_minimum_calls(stand_in, store, ranges, minimum):
    stand_in.configure(delay_seconds=0.3)
    reports = run_concurrently(stand_in, store, ranges)
    assert all(r is not None and r.complete for r in reports), [r and r.error for r in reports]
    assert stand_in.time_series_calls() == sum(r.calls for r in reports) == minimum
    assert scalar(store, "SELECT sum(credits) FROM api_calls") == minimum
    assert scalar(store, "SELECT count(*) FROM candles") == len(stand_in.bars("XAU/USD", "15min", JAN1, MAR30))
    assert_windows_whole(store, stand_in)


# -- the database lost mid-run --------------------------------------------------------------


@pytest.fixture
def own_embedded_postgres(request):
    """An embedded PostgreSQL of this test's own: it is stopped mid-run."""
    from xau_pipeline_dev import embedded_postgres

    data_dir = REPO / ".pgdata" / f"test-{os.getpid()}-outage"
    server = embedded_postgres.start(data_dir)
    state = {"server": server}
    yield state
    state["server"].stop()
    embedded_postgres.remove(data_dir)


@pytest.mark.process
@pytest.mark.slow
def test_a_database_lost_mid_run_gives_one_typed_error_and_no_half_written_window(
    stand_in, own_embedded_postgres, dagster_instance
):
    import dagster as dg

    from xau_pipeline.defs.candles.asset_factory import build_candle_asset
    from xau_pipeline.defs.candles.partitions import (
        PARTITION_RANGE_END_TAG,
        PARTITION_RANGE_START_TAG,
        daily_partitions,
    )
    from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
    from xau_pipeline_dev import embedded_postgres

    server = own_embedded_postgres["server"]
    data_dir = server.data_dir

    def database_url(server) -> str:
        return sa.engine.make_url(server.url).set(database="xau_outage").render_as_string(hide_password=False)

    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text('CREATE DATABASE "xau_outage"'))
    admin.dispose()
    url = database_url(server)
    store = CandleStore(url)
    store.migrate()
    stand_in.configure(delay_seconds=0.5)
    asset = build_candle_asset(GOLD, M15, daily_partitions("2023-01-01"))
    resources = {
        "twelvedata": TwelveDataResource(
            api_key=TEST_API_KEY, base_url=stand_in.url, credits_per_minute=10_000, credits_per_day=100_000
        ),
        "candle_store": CandleStoreResource(database_url=url),
    }
    outcome = {}

    def materialize():
        outcome["result"] = dg.materialize(
            [asset],
            instance=dagster_instance,
            resources=resources,
            tags={PARTITION_RANGE_START_TAG: "2023-01-02", PARTITION_RANGE_END_TAG: "2023-12-28"},
            raise_on_error=False,
        )

    runner = threading.Thread(target=materialize)
    runner.start()
    deadline = time.monotonic() + 60
    while scalar(store, "SELECT count(*) FROM fetch_coverage") < 1:
        assert runner.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)  # the second window's call is under way, inside its claim
    store.engine.dispose()
    server.stop()
    runner.join(120)
    assert not runner.is_alive()
    stand_in.configure(delay_seconds=0.0)
    result = outcome["result"]
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message.strip()
    assert message.startswith("dagster._core.definitions.events.Failure: StoreUnavailableError: "), message
    assert "nothing of it was written" in message and "\n" not in message, message
    assert "OperationalError" not in message and "[SQL:" not in message and "Traceback" not in message

    server = embedded_postgres.start(data_dir)
    own_embedded_postgres["server"] = server
    store = CandleStore(database_url(server))
    try:
        assert scalar(store, "SELECT count(*) FROM fetch_coverage") >= 1
        assert_windows_whole(store, stand_in)
    finally:
        store.engine.dispose()


def test_a_store_that_cannot_be_reached_is_one_typed_line():
    store = CandleStore("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(StoreUnavailableError, match="cannot reach the candle database|was lost while"):
        store.missing("XAUUSD", M15, JAN1, FEB15)
