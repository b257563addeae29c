"""Schedules two minutes after each candle closes, requesting the partition that holds that candle.

Two minutes (publication.SETTLE): Twelve Data publishes a bar 0.3 to 2 minutes after its close, so
a bar asked for then is final in one call; a bar published later is the publication sensor's.

One schedule per timeframe over every symbol: a tick asks for one run per closed bar, selecting the
assets of all symbols whose bar closed then (with 50 symbols, 4 schedules and a handful of runs an
hour rather than 200 schedules and a run per symbol; see docs/architecture.md, "Schedules and sensors").

M15 and H1 bars close on fixed UTC minutes whatever the feed's grid, so their crons tick exactly
then. Where H4 and D1 bars close depends on the series' grid (xau_pipeline.market.bar_grid): 00/04/08... UTC
on the UTC grid, 21:00 or 22:00 UTC for the 17:00 New York grid depending on DST. Their schedules
therefore tick every hour at :02 and read the grid off the stored bars (`CandleStore.grid`, over the
last 400 days, `CandleStore.recent_grid`); a tick requests a run only when a bar of that grid closed two minutes before.
Ticks at which no bar closes are skipped with a reason (no API call, no run). A cron derived from
the grid at definition time was the alternative: it would need the database when the code loads,
could not follow a UTC cron through DST, and would go stale when the feed's grid is first learnt.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial

import dagster as dg

from xau_pipeline.defs.resources import CandleStoreResource
from xau_pipeline.market.bar_grid import Grid
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.publication import SETTLE
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import Timeframe

# The crons tick this long after a close (timeframes.py derives them from it).
AFTER_CLOSE = SETTLE


def closed_bar_open(tick: datetime, timeframe: Timeframe) -> datetime:
    """The open of the UTC-grid bar that closed AFTER_CLOSE before `tick` (the crons run then)."""
    return tick.replace(second=0, microsecond=0) - AFTER_CLOSE - timeframe.bar


def grid_follows_the_store(timeframe: Timeframe) -> bool:
    """Whether the timeframe's closes depend on the detected grid (bars longer than an hour)."""
    return timedelta(hours=1) % timeframe.bar != timedelta(0)


def tick_request(
    symbol: Symbol,
    timeframe: Timeframe,
    tick: datetime,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    grid: Grid | None = None,
) -> dg.RunRequest | dg.SkipReason:
    """The run for the bar that closed AFTER_CLOSE before `tick`, or why there is none (market
    closed: no API call). With `grid`, the bar of that grid closing then, and a skip when none
    does (the hourly H4/D1 ticks); without, the bar opening `bar` earlier (the crons tick on its close)."""
    if grid is None:
        bar_open = closed_bar_open(tick, timeframe)
        close = bar_open + timeframe.bar
    else:
        close = tick.replace(second=0, microsecond=0) - AFTER_CLOSE
        found = grid.slot_closing_at(close)
        if found is None:
            return dg.SkipReason(
                f"no {timeframe.name} bar of the grid {grid.describe()} closes at {close:%Y-%m-%d %H:%M} UTC"
            )
        bar_open = found
    if not calendar(symbol.calendar).sessions(bar_open, close):
        return dg.SkipReason(
            f"market closed: the {timeframe.name} bar opening {bar_open:%Y-%m-%d %H:%M} UTC overlaps no {symbol.calendar} session"
        )
    partition_key = bar_open.strftime("%Y-%m-%d")
    first_key = partitions_def.get_first_partition_key()
    if first_key is None or partition_key < first_key:
        return dg.SkipReason(f"{partition_key} is before the first partition")
    return dg.RunRequest(
        partition_key=partition_key,
        run_key=f"{symbol.key_prefix}/{timeframe.key_suffix}:{bar_open:%Y-%m-%dT%H:%MZ}",
        tags={"xau/bar_open": bar_open.isoformat()},
    )


def tick_requests(
    assets: Mapping[Symbol, dg.AssetsDefinition],
    timeframe: Timeframe,
    tick: datetime,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    grids: Mapping[Symbol, Grid] | None = None,
) -> list[dg.RunRequest] | dg.SkipReason:
    """One run per bar that closed AFTER_CLOSE before `tick`, over every symbol whose bar it is (one
    run for all symbols on the same grid), or why there is none (each symbol's reason, the first few)."""
    by_bar: dict[str, list[tuple[Symbol, dg.RunRequest]]] = {}
    skipped: list[str] = []
    for symbol in assets:
        decision = tick_request(symbol, timeframe, tick, partitions_def, grids[symbol] if grids else None)
        if isinstance(decision, dg.SkipReason):
            reason = decision.skip_message or ""
            skipped.append(f"{symbol.api_symbol}: {reason}" if len(assets) > 1 else reason)
        else:
            by_bar.setdefault(decision.tags["xau/bar_open"], []).append((symbol, decision))
    if not by_bar:
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        return dg.SkipReason(shown)
    requests = []
    for bar_open, members in by_bar.items():
        first = members[0][1]
        requests.append(
            dg.RunRequest(
                partition_key=first.partition_key,
                run_key=f"{timeframe.key_suffix}:{datetime.fromisoformat(bar_open):%Y-%m-%dT%H:%MZ}",
                tags={"xau/bar_open": bar_open},
                asset_selection=[assets[symbol].key for symbol, _ in members],
            )
        )
    return requests


def build_candle_schedule(
    timeframe: Timeframe,
    assets: Mapping[Symbol, dg.AssetsDefinition],
    partitions_def: dg.TimeWindowPartitionsDefinition,
    cron_schedule: str | None = None,
) -> dg.ScheduleDefinition:
    """Materialize (and check) the partition of each newly closed `timeframe` bar, two minutes after its
    close: one schedule over every symbol's `timeframe` asset, one run per bar for all its symbols."""
    name = f"{timeframe.key_suffix}_on_close"
    description = (
        f"{timeframe.name} of {len(assets)} symbol(s): two minutes after each bar closes (when it is published), one run fetching it for every "
        "symbol whose bar it is (skipped while the market is closed)."
    )
    cron = cron_schedule or timeframe.schedule_cron
    targets = list(assets.values())

    schedule = partial(
        dg.schedule,
        name=name,
        target=targets,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    if not grid_follows_the_store(timeframe):

        @schedule(description=description)
        def on_close(context: dg.ScheduleEvaluationContext):
            return tick_requests(assets, timeframe, context.scheduled_execution_time, partitions_def)

        return on_close

    @schedule(
        description=description + " Ticks hourly; a bar closes when the grid of each series' stored bars says so."
    )
    def on_grid_close(context: dg.ScheduleEvaluationContext, candle_store: CandleStoreResource):
        tick = context.scheduled_execution_time
        store = candle_store.store()
        grids = {symbol: store.recent_grid(symbol.name, timeframe, tick) for symbol in assets}
        return tick_requests(assets, timeframe, tick, partitions_def, grids)

    return on_grid_close
