"""One-year backfill of all four timeframes through Dagster against the local stand-in: API calls.

Prints the API calls per timeframe against the minimum ceil(bars / 5000). Its wall time is an
in-process `dg.materialize` on a temporary SQLite instance, not the user's path: bench/run_shape.py
times that (one run as the UI launches it, PostgreSQL storage, against a do-nothing twin).
Usage: python bench/backfill.py [--year 2025]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from datetime import UTC, datetime

import dagster as dg

from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, daily_partitions
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.settings import apply_dagster_environment
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.twelvedata.windows import MAX_BARS_PER_CALL
from xau_pipeline_dev.testing import temporary_database
from xau_pipeline_dev.twelvedata_standin import StandIn, StandInConfig

apply_dagster_environment()  # as `make run` does

SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--year", type=int, default=2025)
    year = parser.parse_args().year
    with temporary_database(SERVER, "xau_bench") as url:
        CandleStore(url).migrate()  # stores never migrate themselves
        run(year, url)


def run(year: int, url: str) -> None:
    gold = Symbol("XAU/USD")
    partitions = daily_partitions(f"{year}-01-01")
    assets = [build_candle_asset(gold, tf, partitions) for tf in TIMEFRAMES]
    start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    config = StandInConfig(api_key="bench-key", credits_per_minute=None, credits_per_day=None, weekend_bars=False)
    with StandIn(config) as stand_in, dg.DagsterInstance.local_temp() as instance:
        resources = {
            "twelvedata": TwelveDataResource(
                api_key="bench-key", base_url=stand_in.url, credits_per_minute=10_000, credits_per_day=100_000
            ),
            "candle_store": CandleStoreResource(database_url=url),
        }
        began = time.perf_counter()
        result = dg.materialize(
            assets,
            instance=instance,
            resources=resources,
            tags={PARTITION_RANGE_START_TAG: f"{year}-01-01", PARTITION_RANGE_END_TAG: f"{year}-12-31"},
        )
        wall = time.perf_counter() - began
        assert result.success
        calls_by_interval: dict[str, int] = {}
        for request in stand_in.requests:
            interval = request.params.get("interval", "?")
            calls_by_interval[interval] = calls_by_interval.get(interval, 0) + 1
        print(f"One-year backfill ({year}) of XAU/USD through Dagster, stand-in without limits")
        print(f"{'timeframe':<10}{'bars':>8}{'calls':>7}{'minimum':>9}")
        total_calls = total_minimum = 0
        for tf in TIMEFRAMES:
            bars = len(stand_in.bars("XAU/USD", tf.interval, start, end))
            minimum = math.ceil(bars / MAX_BARS_PER_CALL)
            calls = calls_by_interval.get(tf.interval, 0)
            total_calls += calls
            total_minimum += minimum
            print(f"{tf.name:<10}{bars:>8}{calls:>7}{minimum:>9}")
        print(f"{'total':<10}{'':>8}{total_calls:>7}{total_minimum:>9}")
        print(f"wall time: {wall:.1f} s (dg.materialize in-process; the user's path: bench/run_shape.py)")


if __name__ == "__main__":
    main()
