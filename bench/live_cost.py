"""The live credit cost per UTC day of the four on-close schedules for one symbol.

Walks every tick of the schedule crons in `xau_pipeline.market.timeframes` (UTC) over whole weeks and
counts a credit for each tick that asks for a bar: a tick requests the bar that closed one minute
before it, and is skipped when that bar overlaps no session of the symbol's calendar. Each
request is one API call (one day's partition of one timeframe is far below 5000 bars).

The skip rule is `xau_pipeline.defs.automation.schedules.tick_request` when that module is importable (the rule
the deployed schedules use); otherwise this script's own model of it (printed which). The two
are compared tick by tick whenever both are available.

Goal: <= 127 credits on a full trading day (96 + 24 + 6 + 1 ticks), 0 for bars inside closures.
Usage: python bench/live_cost.py [--symbol XAU/USD] [--week 2024-03-10 ...]  (weeks start on Sunday)
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import parse_symbol
from xau_pipeline.market.timeframes import TIMEFRAMES, Timeframe

UTC = UTC
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
# US summer time (DST began that Sunday), US winter time, and Good Friday (CME closed).
DEFAULT_WEEKS = ("2024-03-10", "2024-01-21", "2024-03-24")
FULL_DAY_OPEN_HOURS = 23  # a UTC day open but for the daily break is a full trading day


def cron_field(text: str, low: int, high: int) -> set[int]:
    """One field of a five-field cron: `*`, a number or a comma list (all the timeframes use)."""
    if text == "*":
        return set(range(low, high + 1))
    return {int(part) for part in text.split(",")}


def cron_ticks(cron: str, start: datetime, end: datetime) -> Iterator[datetime]:
    """Every minute in [start, end) matched by `cron` (minute and hour fields; the rest must be `*`)."""
    minute, hour, *rest = cron.split()
    if rest != ["*", "*", "*"]:
        raise ValueError(f"this bench reads minute/hour crons only, not {cron!r}")
    minutes, hours = cron_field(minute, 0, 59), cron_field(hour, 0, 23)
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        for h in sorted(hours):
            for m in sorted(minutes):
                tick = day.replace(hour=h, minute=m)
                if start <= tick < end:
                    yield tick
        day += DAY


def own_rule(symbol, timeframe: Timeframe) -> Callable[[datetime], bool]:
    cal = calendar(symbol.calendar)

    def requests_a_bar(tick: datetime) -> bool:
        # H4 and D1 tick hourly: only a tick one minute after a UTC-grid close asks for a bar.
        if (tick - MINUTE - datetime(1970, 1, 1, tzinfo=UTC)) % timeframe.bar:
            return False
        bar_open = tick - MINUTE - timeframe.bar
        return cal.count_expected(bar_open, bar_open + timeframe.bar, timeframe.bar) > 0

    return requests_a_bar


def schedule_rule(symbol, timeframe: Timeframe) -> Callable[[datetime], bool] | None:
    """The deployed schedules' decision, if `xau_pipeline.defs.automation.schedules.tick_request` exists."""
    try:
        import dagster as dg

        from xau_pipeline.defs.automation.schedules import grid_follows_the_store, tick_request
        from xau_pipeline.defs.candles.partitions import daily_partitions
        from xau_pipeline.market.bar_grid import utc_grid
    except ImportError:
        return None
    partitions = daily_partitions("2000-01-01")
    # H4 and D1 tick hourly and decide on the series' grid; here the UTC grid at phase 0.
    grid = utc_grid(timeframe.bar) if grid_follows_the_store(timeframe) else None
    return lambda tick: isinstance(tick_request(symbol, timeframe, tick, partitions, grid), dg.RunRequest)


def open_hours(cal, day: datetime) -> float:
    return sum((b - a).total_seconds() for a, b in cal.sessions(day, day + DAY)) / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbol", default="XAU/USD", help="a symbol, optionally with its calendar: XAU/USD:cme_gold")
    parser.add_argument("--week", action="append", help="a Sunday (YYYY-MM-DD); repeatable")
    args = parser.parse_args()
    symbol = parse_symbol(args.symbol)
    cal = calendar(symbol.calendar)
    rules = {tf.name: (schedule_rule(symbol, tf), own_rule(symbol, tf)) for tf in TIMEFRAMES}
    using_schedules = all(deployed is not None for deployed, _ in rules.values())
    print(f"Live cost of the four on-close schedules for {symbol.api_symbol} ({symbol.calendar}), credits per UTC day")
    print(
        "skip rule: "
        + (
            "xau_pipeline.defs.automation.schedules.tick_request (checked against this script's model)"
            if using_schedules
            else "this script's model (xau_pipeline.defs.automation.schedules not importable)"
        )
    )
    full_days: list[tuple[int, str]] = []
    disagreements: list[str] = []
    wasted = 0  # calls for a bar that overlaps no session: must stay 0
    for week in args.week or DEFAULT_WEEKS:
        sunday = datetime.combine(date.fromisoformat(week), datetime.min.time(), UTC)
        if sunday.weekday() != 6:
            parser.error(f"--week {week} is not a Sunday")
        print(f"\nweek of {sunday:%Y-%m-%d}")
        print(f"{'day':<15}{'open h':>7}" + "".join(f"{tf.name:>5}" for tf in TIMEFRAMES) + f"{'total':>7}  ticks")
        week_total = 0
        for offset in range(7):
            day = sunday + offset * DAY
            credits: dict[str, int] = defaultdict(int)
            ticks = 0
            for tf in TIMEFRAMES:
                deployed, model = rules[tf.name]
                decide = deployed if using_schedules else model
                for tick in cron_ticks(tf.schedule_cron, day, day + DAY):
                    ticks += 1
                    call = decide(tick)
                    if using_schedules and call != model(tick):
                        disagreements.append(f"{tf.name} {tick:%Y-%m-%d %H:%M}")
                    bar_open = tick - MINUTE - tf.bar
                    if call and not cal.sessions(bar_open, bar_open + tf.bar):
                        wasted += 1
                    credits[tf.name] += call
            total = sum(credits.values())
            week_total += total
            hours = open_hours(cal, day)
            full = hours >= FULL_DAY_OPEN_HOURS
            if full:
                full_days.append((total, f"{day:%a %Y-%m-%d}"))
            print(
                f"{day:%a %Y-%m-%d} {hours:>6.1f}"
                + "".join(f"{credits[tf.name]:>5}" for tf in TIMEFRAMES)
                + f"{total:>7}  {ticks}"
                + ("" if full else "  (not a full trading day)")
            )
        print(f"{'week':<15}{'':>7}{'':>20}{week_total:>7}")
    worst, worst_day = max(full_days)
    print(f"\nmax on a full trading day: {worst} credits ({worst_day}); goal <= 127")
    print(f"calls for bars overlapping no session: {wasted}; goal 0")
    if using_schedules:
        print(
            f"ticks where schedules.tick_request and the model disagree: {len(disagreements)}"
            + (f" e.g. {disagreements[:3]}" if disagreements else "")
        )


if __name__ == "__main__":
    main()
