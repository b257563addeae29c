"""The gap query over ten years of M15 (about 240,000 stored bars): whole range and one day.

Goals: whole range under 300 ms, one day under 5 ms. Prints the median of repeated runs, for the
gap query alone and for the whole gap report (which also counts stored and off-session bars).
Usage: python bench/gap_query.py [--years 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from xau_pipeline.clock import EPOCH
from xau_pipeline.market.bars import Bar
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.gaps import MISSING_SLOTS, PLAN_FOR_LONG_WINDOWS, find_gaps
from xau_pipeline.store.upsert import upsert_bars
from xau_pipeline_dev.testing import temporary_database

SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
M15 = TIMEFRAMES_BY_NAME["M15"]
CME = calendar("cme_gold")


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--years", type=int, default=10)
    years = parser.parse_args().years
    with temporary_database(SERVER, "xau_bench") as url:
        run(url, years)


def run(url: str, years: int) -> None:
    store = CandleStore(url)
    store.migrate()
    end = datetime(2026, 1, 1, tzinfo=UTC)
    start = end.replace(year=end.year - years)
    slots = CME.expected_slots(start, end, M15.bar)
    price = Decimal("1500.12345")
    # Every 1000th expected bar is left out, so the query has gaps to report.
    bars = [Bar(t, price, price + 1, price - 1, price) for i, t in enumerate(slots) if i % 1000]
    with store.engine.begin() as connection:
        upsert_bars(connection, "XAUUSD", "M15", bars)
    with store.engine.begin() as connection:
        connection.execute(sa.text("ANALYZE candles"))
    now = datetime.now(UTC)
    day = (datetime(2025, 6, 11, tzinfo=UTC), datetime(2025, 6, 12, tzinfo=UTC))
    print(f"{len(bars):,} M15 bars stored over {years} years ({len(slots) - len(bars)} expected bars missing)")

    with store.engine.connect() as connection:

        def query_only(window):
            sessions = CME.sessions(window[0] - M15.bar, window[1])
            params = {
                "symbol": "XAUUSD",
                "timeframe": "M15",
                "start": window[0],
                "end": window[1],
                "bar": M15.bar,
                "origin": EPOCH,
                "opens": [s[0] for s in sessions],
                "closes": [s[1] for s in sessions],
            }
            for setting in PLAN_FOR_LONG_WINDOWS:
                connection.exec_driver_sql(setting)
            return connection.execute(MISSING_SLOTS, params).all()

        def report(window):
            return find_gaps(connection, "XAUUSD", "M15", M15.bar, CME, *window, now, timedelta(0))

        assert len(query_only((start, end))) == len(slots) - len(bars)
        print(f"{'window':<12}{'gap query':>12}{'full report':>14}   goal")
        print(
            f"{'whole range':<12}{timed(lambda: query_only((start, end)), 7):>10.1f}ms"
            f"{timed(lambda: report((start, end)), 5):>12.1f}ms   < 300 ms"
        )
        print(
            f"{'one day':<12}{timed(lambda: query_only(day), 101):>10.2f}ms"
            f"{timed(lambda: report(day), 101):>12.2f}ms   < 5 ms"
        )


if __name__ == "__main__":
    main()
