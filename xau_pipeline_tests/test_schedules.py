from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest

from xau_pipeline.defs.automation.schedules import build_candle_schedule, grid_follows_the_store, tick_request
from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import daily_partitions
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.bar_grid import new_york_close_grid
from xau_pipeline.market.bars import Bar
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES, TIMEFRAMES_BY_NAME
from xau_pipeline.store.upsert import upsert_bars

UTC = UTC
GOLD = Symbol("XAU/USD")
PARTITIONS = daily_partitions("2024-01-01")
ASSETS = {tf.name: build_candle_asset(GOLD, tf, PARTITIONS) for tf in TIMEFRAMES}
SCHEDULES = {tf.name: build_candle_schedule(tf, {GOLD: ASSETS[tf.name]}, PARTITIONS) for tf in TIMEFRAMES}
REPOSITORY: list = []
NY = {"H4": new_york_close_grid(timedelta(hours=4)), "D1": new_york_close_grid(timedelta(days=1))}


@pytest.fixture(scope="module")
def instance():
    """An in-memory instance: a schedule's tick stores nothing, and on the project's PostgreSQL storage
    (conftest's `dagster_instance`) each of the ~120 ticks a day in test_live_cost_of_a_day spends about
    0.1 s in its queries (2 s for this file, 40 s there)."""
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.fixture(autouse=True)
def repository(store, instance):
    """H4 and D1 schedules read the grid off the stored bars: an empty store is the UTC grid at phase 0."""
    resources = {
        "twelvedata": TwelveDataResource(api_key="unused"),
        "candle_store": CandleStoreResource(database_url=store.url),
    }
    defs = dg.Definitions(assets=list(ASSETS.values()), schedules=list(SCHEDULES.values()), resources=resources)
    # With an instance given, Dagster does not build an ephemeral one per tick for the resources.
    REPOSITORY[:] = [defs.get_repository_def(), resources, instance]
    return store


def tick(timeframe: str, at: datetime):
    repository_def, resources, instance = REPOSITORY
    # Only the H4 and D1 schedules take a resource (building resources costs a Dagster instance per tick).
    needs_store = grid_follows_the_store(TIMEFRAMES_BY_NAME[timeframe])
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        repository_def=repository_def,
        resources=resources if needs_store else None,
    ) as context:
        return SCHEDULES[timeframe].evaluate_tick(context)


@pytest.mark.parametrize(
    ("timeframe", "at", "partition", "bar_open"),
    [
        ("M15", datetime(2024, 3, 13, 10, 17, tzinfo=UTC), "2024-03-13", "2024-03-13T10:00Z"),
        ("H1", datetime(2024, 3, 13, 11, 2, tzinfo=UTC), "2024-03-13", "2024-03-13T10:00Z"),
        ("H4", datetime(2024, 3, 13, 12, 2, tzinfo=UTC), "2024-03-13", "2024-03-13T08:00Z"),
        ("D1", datetime(2024, 3, 14, 0, 2, tzinfo=UTC), "2024-03-13", "2024-03-13T00:00Z"),
        ("M15", datetime(2024, 3, 14, 0, 2, tzinfo=UTC), "2024-03-13", "2024-03-13T23:45Z"),
        # US DST began 2024-03-10: the Sunday open moved from 23:00 to 22:00 UTC.
        ("H1", datetime(2024, 3, 10, 23, 2, tzinfo=UTC), "2024-03-10", "2024-03-10T22:00Z"),
        # In winter the daily break is 22:00-23:00 UTC, so the 21:00 bar trades.
        ("H1", datetime(2024, 1, 10, 22, 2, tzinfo=UTC), "2024-01-10", "2024-01-10T21:00Z"),
        # Monday 00:02: the Sunday D1 bar holds the first hours of the week.
        ("D1", datetime(2024, 3, 11, 0, 2, tzinfo=UTC), "2024-03-10", "2024-03-10T00:00Z"),
    ],
)
def test_each_tick_requests_the_partition_of_the_bar_that_just_closed(timeframe, at, partition, bar_open):
    """Ticks run two minutes after a close; the partition is the UTC day of that bar's open."""
    result = tick(timeframe, at)
    (request,) = result.run_requests
    assert request.partition_key == partition
    assert request.run_key == f"candles_{timeframe.lower()}:{bar_open}"
    assert request.asset_selection == [ASSETS[timeframe].key]


