"""The HTTP API over ten years of stored M15 (about 236,000 bars), served by `xau-pipeline serve`.

Measures, in one run against one server process:
  latency     GET /candles/M15?limit=5000 (JSON), p50 and p99 over --requests sequential requests
              on a kept-alive connection, against the same 5000 rows read with a plain
              `COPY (SELECT ...) TO STDOUT` on a kept-alive database connection, the two
              interleaved so they share the machine's load. Goal: ratio <= 3.
  throughput  requests per second for GET /candles/M15?limit=100 from --clients concurrent
              clients (wrk when installed, `apt-get install wrk`; else a Python client).
  CSV stream  the time to stream a year of M15 as CSV (and ten years), and the server's peak
              resident memory (VmHWM) before and after: bounded means it does not grow with the range.

The server runs in its own process (the real command), the candles are loaded with COPY into a
database of the bench's own on XAU_BENCH_DATABASE_URL (default: local PostgreSQL), dropped at the end.
Usage: python bench/api_latency.py [--requests 200] [--clients 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import requests
import sqlalchemy as sa

from xau_pipeline.market.market_hours import calendar
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline_dev.testing import temporary_database

SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START, END = datetime(2016, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
M15 = timedelta(minutes=15)
GOAL_RATIO = 3.0
SAME_ROWS = (
    'COPY (SELECT "timestamp", open, high, low, close, volume FROM candles '
    "WHERE symbol = 'XAUUSD' AND timeframe = 'M15' ORDER BY \"timestamp\" DESC LIMIT 5000) TO STDOUT"
)


def load_ten_years(url: str) -> int:
    """Ten years of CME-hours M15 bars (a random walk, prices with 2-5 decimals) COPYed into `candles`."""
    CandleStore(url)  # the schema
    slots = calendar("cme_gold").expected_slots(START, END, M15)
    rng = random.Random(11)
    price = Decimal("1060.00")
    buffer = io.StringIO()
    fetched = datetime(2026, 1, 2, tzinfo=UTC).isoformat()
    for slot in slots:
        step = Decimal(rng.randint(-300, 300)) / 100
        open_, close = price, max(price + step, Decimal("100"))
        high = max(open_, close) + Decimal(rng.randint(0, 99999)) / 100000
        low = min(open_, close) - Decimal(rng.randint(0, 999)) / 1000
        volume = "\\N" if rng.random() < 0.5 else str(rng.randint(0, 5000))
        buffer.write(
            f"XAUUSD\tM15\t{slot.isoformat()}\t{open_}\t{high}\t{low}\t{close}\t{volume}\t{fetched}\t{fetched}\n"
        )
        price = close
    buffer.seek(0)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    raw = engine.raw_connection()
    try:
        raw.cursor().copy_expert(
            'COPY candles (symbol, timeframe, "timestamp", open, high, low, close, volume, fetched_at, updated_at) '
            "FROM STDIN",
            buffer,
        )
        raw.commit()
        raw.cursor().execute("ANALYZE candles")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return len(slots)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "XAU_DATABASE_URL": url, "XAU_API_HOST": "127.0.0.1", "XAU_API_PORT": str(port)}
    env.pop("XAU_API_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "xau_pipeline.interfaces.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the API did not start")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in KiB (Linux)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) for key in ("VmRSS", "VmHWM")}  # type: ignore[union-attr]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stream_csv(base: str, start: str, end: str) -> tuple[float, int, int]:
    began = time.perf_counter()
    size = lines = 0
    with requests.get(
        f"{base}/candles/M15", params={"format": "csv", "start": start, "end": end}, stream=True, timeout=600
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_content(1 << 16):
            size += len(chunk)
            lines += chunk.count(b"\n")
    return time.perf_counter() - began, size, lines - 1


def throughput(base: str, clients: int, seconds: int) -> tuple[str, float, int]:
    """(tool, requests per second, non-2xx answers) for limit=100."""
    url = f"{base}/candles/M15?limit=100"
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run(
            [wrk, "-t", "2", "-c", str(clients), "-d", f"{seconds}s", url], capture_output=True, text=True, check=True
        ).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        return f"wrk -t2 -c{clients}", rps, int(bad.group(1)) if bad else 0
    done, bad = [0], [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                ok = session.get(url, timeout=30).ok
                with lock:
                    done[0] += 1
                    bad[0] += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return f"Python client, {clients} threads", done[0] / (time.perf_counter() - began), bad[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with temporary_database(SERVER, "xau_bench_api") as url:
        began = time.perf_counter()
        rows = load_ten_years(url)
        print(
            f"{rows:,} M15 bars {START:%Y-%m-%d}..{END:%Y-%m-%d} loaded with COPY in {time.perf_counter() - began:.1f} s"
        )
        port = free_port()
        server = start_server(url, port)
        base = f"http://127.0.0.1:{port}"
        try:
            run(url, base, server.pid, args)
        finally:
            server.terminate()
            server.wait(timeout=30)


def run(url: str, base: str, pid: int, args: argparse.Namespace) -> None:
    with requests.Session() as session:
        session.get(f"{base}/candles/M15", params={"limit": 10}).raise_for_status()
        idle = memory_kib(pid)

        # CSV streams first, while the server's peak memory is still that of small requests.
        year = stream_csv(base, "2025-01-01", "2026-01-01")
        after_year = memory_kib(pid)
        decade = stream_csv(base, "2016-01-01", "2026-01-01")
        after_decade = memory_kib(pid)
        print("\nCSV stream (GET /candles/M15?format=csv&start=...&end=...)")
        for label, (seconds, size, lines) in (("one year", year), ("ten years", decade)):
            print(
                f"  {label:<10} {lines:>8,} rows, {size / 1e6:6.1f} MB in {seconds:5.2f} s ({lines / seconds:,.0f} rows/s)"
            )
        print(
            f"  server memory: {idle['VmRSS'] / 1024:.0f} MiB resident before; peak {after_year['VmHWM'] / 1024:.0f} MiB "
            f"after the year, {after_decade['VmHWM'] / 1024:.0f} MiB after ten years"
        )

        # Latency: the API's 5000-bar page against COPY of the same rows, interleaved.
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            api, copy = [], []
            body = b""
            for _ in range(10):  # warm both paths
                session.get(f"{base}/candles/M15", params={"limit": 5000}).raise_for_status()
                cursor.copy_expert(SAME_ROWS, io.StringIO())
            for _ in range(args.requests):
                began = time.perf_counter()
                response = session.get(f"{base}/candles/M15", params={"limit": 5000})
                body = response.content
                api.append(time.perf_counter() - began)
                assert response.status_code == 200
                began = time.perf_counter()
                sink = io.StringIO()
                cursor.copy_expert(SAME_ROWS, sink)
                copy.append(time.perf_counter() - began)
            raw.rollback()
        finally:
            raw.close()
            engine.dispose()
        assert body.count(b'"timestamp"') == 5000 and sink.getvalue().count("\n") == 5000
        print(
            f"\nGET /candles/M15?limit=5000 ({len(body) / 1e6:.2f} MB JSON) vs COPY of the same rows, {args.requests} each"
        )
        print(f"  {'':<6}{'API':>10}{'COPY':>10}{'ratio':>8}   goal")
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            a, c = percentile(api, q) * 1000, percentile(copy, q) * 1000
            print(f"  {label:<6}{a:>8.1f}ms{c:>8.1f}ms{a / c:>8.2f}   <= {GOAL_RATIO:g}")
        print(f"  mean  {statistics.mean(api) * 1000:>8.1f}ms{statistics.mean(copy) * 1000:>8.1f}ms")

    tool, rps, bad = throughput(base, args.clients, args.seconds)
    print(f"\nGET /candles/M15?limit=100, {args.clients} concurrent clients for {args.seconds} s ({tool})")
    print(f"  {rps:,.0f} requests/s, {bad} answers not 2xx (one server process, 2 cores shared with the client)")


if __name__ == "__main__":
    main()
