"""A first start, left alone: `make run`'s launcher against the stand-in at the free plan's limits.

Starts the Twelve Data stand-in as its own process (8 credits a minute, 800 a day, as the free
plan), a fresh candle database on the local PostgreSQL server (Dagster's storage in its schema
`dagster`, as `make run` does with XAU_DATABASE_URL), and `python -m xau_pipeline_dev.launch run`
(the Dagster UI with its daemon) with XAU_HISTORY_START. Nothing is clicked: the history catch-up
sensor does the work. While it runs, the UI's GraphQL endpoint is asked every 2 s for the asset
list and the latest runs, as the UI's pages do.

Prints, per history start:
- when the UI answered, and when each timeframe's history was complete (nothing never fetched),
  counted from the UI's first answer;
- the catch-up's credits per timeframe against the minimum, ceil(stored bars / 5000), and the
  credits of other work meanwhile (the schedules' ticks);
- the time to complete against the credit floor (minimum credits / 8 a minute), as a ratio;
- GraphQL latency p50 and p99 during the catch-up;
- once the last catch-up run has ended: each run's start (after the UI's first answer) and length,
  and each check's days by status in its Partitions tab (SUCCEEDED, FAILED, SKIPPED; days with no
  status are not listed).

Usage: python bench/first_start.py [--history-start 2024-01-01] [--decade] [--timeout-minutes 40]
(--decade runs the default history and then XAU_HISTORY_START=2016-01-01; about 15 minutes in all.)
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import requests
import sqlalchemy as sa

# The check Partitions tab's GraphQL selection is the tests' (xau_pipeline_tests/check_statuses.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xau_pipeline.defs.automation.catch_up_sensor import history_progress
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.twelvedata.windows import MAX_BARS_PER_CALL
from xau_pipeline_dev.testing import temporary_database
from xau_pipeline_tests.check_statuses import CHECK_PARTITION_STATUSES, statuses_by_check

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
API_KEY = "bench-first-start-key"
PER_MINUTE = 8
GOLD = Symbol("XAU/USD")
CATCH_UP_RUNS = """
query CatchUpRuns {
  runsOrError(filter: {tags: [{key: "xau_pipeline/catch_up", value: "XAUUSD"}]}, limit: 100) {
    ... on Runs { results { runId status startTime endTime } }
  }
}
"""
UI_QUERY = """
query FirstStartProbe {
  assetNodes { assetKey { path } }
  runsOrError(limit: 10) { ... on Runs { results { runId status tags { key value } } } }
}
"""
CREDITS_BY_INTERVAL = sa.text("SELECT interval, kind, coalesce(sum(credits), 0) FROM api_calls GROUP BY interval, kind")
STORED_BY_TIMEFRAME = sa.text("SELECT timeframe, count(*) FROM candles GROUP BY timeframe")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def wait_for(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return True
        except requests.RequestException:
            time.sleep(0.5)
    return False


def first_start(history_start: date, timeout_minutes: float) -> None:
    stand_in_port, ui_port, api_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "TWELVE_DATA_API_KEY": API_KEY,
        "TWELVE_DATA_BASE_URL": f"http://127.0.0.1:{stand_in_port}",
        "XAU_HISTORY_START": history_start.isoformat(),
        "XAU_UI_PORT": str(ui_port),
        "XAU_API_PORT": str(api_port),
    }
    stand_in = subprocess.Popen(
        [sys.executable, "-m", "xau_pipeline_dev.twelvedata_standin", "--port", str(stand_in_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with temporary_database(SERVER, "xau_first_start") as url, tempfile.TemporaryDirectory() as home:
            env |= {"XAU_DATABASE_URL": url, "DAGSTER_HOME": home}
            with launched(env, Path(home)) as began:
                measure(url, ui_port, history_start, began, timeout_minutes)
    finally:
        stand_in.terminate()
        stand_in.wait(timeout=10)


@contextmanager
def launched(env: dict[str, str], home: Path) -> Iterator[float]:
    """`python -m xau_pipeline_dev.launch run` (the UI with its daemon) in its own process group, its
    output in home/launch.log, stopped with Ctrl-C's signal on leaving: when it started (monotonic)."""
    with open(home / "launch.log", "w") as log:
        began = time.monotonic()
        launcher = subprocess.Popen(
            [sys.executable, "-m", "xau_pipeline_dev.launch", "run"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        try:
            yield began
        finally:
            os.killpg(launcher.pid, signal.SIGINT)
            try:
                launcher.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, signal.SIGKILL)


def measure(url: str, ui_port: int, history_start: date, began: float, timeout_minutes: float) -> None:
    graphql = f"http://127.0.0.1:{ui_port}/graphql"
    if not wait_for(f"http://127.0.0.1:{ui_port}/server_info", 180):
        raise SystemExit("the UI did not answer within 3 minutes")
    ui_up = time.monotonic()
    print(f"\nXAU_HISTORY_START={history_start}: the UI answered {ui_up - began:.1f} s after the command")
    store = CandleStore(url)
    start = datetime.combine(history_start, datetime.min.time(), UTC)
    complete_at: dict[str, float] = {}
    latencies: list[float] = []
    deadline = ui_up + timeout_minutes * 60
    last_shown = 0.0
    while len(complete_at) < len(TIMEFRAMES) and time.monotonic() < deadline:
        asked = time.perf_counter()
        answer = requests.post(graphql, json={"query": UI_QUERY}, timeout=30)
        latencies.append(time.perf_counter() - asked)
        answer.raise_for_status()
        try:
            progress = history_progress(store, GOLD, start, datetime.now(UTC))
        except Exception:  # the launcher migrates the schema after the UI may first answer
            time.sleep(2)
            continue
        for p in progress:
            if p.complete and p.timeframe not in complete_at:
                complete_at[p.timeframe] = time.monotonic() - ui_up
        if time.monotonic() - last_shown > 30:
            last_shown = time.monotonic()
            shares = ", ".join(f"{p.timeframe} {p.share:.0%}" for p in progress)
            print(f"  {time.monotonic() - ui_up:6.0f} s: {shares}", flush=True)
        time.sleep(2)
    with store.engine.connect() as connection:
        credits = {(interval, kind): int(n) for interval, kind, n in connection.execute(CREDITS_BY_INTERVAL)}
        stored = dict(connection.execute(STORED_BY_TIMEFRAME).all())
    # The catch-up draws on the backfill share; the schedules' ticks fetch the newest bars meanwhile.
    used = {tf.name: credits.get((tf.interval, "backfill"), 0) for tf in TIMEFRAMES}
    others = {
        tf.name: {kind: n for (interval, kind), n in credits.items() if interval == tf.interval and kind != "backfill"}
        for tf in TIMEFRAMES
    }
    minimum = {tf.name: math.ceil(int(stored.get(tf.name, 0)) / MAX_BARS_PER_CALL) for tf in TIMEFRAMES}
    floor_minutes = sum(minimum.values()) / PER_MINUTE
    for tf in TIMEFRAMES:
        done = complete_at.get(tf.name)
        when = f"{done / 60:5.2f} min" if done is not None else "not complete"
        print(
            f"  {tf.name:<3} complete after {when}; catch-up {used[tf.name]} credit(s), minimum {minimum[tf.name]} "
            f"({int(stored.get(tf.name, 0)):,} bars)"
            + "".join(f"; {kind} {n}" for kind, n in sorted(others[tf.name].items()))
        )
    if len(complete_at) == len(TIMEFRAMES):
        total = max(complete_at.values()) / 60
        print(
            f"  all complete after {total:.2f} min; credit floor {sum(minimum.values())} / {PER_MINUTE} a minute = "
            f"{floor_minutes:.2f} min; ratio {total / floor_minutes:.2f}x (goal <= 1.5x)"
        )
    else:
        print(f"  not complete within {timeout_minutes} min")
    print(
        f"  catch-up credits {sum(used.values())} against the minimum {sum(minimum.values())}"
        f" (other work: {sum(sum(k.values()) for k in others.values())}); "
        f"GraphQL p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms "
        f"over {len(latencies)} requests (goal p99 < 500 ms)"
    )
    runs_and_verdicts(graphql, ui_up)
    store.engine.dispose()


def runs_and_verdicts(graphql: str, ui_up: float, wait_seconds: float = 300) -> None:
    """Each catch-up run's start and length (once the last has ended), and each check's days by status
    in its Partitions tab (the UI's own GraphQL selection)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        runs = requests.post(graphql, json={"query": CATCH_UP_RUNS}, timeout=30).json()["data"]["runsOrError"][
            "results"
        ]
        if all(run["endTime"] for run in runs) or time.monotonic() > deadline:
            break
        time.sleep(2)
    offset = time.time() - (time.monotonic() - ui_up)  # the UI's first answer, as a Unix time
    print(f"  {len(runs)} catch-up run(s): start after the UI answered, length, status")
    for run in sorted(runs, key=lambda r: r["startTime"] or 0):
        length = f"{run['endTime'] - run['startTime']:5.1f} s" if run["endTime"] and run["startTime"] else "  n/a"
        print(f"    {run['runId'][:8]} {(run['startTime'] or offset) - offset:6.1f} s  {length}  {run['status']}")
    for tf in TIMEFRAMES:
        asset = {"path": [GOLD.key_prefix, tf.key_suffix]}
        node = requests.post(
            graphql, json={"query": CHECK_PARTITION_STATUSES, "variables": {"asset": asset}}, timeout=60
        ).json()["data"]["assetNodeOrError"]
        counts = {check: Counter(days.values()) for check, days in statuses_by_check(node).items()}
        shown = "; ".join(f"{check} {dict(sorted(c.items()))}" for check, c in sorted(counts.items()))
        print(f"  {tf.name} check days by status: {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history-start", type=date.fromisoformat, default=date(2024, 1, 1))
    parser.add_argument("--decade", action="store_true", help="then the same from 2016-01-01")
    parser.add_argument("--timeout-minutes", type=float, default=40)
    args = parser.parse_args()
    first_start(args.history_start, args.timeout_minutes)
    if args.decade:
        first_start(date(2016, 1, 1), args.timeout_minutes)


if __name__ == "__main__":
    main()
