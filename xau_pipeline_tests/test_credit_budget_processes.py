"""The credit budget across real OS processes, and 429 answers waited out, against the stand-in.

The first test takes about 65 s by design: four processes share one key for a 90 s run, which
holds two of the limiter's 61 s windows; a process stops as soon as its next credit would only
come after the 90 s (about 61 s in), so no call is cut short.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from xau_pipeline.ingest import ingest
from xau_pipeline.store.tables import api_calls
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline.utc import utc_now
from xau_pipeline_tests.conftest import TEST_API_KEY

# These tests count credits or partitions of "today": keep them clear of a UTC midnight.
pytestmark = pytest.mark.usefixtures("away_from_midnight")

UTC = UTC
PROCESSES = 4
RUN_SECONDS = 90.0
PER_MINUTE = 8
FIRST_MONDAY = datetime(2022, 1, 3, tzinfo=UTC)
WEEK = timedelta(weeks=1)
MAX_CALLS_PER_PROCESS = 40  # more than one process can get in 90 s: 16


class DeadlineReached(Exception):
    """The run is over while this process waits for credits: the call is not made (nothing taken)."""


def window(process: int, call: int) -> tuple[datetime, datetime]:
    """A distinct Monday-to-Saturday week per process and call."""
    start = FIRST_MONDAY + (process * MAX_CALLS_PER_PROCESS + call) * WEEK
    return start, start + timedelta(days=5)


def call_for_a_while(index: int, database_url: str, base_url: str, barrier, results, seconds: float) -> None:
    """In a spawned process: call the API through the shared budget until `seconds` have passed."""
    report = {"index": index, "pid": os.getpid(), "fetched": [], "errors": []}
    try:
        from xau_pipeline.credit_budget import BudgetSettings, CreditBudget
        from xau_pipeline.store.database import engine_for

        deadline = 0.0

        def sleep(pause: float) -> None:
            if time.monotonic() + pause >= deadline:
                raise DeadlineReached
            time.sleep(pause)

        budget = CreditBudget(
            engine_for(database_url),
            BudgetSettings(per_minute=PER_MINUTE, per_day=100_000, schedule_share=0),
            "backfill",
            run_id=f"process-{index}",
            sleep=sleep,
        )
        client = TwelveDataClient(TEST_API_KEY, base_url, budget=budget, timeout_seconds=10)
        barrier.wait(timeout=60)
        deadline = time.monotonic() + seconds
        for call in range(MAX_CALLS_PER_PROCESS):
            if time.monotonic() >= deadline:
                break
            start, end = window(index, call)
            try:
                page = client.time_series("XAU/USD", "1h", start, end)
            except DeadlineReached:
                break
            except Exception as exc:
                report["errors"].append(f"{start:%Y-%m-%d}: {type(exc).__name__}: {exc}")
                continue
            bars = [(b.open_time, b.open, b.high, b.low, b.close) for b in page.bars]
            report["fetched"].append((start, end, bars))
    except Exception:
        report["errors"].append(traceback.format_exc())
    results.put(report)


def test_four_processes_share_eight_calls_a_minute_and_lose_nothing(store, stand_in, database_url):
    stand_in.configure(credits_per_minute=PER_MINUTE, credits_per_day=None)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(
            target=call_for_a_while, args=(i, database_url, stand_in.url, barrier, results, RUN_SECONDS), daemon=True
        )
        for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    reports = []
    try:
        for _ in processes:
            reports.append(results.get(timeout=RUN_SECONDS + 90))
    except queue.Empty:
        raise AssertionError(f"a process sent no report; exit codes {[p.exitcode for p in processes]}") from None
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()

    assert [r["errors"] for r in reports] == [[]] * PROCESSES
    assert len({r["pid"] for r in reports} | {os.getpid()}) == PROCESSES + 1

    served = stand_in.requests
    assert [r for r in served if r.code != 200] == [], "the stand-in refused calls (429 = a minute overspent)"
    per_minute = Counter(r.at.replace(second=0, microsecond=0) for r in served)
    assert max(per_minute.values()) <= PER_MINUTE, per_minute

    # Nothing lost: every call a process made came back with exactly the bars of its window.
    fetched = [item for r in reports for item in r["fetched"]]
    for start, end, bars in fetched:
        expected = [
            (b["datetime"], b["open"], b["high"], b["low"], b["close"])
            for b in stand_in.bars("XAU/USD", "1h", start, end)
        ]
        assert bars and bars == expected, f"window {start:%Y-%m-%d}"
    assert len(fetched) == len(served) == len({start for start, _, _ in fetched})
    with store.engine.connect() as connection:
        outcomes = [row.outcome for row in connection.execute(sa.select(api_calls.c.outcome))]
    assert len(outcomes) == len(served) and all(o.startswith("ok: ") for o in outcomes), outcomes

    # Not starved: 90 s holds two 61 s windows of 8 calls, the physical maximum here.
    assert 10 <= len(served) <= 2 * PER_MINUTE, len(served)
    assert sum(1 for r in reports if r["fetched"]) >= 2, [len(r["fetched"]) for r in reports]
    print(
        f"{len(served)} calls by process {[len(r['fetched']) for r in sorted(reports, key=lambda r: r['index'])]}, "
        f"per calendar minute {sorted(per_minute.values())}"
    )


def test_minute_limit_answers_are_waited_out_during_an_ingest(store, stand_in):
    """Three M15 windows in one ingest, the stand-in allowing 2 a minute and no budget in the client:
    the third call's 429 is waited out (the clocks are shifted to 10 s before a minute boundary: each
    window is stored before the next call, so the three calls need a few seconds of the minute)."""
    real = utc_now()
    shifted = real.replace(second=50, microsecond=0) + timedelta(minutes=1)
    offset = (shifted - real).total_seconds()
    stand_in.configure(credits_per_minute=2, time_offset_seconds=offset)
    client = TwelveDataClient(
        TEST_API_KEY, stand_in.url, timeout_seconds=5, clock=lambda: utc_now() + timedelta(seconds=offset)
    )
    m15, gold = TIMEFRAMES_BY_NAME["M15"], Symbol("XAU/USD")
    start, end = datetime(2023, 1, 2, tzinfo=UTC), datetime(2023, 7, 3, tzinfo=UTC)
    began = time.monotonic()
    report = ingest(client, store, gold, m15, start, end)
    elapsed = time.monotonic() - began

    assert report.complete, report.error
    assert [r.code for r in stand_in.requests] == [200, 200, 429, 200], stand_in.requests
    expected = stand_in.bars("XAU/USD", "15min", start, end)
    assert len(expected) > 2 * 5000
    with store.engine.connect() as connection:
        stored = connection.execute(
            sa.text('SELECT "timestamp" FROM candles WHERE timeframe = \'M15\' ORDER BY "timestamp"')
        ).scalars()
        assert list(stored) == [b["datetime"] for b in expected]
    assert report.counts.inserted == len(expected)
    assert store.summary(gold.name, m15, start, end)[0] == len(expected)
    assert 1.5 < elapsed < 30