@pytest.mark.parametrize(
    ("timeframe", "at"),
    [
        ("H1", datetime(2024, 3, 16, 12, 2, tzinfo=UTC)),  # Saturday
        ("D1", datetime(2024, 3, 17, 0, 2, tzinfo=UTC)),  # the Saturday bar
        ("M15", datetime(2024, 3, 3, 22, 47, tzinfo=UTC)),  # Sunday before the winter open at 23:00
        ("H1", datetime(2024, 3, 13, 22, 2, tzinfo=UTC)),  # the summer daily break, 21:00-22:00 UTC
        ("H1", datetime(2024, 3, 29, 12, 2, tzinfo=UTC)),  # Good Friday
    ],
)
def test_ticks_while_the_market_is_closed_are_skipped_with_a_reason(timeframe, at):
    result = tick(timeframe, at)
    assert not result.run_requests
    assert "market closed" in result.skip_message


# What users rely on, written out (README, "Schedules"; the maintenance job's 03:10 UTC): two minutes
# after each close, when Twelve Data has published the bar; H4 and D1 hourly, a run only when a bar of
# the series' grid closed. Literal on purpose: a change of any of them must fail here.
SHIPPED_SCHEDULES = {
    "candles_m15_on_close": ("2,17,32,47 * * * *", "UTC", dg.DefaultScheduleStatus.RUNNING),
    "candles_h1_on_close": ("2 * * * *", "UTC", dg.DefaultScheduleStatus.RUNNING),
    "candles_h4_on_close": ("2 * * * *", "UTC", dg.DefaultScheduleStatus.RUNNING),
    "candles_d1_on_close": ("2 * * * *", "UTC", dg.DefaultScheduleStatus.RUNNING),
    "dagster_maintenance_daily": ("10 3 * * *", "UTC", dg.DefaultScheduleStatus.RUNNING),
}


def test_the_shipped_schedules_tick_on_their_documented_crons_in_utc():
    """The code location's schedules (as `make run` loads them, two symbols), not ones built here."""
    from xau_pipeline.definitions import build_definitions
    from xau_pipeline.settings import Settings

    defs = build_definitions(Settings.from_env({"XAU_SYMBOLS": "XAU/USD,XAG/USD", "TWELVE_DATA_API_KEY": "unused"}))
    shipped = {s.name: (s.cron_schedule, s.execution_timezone, s.default_status) for s in defs.schedules}
    assert shipped == SHIPPED_SCHEDULES
    # The schedules this file ticks are built as the code location builds them.
    assert {f"candles_{name.lower()}_on_close": s.cron_schedule for name, s in SCHEDULES.items()} == {
        name: cron for name, (cron, _, _) in SHIPPED_SCHEDULES.items() if name.startswith("candles_")
    }


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
        # Saturday: only the 00:02 ticks for Friday's D1 bar and its 20:00 H4 bar (open until 21:00).
        (datetime(2024, 3, 16, tzinfo=UTC), 2),
        # Sunday: the open at 22:00 UTC; M15 22:00..23:30 and H1 22:00 close before midnight.
        (datetime(2024, 3, 17, tzinfo=UTC), 7 + 1),
    ],
)
def test_live_cost_of_a_day(repository, day, credits):
    """Goal: at most 127 credits on a full trading day, nothing while the market is closed.

    H4 and D1 tick hourly; their decision is tick_request on the grid their schedule reads from the
    store (evaluating those schedules through Dagster builds their resources on a fresh instance at
    each tick, a fifth of a second each: the tests above cover that path)."""
    grids = {tf.name: repository.grid(GOLD.name, tf).grid for tf in TIMEFRAMES if grid_follows_the_store(tf)}

    def requests_a_run(name: str, at: datetime) -> bool:
        if name in grids:
            return isinstance(tick_request(GOLD, TIMEFRAMES_BY_NAME[name], at, PARTITIONS, grids[name]), dg.RunRequest)
        return bool(tick(name, at).run_requests)

    calls = sum(
        requests_a_run(name, at)
        for name, schedule in SCHEDULES.items()
        for at in cron_ticks(schedule.cron_schedule, day)
    )
    assert calls == credits <= 127


def store_grid(store, timeframe: str, grid, start: datetime, end: datetime) -> None:
    """Bars of a New York-anchored feed in the store: the schedule learns the grid from them."""
    tf = TIMEFRAMES_BY_NAME[timeframe]
    opens = calendar("cme_gold").expected_slots(start, end, tf.bar, grid=grid)
    price = Decimal("2300")
    with store.engine.begin() as connection:
        upsert_bars(connection, "XAUUSD", tf.name, [Bar(t, price, price, price, price) for t in opens])


