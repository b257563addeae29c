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
- credits used per timeframe against the minimum, ceil(stored bars / 5000);
- the time to complete against the credit floor (minimum credits / 8 a minute), as a ratio;
- GraphQL latency p50 and p99 during the catch-up.

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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import requests
import sqlalchemy as sa

from xau_pipeline.catch_up import history_progress
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.database import temporary_database
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import TIMEFRAMES
from xau_pipeline.twelvedata.windows import MAX_BARS_PER_CALL

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
API_KEY = "bench-first-start-key"
PER_MINUTE = 8
GOLD = Symbol("XAU/USD")
UI_QUERY = """
query FirstStartProbe {
  assetNodes { assetKey { path } }
  runsOrError(limit: 10) { ... on Runs { results { runId status tags { key value } } } }
}
"""
CREDITS_BY_INTERVAL = sa.text("SELECT interval, coalesce(sum(credits), 0) FROM api_calls GROUP BY interval")
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
        credits = dict(connection.execute(CREDITS_BY_INTERVAL).all())
        stored = dict(connection.execute(STORED_BY_TIMEFRAME).all())
    used = {tf.name: int(credits.get(tf.interval, 0)) for tf in TIMEFRAMES}
    minimum = {tf.name: math.ceil(int(stored.get(tf.name, 0)) / MAX_BARS_PER_CALL) for tf in TIMEFRAMES}
    floor_minutes = sum(minimum.values()) / PER_MINUTE
    for tf in TIMEFRAMES:
        done = complete_at.get(tf.name)
        when = f"{done / 60:5.2f} min" if done is not None else "not complete"
        print(
            f"  {tf.name:<3} complete after {when}; {used[tf.name]} credit(s), minimum {minimum[tf.name]} "
            f"({int(stored.get(tf.name, 0)):,} bars)"
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
        f"  credits used {sum(used.values())} against the minimum {sum(minimum.values())}; "
        f"GraphQL p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms "
        f"over {len(latencies)} requests (goal p99 < 500 ms)"
    )
    store.engine.dispose()


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
