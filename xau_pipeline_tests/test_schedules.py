from datetime import UTC, datetime

import dagster as dg
import pytest

from xau_pipeline.assets import build_candle_asset
from xau_pipeline.partitions import daily_partitions
from xau_pipeline.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.schedules import build_candle_schedule
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import TIMEFRAMES

UTC = UTC
GOLD = Symbol("XAU/USD")
PARTITIONS = daily_partitions("2024-01-01")
ASSETS = {tf.name: build_candle_asset(GOLD, tf, PARTITIONS) for tf in TIMEFRAMES}
SCHEDULES = {tf.name: build_candle_schedule(GOLD, tf, ASSETS[tf.name], PARTITIONS) for tf in TIMEFRAMES}
DEFS = dg.Definitions(
    assets=list(ASSETS.values()),
    schedules=list(SCHEDULES.values()),
    resources={
        "twelvedata": TwelveDataResource(api_key="unused"),
        "candle_store": CandleStoreResource(database_url="unused"),
    },
)


def tick(timeframe: str, at: datetime):
    context = dg.build_schedule_context(scheduled_execution_time=at, repository_def=DEFS.get_repository_def())
    return SCHEDULES[timeframe].evaluate_tick(context)


@pytest.mark.parametrize(
    ("timeframe", "at", "partition", "bar_open"),
    [
        ("M15", datetime(2024, 3, 13, 10, 16, tzinfo=UTC), "2024-03-13", "2024-03-13T10:00Z"),
        ("H1", datetime(2024, 3, 13, 11, 1, tzinfo=UTC), "2024-03-13", "2024-03-13T10:00Z"),
        ("H4", datetime(2024, 3, 13, 12, 1, tzinfo=UTC), "2024-03-13", "2024-03-13T08:00Z"),
        ("D1", datetime(2024, 3, 14, 0, 1, tzinfo=UTC), "2024-03-13", "2024-03-13T00:00Z"),
        ("M15", datetime(2024, 3, 14, 0, 1, tzinfo=UTC), "2024-03-13", "2024-03-13T23:45Z"),
        # US DST began 2024-03-10: the Sunday open moved from 23:00 to 22:00 UTC.
        ("H1", datetime(2024, 3, 10, 23, 1, tzinfo=UTC), "2024-03-10", "2024-03-10T22:00Z"),
        # In winter the daily break is 22:00-23:00 UTC, so the 21:00 bar trades.
        ("H1", datetime(2024, 1, 10, 22, 1, tzinfo=UTC), "2024-01-10", "2024-01-10T21:00Z"),
        # Monday 00:01: the Sunday D1 bar holds the first hours of the week.
        ("D1", datetime(2024, 3, 11, 0, 1, tzinfo=UTC), "2024-03-10", "2024-03-10T00:00Z"),
    ],
)
def test_each_tick_requests_the_partition_of_the_bar_that_just_closed(timeframe, at, partition, bar_open):
    """Ticks run one minute after a close; the partition is the UTC day of that bar's open."""
    result = tick(timeframe, at)
    (request,) = result.run_requests
    assert request.partition_key == partition
    assert request.run_key == f"xauusd/candles_{timeframe.lower()}:{bar_open}"


@pytest.mark.parametrize(
    ("timeframe", "at"),
    [
        ("H1", datetime(2024, 3, 16, 12, 1, tzinfo=UTC)),  # Saturday
        ("D1", datetime(2024, 3, 17, 0, 1, tzinfo=UTC)),  # the Saturday bar
        ("M15", datetime(2024, 3, 3, 22, 46, tzinfo=UTC)),  # Sunday before the winter open at 23:00
        ("H1", datetime(2024, 3, 13, 22, 1, tzinfo=UTC)),  # the summer daily break, 21:00-22:00 UTC
        ("H1", datetime(2024, 3, 29, 12, 1, tzinfo=UTC)),  # Good Friday
    ],
)
def test_ticks_while_the_market_is_closed_are_skipped_with_a_reason(timeframe, at):
    result = tick(timeframe, at)
    assert not result.run_requests
    assert "market closed" in result.skip_message


def test_schedules_run_by_default_on_candle_close_crons():
    assert {s.cron_schedule for s in SCHEDULES.values()} == {tf.schedule_cron for tf in TIMEFRAMES}
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in SCHEDULES.values())
    assert all(s.execution_timezone == "UTC" for s in SCHEDULES.values())


def cron_ticks(cron: str, day: datetime) -> list[datetime]:
    """The ticks of a `minute hour * * *` cron (comma lists or *) on one UTC day."""
    minutes, hours = cron.split()[:2]
    hour_values = range(24) if hours == "*" else [int(h) for h in hours.split(",")]
    return [day.replace(hour=h, minute=int(m)) for h in hour_values for m in minutes.split(",")]


@pytest.mark.parametrize(
    ("day", "credits"),
    [
        # Summer Wednesday: 23 trading hours, 92 M15 + 23 H1 + 6 H4 (the 20:00 bar overlaps 20:00-21:00) + 1 D1.
        (datetime(2024, 3, 13, tzinfo=UTC), 92 + 23 + 6 + 1),
        # Saturday: only the 00:01 ticks for Friday's D1 bar and its 20:00 H4 bar (open until 21:00).
        (datetime(2024, 3, 16, tzinfo=UTC), 2),
        # Sunday: the open at 22:00 UTC; M15 22:00..23:30 and H1 22:00 close before midnight.
        (datetime(2024, 3, 17, tzinfo=UTC), 7 + 1),
    ],
)
def test_live_cost_of_a_day(day, credits):
    """Goal: at most 127 credits on a full trading day, nothing while the market is closed."""
    calls = sum(
        bool(tick(name, at).run_requests)
        for name, schedule in SCHEDULES.items()
        for at in cron_ticks(schedule.cron_schedule, day)
    )
    assert calls == credits <= 127
