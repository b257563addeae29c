"""Live bars under Twelve Data's publication delay: `make run`'s launcher against the stand-in.

For each pre-publication behaviour (`absent`, `provisional`), at the same time: the Twelve Data
stand-in in this process (its own socket; the free plan's 8 credits a minute and 800 a day; each
bar published 18-120 s after its close, 2 % of them 150-420 s), a fresh candle database on the
local PostgreSQL server (Dagster's storage in its schema `dagster`), and `python -m
xau_pipeline_dev.launch run` (the Dagster UI with its daemon: the schedules, the publication
sensors, the real clock) with XAU_HISTORY_START today. Nothing is clicked. Every 3 s the candle
table is read, as a trading system polling it would, and each bar's first stored moment, the
moment it became final and its values are noted against the stand-in's own record of when each bar
was published and what its final values are.

Prints, per behaviour and timeframe, for the bars that closed during the observed span (expected by
the symbol's calendar; the last PUBLICATION_WINDOW + 3 minutes of the run only settle them):
bars closed, stored, final; close -> first stored and close -> final (p50, p99, max); live credits
per closed bar (the schedules' and the publication sensor's calls); provisional values still stored
5 minutes after their publication; "provider returned nothing" verdicts of `no_gaps` on bars that
were only late. With --symbols 50 (and --per-minute 610): the spread between the first and the last
symbol's bar becoming final, per close.

Goals (issue 25): all closed bars stored final; 0 provisional values 5 minutes after publication;
close -> final p50 <= 150 s, p99 <= 240 s for delays within 2 minutes; 0 "provider returned nothing"
for late bars; live credits <= 1.25 per closed bar and series; 50 symbols: last symbol's bar final
within 30 s of the first's.

Usage: python bench/live_freshness.py [--minutes 65] [--modes absent,provisional]
                                      [--symbols 50 --per-minute 610 --modes absent --minutes 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from first_start import SERVER, free_port, launched, percentile, wait_for
from scale import stand_in_prices, symbols_setting

from xau_pipeline.market.bar_grid import utc_grid
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.publication import PUBLICATION_WINDOW
from xau_pipeline.market.symbols import parse_symbols
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline_dev.testing import temporary_database
from xau_pipeline_dev.twelvedata_standin import StandIn, StandInConfig

API_KEY = "bench-live-freshness-key"
POLL_SECONDS = 3
SETTLE_TAIL = PUBLICATION_WINDOW + timedelta(minutes=3)
PROVISIONAL_GRACE = timedelta(minutes=5)
RECENT = sa.text(
    'SELECT symbol, timeframe, "timestamp", open, high, low, close, final FROM candles WHERE "timestamp" >= :since'
)
# Live calls (the schedules' and the publication sensor's), each with the end of the window it asked for.
LIVE_CALLS = sa.text("SELECT interval, window_end, credits FROM api_calls WHERE kind = 'schedule' AND at >= :since")
CHECK_EVENTS = sa.text(
    "SELECT event FROM dagster.event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION' AND timestamp >= :since"
)


@dataclass
class Seen:
    """What the poller saw of one bar."""

    first_stored: float | None = None
    first_final: float | None = None
    wrong_after_grace: bool = False
    values: tuple = ()


@dataclass
class Run:
    mode: str
    stand_in: StandIn
    candles_url: str = ""
    seen: dict[tuple[str, str, datetime], Seen] = field(default_factory=lambda: defaultdict(Seen))


def poll(run: Run, since: datetime, stop: threading.Event) -> None:
    """Every POLL_SECONDS: each bar's first stored and first final moment, and whether values still
    differed from the published ones 5 minutes after their publication."""
    engine = sa.create_engine(run.candles_url, poolclass=sa.pool.NullPool)
    truth: dict[tuple[str, str, datetime], tuple] = {}
    while not stop.is_set():
        now = time.time()
        try:
            with engine.connect() as connection:
                rows = connection.execute(RECENT, {"since": since - timedelta(days=1, hours=1)}).all()
        except sa.exc.DBAPIError:  # the schema is migrated by the launcher after the poll starts
            stop.wait(POLL_SECONDS)
            continue
        for symbol, tf, opens, o, h, lo, c, final in rows:
            seen = run.seen[(symbol, tf, opens)]
            seen.first_stored = seen.first_stored or now
            if final and seen.first_final is None:
                seen.first_final = now
            seen.values = (o, h, lo, c)
            key = (symbol, tf, opens)
            interval = next(t.interval for t in TIMEFRAMES if t.name == tf)
            api_symbol = next(s.api_symbol for s in SYMBOLS if s.name == symbol)
            published = run.stand_in.published_at(api_symbol, interval, opens).timestamp()
            if now > published + PROVISIONAL_GRACE.total_seconds():
                if key not in truth:
                    (bar,) = run.stand_in.bars(api_symbol, interval, opens, opens + timedelta(seconds=1), final=True)
                    truth[key] = tuple(Decimal(str(bar[k])) for k in ("open", "high", "low", "close"))
                if truth[key] != tuple(Decimal(str(v)) for v in seen.values):
                    seen.wrong_after_grace = True
        stop.wait(POLL_SECONDS)
    engine.dispose()


def verdicts_and_credits(candles_url: str, since: datetime, until: datetime) -> tuple[int, dict[str, int]]:
    """`no_gaps` evaluations since `since` that listed a bar as "provider returned nothing", and the
    live credits (schedules and publication sensor) per interval spent on bars closing in [since, until]:
    a live call asks up to the newest bar closed 30 s before it, so the bar it is for is the slot
    holding its window's end."""
    count = 0
    engine = sa.create_engine(candles_url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        events = connection.execute(CHECK_EVENTS, {"since": since.replace(tzinfo=None)}).scalars().all()
        calls = connection.execute(LIVE_CALLS, {"since": since}).all()
    engine.dispose()

    def find(node) -> int | None:
        if isinstance(node, dict):
            if "provider returned nothing" in node and isinstance(node["provider returned nothing"], dict):
                return node["provider returned nothing"].get("value")
            for value in node.values():
                found = find(value)
                if found is not None:
                    return found
        elif isinstance(node, list):
            for value in node:
                found = find(value)
                if found is not None:
                    return found
        return None

    for text in events:
        if (find(json.loads(text)) or 0) > 0:
            count += 1
    live: dict[str, int] = defaultdict(int)
    for interval, window_end, credits in calls:
        bar = next(t.bar for t in TIMEFRAMES if t.interval == interval)
        slot = utc_grid(bar).slot_of(window_end - timedelta(microseconds=1))[0]
        if since <= slot + bar <= until:
            live[interval] += credits
    return count, dict(live)


def report(run: Run, began: datetime, ended: datetime, tail: timedelta) -> None:
    counted_until = ended - tail
    print(f"\n== before publication: {run.mode}; bars closing {began:%H:%M:%S}..{counted_until:%H:%M:%S} UTC")
    empty, live = verdicts_and_credits(run.candles_url, began, counted_until)
    all_closed = 0
    spreads: list[float] = []
    for tf in TIMEFRAMES:
        closes: dict[datetime, list[float]] = defaultdict(list)
        closed = stored = final = wrong = 0
        to_stored: list[float] = []
        to_final: list[float] = []
        late = 0
        late_to_final: list[float] = []
        for symbol in SYMBOLS:
            grid = utc_grid(tf.bar)  # the stand-in serves UTC grids
            for slot, close in calendar(symbol.calendar).expected_slot_bounds(began - tf.bar, counted_until, grid):
                if not began <= close <= counted_until:
                    continue
                closed += 1
                seen = run.seen.get((symbol.name, tf.name, slot))
                delay = run.stand_in.published_at(symbol.api_symbol, tf.interval, slot) - close
                is_late = delay > timedelta(minutes=2)
                late += is_late
                if seen is None or seen.first_stored is None:
                    continue
                stored += 1
                to_stored.append(seen.first_stored - close.timestamp())
                if seen.first_final is not None:
                    final += 1
                    to_final.append(seen.first_final - close.timestamp())
                    closes[close].append(seen.first_final)
                    if is_late:
                        late_to_final.append(seen.first_final - (close + delay).timestamp())
                wrong += seen.wrong_after_grace
        all_closed += closed
        for moments in closes.values():
            if len(moments) > 1:
                spreads.append(max(moments) - min(moments))
        credits = live.get(tf.interval, 0)
        print(
            f"  {tf.name:<3} closed {closed}, stored {stored}, final {final} ({late} published after 2 min); "
            f"close->stored p50 {percentile(to_stored, 0.5):.0f} s p99 {percentile(to_stored, 0.99):.0f} s "
            f"max {max(to_stored, default=math.nan):.0f} s; close->final p50 {percentile(to_final, 0.5):.0f} s "
            f"p99 {percentile(to_final, 0.99):.0f} s max {max(to_final, default=math.nan):.0f} s; "
            f"live credits {credits} ({credits / closed if closed else math.nan:.2f} a closed bar); "
            f"provisional values 5 min after publication {wrong}"
            + (
                f"; late bars publication->final max {max(late_to_final):.0f} s ({len(late_to_final)})"
                if late_to_final
                else ""
            )
        )
    print(f"  no_gaps evaluations with 'provider returned nothing': {empty}")
    if spreads:
        print(
            f"  first -> last symbol's bar final, per close: p50 {percentile(spreads, 0.5):.1f} s, "
            f"max {max(spreads):.1f} s ({len(spreads)} closes)"
        )


SYMBOLS = parse_symbols("XAU/USD")


def main() -> None:
    global SYMBOLS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=65.0, help="how long to observe closes (default 65)")
    parser.add_argument("--modes", default="absent,provisional", help="before-publication behaviours, run at once")
    parser.add_argument("--symbols", type=int, default=1, help="how many symbols (default 1: XAU/USD)")
    parser.add_argument("--per-minute", type=int, default=8, help="credits a minute (default 8, the free plan)")
    parser.add_argument(
        "--late-share", type=float, default=0.02, help="share of bars published 150-420 s after their close (0.02)"
    )
    parser.add_argument(
        "--tail-minutes",
        type=float,
        default=SETTLE_TAIL.total_seconds() / 60,
        help="minutes to let the last closes settle (default: the publication window + 3)",
    )
    args = parser.parse_args()
    tail = timedelta(minutes=args.tail_minutes)
    per_day = 800 if args.per_minute <= 8 else 1_000_000
    setting = "XAU/USD" if args.symbols == 1 else symbols_setting(args.symbols)
    SYMBOLS = parse_symbols(setting)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        contexts = []
        for mode in args.modes.split(","):
            prices = {k: Decimal(v) for k, v in stand_in_prices(args.symbols).items()} if args.symbols > 1 else None
            config = StandInConfig(
                api_key=API_KEY,
                credits_per_minute=args.per_minute,
                credits_per_day=per_day,
                before_publication=mode,
                publication_late_share=args.late_share,
                # With many symbols a paid plan: none is refused as outside it.
                **({"symbols": prices, "plan_gated": ()} if prices else {}),
            )
            run = Run(mode, StandIn(config).start())
            database = temporary_database(SERVER, f"xau_live_{mode}")
            run.candles_url = database.__enter__()
            contexts.append(database)
            home = Path(tmp) / mode
            home.mkdir()
            ui_port = free_port()
            env = {
                **os.environ,
                "TWELVE_DATA_API_KEY": API_KEY,
                "TWELVE_DATA_BASE_URL": run.stand_in.url,
                "TWELVE_DATA_CREDITS_PER_MINUTE": str(args.per_minute),
                "TWELVE_DATA_CREDITS_PER_DAY": str(per_day),
                "XAU_SYMBOLS": setting,
                "XAU_HISTORY_START": datetime.now(UTC).date().isoformat(),
                "XAU_DATABASE_URL": run.candles_url,
                "XAU_UI_PORT": str(ui_port),
                "XAU_API_PORT": str(free_port()),
                "DAGSTER_HOME": str(home),
            }
            launcher = launched(env, home)
            launcher.__enter__()
            contexts.append(launcher)
            if not wait_for(f"http://127.0.0.1:{ui_port}/server_info", 300):
                raise SystemExit(f"the UI did not answer within 5 minutes (see {home}/launch.log)")
            runs.append(run)
        began = datetime.now(UTC)
        print(f"observing from {began:%Y-%m-%d %H:%M:%S} UTC for {args.minutes:.0f} min + {tail} to settle", flush=True)
        stop = threading.Event()
        pollers = [threading.Thread(target=poll, args=(run, began, stop), daemon=True) for run in runs]
        for poller in pollers:
            poller.start()
        time.sleep(args.minutes * 60 + tail.total_seconds())
        ended = datetime.now(UTC)
        stop.set()
        for poller in pollers:
            poller.join()
        for run in runs:
            report(run, began, ended, tail)
        for context in reversed(contexts):
            context.__exit__(None, None, None)
        for run in runs:
            run.stand_in.stop()


if __name__ == "__main__":
    main()
