"""Speed of `upsert_bars` against a plain COPY of the same rows into an unindexed table.

Generates N consecutive M15 bars once (not timed), then times in one run:
  baseline   COPY of the rows (text built from the Bar objects, timed) into an unindexed,
             un-keyed table with the same 10 columns, committed;
  fresh      upsert_bars of all rows into the empty `candles` table, one transaction;
  unchanged  the same rows again (nothing differs).
Ratios are baseline / upsert (1.0 = as fast as the plain COPY; goals: fresh >= 0.5, unchanged >= 0.6).
Each measurement is repeated --repeat times and the best is reported.

Uses its own database on the server in XAU_BENCH_DATABASE_URL (default: local PostgreSQL), dropped at the end.
Usage: python bench/upsert_speed.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from xau_pipeline.market.bars import Bar
from xau_pipeline.store.database import engine_for
from xau_pipeline.store.migrate import migrate
from xau_pipeline.store.upsert import upsert_bars
from xau_pipeline_dev.testing import temporary_database

SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SYMBOL, TIMEFRAME = "XAUUSD", "M15"
START = datetime(2000, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
GOALS = {"fresh": 0.5, "unchanged": 0.6}

BASELINE_TABLE = """
CREATE TABLE baseline (
    symbol text NOT NULL, timeframe text NOT NULL, "timestamp" timestamptz NOT NULL,
    open numeric NOT NULL, high numeric NOT NULL, low numeric NOT NULL, close numeric NOT NULL,
    volume numeric, fetched_at timestamptz NOT NULL, updated_at timestamptz NOT NULL
)
"""
COPY_BASELINE = (
    'COPY baseline (symbol, timeframe, "timestamp", open, high, low, close, volume, fetched_at, updated_at) FROM STDIN'
)


def price(units: int) -> Decimal:
    """`units` hundred-thousandths as an exact Decimal with up to 5 decimals (trailing zeros dropped)."""
    whole, frac = divmod(units, 100_000)
    text = f"{whole}.{frac:05d}".rstrip("0").rstrip(".")
    return Decimal(text)


def make_bars(n: int) -> list[Bar]:
    """A deterministic random walk around 2000.00000 (an LCG, so no dependence on `random`'s version)."""
    bars = []
    state = 12345
    level = 200_000_000  # 2000.00000 in units of 1e-5
    for i in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        move = (state >> 33) % 60_001 - 30_000
        level = max(50_000_000, level + move)
        spread = (state >> 17) % 40_000
        opening, closing = level, level + (state >> 45) % 20_001 - 10_000
        high = max(opening, closing) + spread
        low = min(opening, closing) - (spread // 2)
        bars.append(Bar(START + i * STEP, price(opening), price(high), price(low), price(closing), None))
    return bars


def baseline_text(bars: list[Bar], stamp: str) -> io.StringIO:
    """The COPY text a straightforward writer would build: one f-string a bar, str() of each Decimal."""
    null = "\\N"
    buffer = io.StringIO()
    buffer.writelines(
        f"{SYMBOL}\t{TIMEFRAME}\t{b.open_time.isoformat()}\t{b.open}\t{b.high}\t{b.low}\t{b.close}\t"
        f"{null if b.volume is None else b.volume}\t{stamp}\t{stamp}\n"
        for b in bars
    )
    buffer.seek(0)
    return buffer


def checkpoint(engine: sa.Engine) -> None:
    """Start every measurement from a quiet server: flushed WAL, no pending autovacuum work from before."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("CHECKPOINT"))


def time_baseline(engine: sa.Engine, bars: list[Bar]) -> tuple[float, float]:
    """(seconds with text building, seconds of the COPY + commit alone)."""
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS baseline"))
        connection.execute(sa.text(BASELINE_TABLE))
    checkpoint(engine)
    stamp = datetime.now(UTC).isoformat()
    started = time.perf_counter()
    with engine.begin() as connection:
        buffer = baseline_text(bars, stamp)
        built = time.perf_counter()
        cursor = connection.connection.dbapi_connection.cursor()
        cursor.copy_expert(COPY_BASELINE, buffer)
        cursor.close()
    total = time.perf_counter() - started
    return total, total - (built - started)


def time_upsert(engine: sa.Engine, bars: list[Bar]) -> tuple[float, tuple[int, int, int]]:
    checkpoint(engine)
    started = time.perf_counter()
    with engine.begin() as connection:
        counts = upsert_bars(connection, SYMBOL, TIMEFRAME, bars)
    return time.perf_counter() - started, (counts.inserted, counts.updated, counts.unchanged)


def run(url: str, rows: int, repeat: int) -> None:
    engine = engine_for(url)
    migrate(engine)
    with engine.connect() as connection:
        version = connection.execute(sa.text("SHOW server_version")).scalar_one()

    started = time.perf_counter()
    bars = make_bars(rows)
    print(f"built {rows:,} bars in {time.perf_counter() - started:.1f} s (not timed)")

    baseline, baseline_copy, fresh, unchanged = [], [], [], []
    for attempt in range(repeat):
        with engine.begin() as connection:
            connection.execute(sa.text("TRUNCATE candles"))
        total, copy_only = time_baseline(engine, bars)
        baseline.append(total)
        baseline_copy.append(copy_only)

        seconds, counts = time_upsert(engine, bars)
        assert counts == (rows, 0, 0), f"fresh counts {counts}, expected ({rows}, 0, 0)"
        fresh.append(seconds)

        seconds, counts = time_upsert(engine, bars)
        assert counts == (0, 0, rows), f"unchanged counts {counts}, expected (0, 0, {rows})"
        unchanged.append(seconds)

        with engine.connect() as connection:
            stored = connection.execute(sa.text("SELECT count(*) FROM candles")).scalar_one()
        assert stored == rows, f"candles holds {stored} rows, expected {rows}"
        print(
            f"  run {attempt + 1}: baseline {total:.2f} s (COPY alone {copy_only:.2f} s), "
            f"fresh {fresh[-1]:.2f} s, unchanged {unchanged[-1]:.2f} s"
        )

    best = min(baseline)
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; PostgreSQL {version}"
    )
    print(f"{rows:,} rows, best of {repeat} runs; counts verified (N,0,0) then (0,0,N), candles holds N rows")
    print(f"{'measurement':<34}{'seconds':>9}{'ratio':>8}{'goal':>7}")
    print(f"{'baseline COPY (text build + COPY)':<34}{best:>9.2f}{1.0:>8.2f}{'':>7}")
    print(f"{'  of which COPY + commit alone':<34}{min(baseline_copy):>9.2f}{'':>8}{'':>7}")
    for name, times in (("fresh", fresh), ("unchanged", unchanged)):
        ratio = best / min(times)
        mark = "ok" if ratio >= GOALS[name] else "MISS"
        print(f"{'upsert_bars ' + name:<34}{min(times):>9.2f}{ratio:>8.2f}{GOALS[name]:>5.1f} {mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with temporary_database(SERVER, "xau_bench") as url:
        run(url, args.rows, args.repeat)


if __name__ == "__main__":
    main()
