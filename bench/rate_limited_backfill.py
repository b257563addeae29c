"""A full-speed backfill under the free plan's 8 credits a minute, through the shared credit budget.

The stand-in enforces 8 credits per calendar minute (day unlimited) and would answer 429 to any
call over it; the client takes every credit from a CreditBudget (8 a minute) kept in a database
of its own on the local PostgreSQL server. Fetches and stores M15, H1, H4 and D1 of XAU/USD with
`ingest` (window by window, each in its own transaction), one timeframe after another, no Dagster.

Prints calls, 429 answers (each one a credit wasted), elapsed time, bars, and the pace:
calls per minute against 8, elapsed against the least time 8 a minute allows for that many calls
((ceil(calls / 8) - 1) minutes plus the last call's own time; goal >= 90 %), and bars per minute
against the 8 x 5000 = 40,000 ceiling.

Usage: python bench/rate_limited_backfill.py [--start 2021-01-01] [--end 2025-01-01]
Takes about (calls / 8) minutes: 28 calls, a little over 3 minutes, for the defaults.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections import Counter
from datetime import UTC, datetime

from xau_pipeline.ingest import ingest
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.credit_budget import BudgetSettings, CreditBudget
from xau_pipeline.store.database import engine_for
from xau_pipeline.store.migrate import migrate
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline.twelvedata.windows import MAX_BARS_PER_CALL
from xau_pipeline_dev.testing import temporary_database
from xau_pipeline_dev.twelvedata_standin import StandIn, StandInConfig

SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PER_MINUTE = 8
API_KEY = "bench-key"


def utc_date(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=utc_date, default=utc_date("2021-01-01"))
    parser.add_argument("--end", type=utc_date, default=utc_date("2025-01-01"))
    parser.add_argument("--verbose", action="store_true", help="log every call and every wait for credits")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    with temporary_database(SERVER, "xau_bench") as url:
        migrate(engine_for(url))
        run(args.start, args.end, url)


def run(start: datetime, end: datetime, url: str) -> None:
    cal = calendar("cme_gold")
    config = StandInConfig(api_key=API_KEY, credits_per_minute=PER_MINUTE, credits_per_day=None, weekend_bars=False)
    budget = CreditBudget(engine_for(url), BudgetSettings(per_minute=PER_MINUTE, per_day=800), "backfill", "bench")
    rows = []
    store = CandleStore(url)
    with StandIn(config) as stand_in:
        client = TwelveDataClient(API_KEY, stand_in.url, budget=budget)
        began = time.perf_counter()
        for tf in TIMEFRAMES:
            t0 = time.perf_counter()
            report = ingest(client, store, Symbol("XAU/USD"), tf, start, end, run_id="bench")
            if report.error is not None:
                raise report.error
            minimum = math.ceil(cal.count_expected(start, end, tf.bar) / MAX_BARS_PER_CALL)
            bars = report.counts.inserted + report.counts.updated + report.counts.unchanged
            rows.append((tf.name, bars, report.calls, minimum, time.perf_counter() - t0))
        elapsed = time.perf_counter() - began
        served = [r for r in stand_in.requests if r.path == "/time_series"]
        last_call = max((r.at for r in served), default=None)
        first_call = min((r.at for r in served), default=None)

    refused = sum(1 for r in served if r.code == 429)
    calls = len(served)
    bars = sum(r[1] for r in rows)
    per_minute = Counter(r.at.replace(second=0, microsecond=0) for r in served)
    minutes = elapsed / 60
    # The least time 8 a minute allows: the first 8 calls at once, each further 8 a minute later.
    span = (last_call - first_call).total_seconds() if calls else 0.0
    tail = elapsed - span  # time not spent waiting between the first and last call: the calls' own work
    least = (math.ceil(calls / PER_MINUTE) - 1) * 60 + tail
    print(
        f"Rate-limited backfill of XAU/USD {start:%Y-%m-%d}..{end:%Y-%m-%d}: stand-in at {PER_MINUTE} credits/min, "
        f"client through the PostgreSQL credit budget ({PER_MINUTE}/min)"
    )
    print(f"{'timeframe':<10}{'bars':>9}{'calls':>7}{'minimum':>9}{'seconds':>9}")
    for name, n_bars, n_calls, minimum, seconds in rows:
        print(f"{name:<10}{n_bars:>9}{n_calls:>7}{minimum:>9}{seconds:>9.1f}")
    print(f"{'total':<10}{bars:>9}{calls:>7}{sum(r[3] for r in rows):>9}{elapsed:>9.1f}")
    print(
        f"429 answers: {refused} ({refused} credit(s) wasted); most calls in one calendar minute: "
        f"{max(per_minute.values(), default=0)} (limit {PER_MINUTE})"
    )
    print(
        f"elapsed {elapsed:.1f} s; least possible at {PER_MINUTE}/min for {calls} calls {least:.1f} s "
        f"-> {least / elapsed:.0%} of full speed (goal >= 90 %)"
    )
    print(
        f"calls per minute: {calls / minutes:.2f} (limit {PER_MINUTE}; above it only through the first minute's burst)"
    )
    print(
        f"bars per minute: {bars / minutes:,.0f} ({bars / minutes / (PER_MINUTE * MAX_BARS_PER_CALL):.0%} of the "
        f"{PER_MINUTE * MAX_BARS_PER_CALL:,} ceiling; calls averaged {bars / max(calls, 1):,.0f} bars, "
        f"{bars / max(calls, 1) / MAX_BARS_PER_CALL:.0%} of a full page; over 100 % only through the first minute's burst)"
    )


if __name__ == "__main__":
    main()