@pytest.mark.parametrize(
    ("timeframe", "at", "partition", "bar_open"),
    [
        # Summer: the 17:00 New York H4 bar opens 17:00 UTC and closes 21:00 UTC.
        ("H4", datetime(2024, 7, 10, 21, 2, tzinfo=UTC), "2024-07-10", "2024-07-10T17:00Z"),
        # Winter: it opens 18:00 UTC (13:00 EST) and closes 22:00 UTC.
        ("H4", datetime(2024, 1, 10, 22, 2, tzinfo=UTC), "2024-01-10", "2024-01-10T18:00Z"),
        # The D1 bar from Tuesday 17:00 to Wednesday 17:00 New York; its partition is its open's UTC day.
        ("D1", datetime(2024, 7, 10, 21, 2, tzinfo=UTC), "2024-07-09", "2024-07-09T21:00Z"),
        ("D1", datetime(2024, 1, 10, 22, 2, tzinfo=UTC), "2024-01-09", "2024-01-09T22:00Z"),
        # Monday 22:02 in winter: the bar that opened Sunday 22:00 UTC, Sunday evening and Monday.
        ("D1", datetime(2024, 1, 8, 22, 2, tzinfo=UTC), "2024-01-07", "2024-01-07T22:00Z"),
    ],
)
def test_new_york_anchored_ticks_follow_the_real_close(repository, timeframe, at, partition, bar_open):
    store_grid(
        repository, timeframe, NY[timeframe], datetime(2023, 12, 1, tzinfo=UTC), datetime(2024, 8, 1, tzinfo=UTC)
    )
    (request,) = tick(timeframe, at).run_requests
    assert request.partition_key == partition
    assert request.run_key == f"candles_{timeframe.lower()}:{bar_open}"


@pytest.mark.parametrize(
    ("timeframe", "at", "reason"),
    [
        # The UTC-grid closes are not closes of the New York grid.
        ("H4", datetime(2024, 7, 10, 20, 2, tzinfo=UTC), "no H4 bar of the grid 4h anchored America/New_York 17:00"),
        ("D1", datetime(2024, 7, 11, 0, 2, tzinfo=UTC), "no D1 bar of the grid 1day anchored America/New_York 17:00"),
        # Friday 17:00 New York to Saturday: gold is closed.
        ("D1", datetime(2024, 7, 13, 21, 2, tzinfo=UTC), "market closed"),
    ],
)
def test_new_york_anchored_ticks_between_closes_are_skipped(repository, timeframe, at, reason):
    store_grid(
        repository, timeframe, NY[timeframe], datetime(2023, 12, 1, tzinfo=UTC), datetime(2024, 8, 1, tzinfo=UTC)
    )
    result = tick(timeframe, at)
    assert not result.run_requests and result.skip_message.startswith(reason)


def test_h4_and_d1_with_an_empty_store_tick_hourly_on_the_utc_grid():
    assert (
        "no H4 bar of the grid 4h anchored UTC 00:00 closes"
        in tick("H4", datetime(2024, 3, 13, 13, 2, tzinfo=UTC)).skip_message
    )
    assert tick("D1", datetime(2024, 3, 13, 23, 2, tzinfo=UTC)).skip_message.startswith("no D1 bar")


def test_one_schedule_ticks_for_every_symbol_with_one_run_per_closed_bar():
    """Gold (CME hours) and a 24x7 symbol on one M15 schedule: one run for both on a weekday, only the
    24x7 one's on a Saturday, each run selecting exactly the assets whose bar closed."""
    coin = Symbol("BTC/USD", calendar="24x7")
    assets = {GOLD: ASSETS["M15"], coin: build_candle_asset(coin, TIMEFRAMES_BY_NAME["M15"], PARTITIONS)}
    schedule = build_candle_schedule(TIMEFRAMES_BY_NAME["M15"], assets, PARTITIONS)
    assert schedule.name == "candles_m15_on_close"
    defs = dg.Definitions(assets=list(assets.values()), schedules=[schedule], resources=REPOSITORY[1])
    repository_def = defs.get_repository_def()

    def requests(at: datetime):
        with dg.build_schedule_context(scheduled_execution_time=at, repository_def=repository_def) as context:
            return schedule.evaluate_tick(context).run_requests

    (weekday,) = requests(datetime(2024, 3, 13, 10, 17, tzinfo=UTC))
    assert weekday.run_key == "candles_m15:2024-03-13T10:00Z" and weekday.partition_key == "2024-03-13"
    assert weekday.asset_selection == [assets[GOLD].key, assets[coin].key]
    (saturday,) = requests(datetime(2024, 3, 16, 12, 2, tzinfo=UTC))
    assert saturday.asset_selection == [assets[coin].key]
