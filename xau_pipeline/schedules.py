"""Schedules one minute after each candle closes, requesting the partition that holds that candle."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import Timeframe
from xau_pipeline.trading_calendar import calendar

ONE_MINUTE = timedelta(minutes=1)


def closed_bar_open(tick: datetime, timeframe: Timeframe) -> datetime:
    """The open of the bar that closed one minute before `tick` (the crons run at close + 1 min)."""
    return tick.replace(second=0, microsecond=0) - ONE_MINUTE - timeframe.bar


def tick_request(
    symbol: Symbol, timeframe: Timeframe, tick: datetime, partitions_def: dg.TimeWindowPartitionsDefinition
) -> dg.RunRequest | dg.SkipReason:
    """The run for the bar that just closed, or why there is none (market closed: no API call)."""
    bar_open = closed_bar_open(tick, timeframe)
    if not calendar(symbol.calendar).sessions(bar_open, bar_open + timeframe.bar):
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


def build_candle_schedule(
    symbol: Symbol,
    timeframe: Timeframe,
    asset: dg.AssetsDefinition,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    cron_schedule: str | None = None,
) -> dg.ScheduleDefinition:
    """Materialize (and check) the partition of each newly closed `timeframe` bar, one minute after its close."""

    @dg.schedule(
        name=f"{symbol.key_prefix}_{timeframe.key_suffix}_on_close",
        target=asset,
        cron_schedule=cron_schedule or timeframe.schedule_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{symbol.api_symbol} {timeframe.name}: one minute after each bar closes, fetch it (skipped while the market is closed).",
    )
    def on_close(context: dg.ScheduleEvaluationContext):
        return tick_request(symbol, timeframe, context.scheduled_execution_time, partitions_def)

    return on_close
