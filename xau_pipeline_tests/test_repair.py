from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from xau_pipeline.defs.automation import repair_sensor as repair
from xau_pipeline.defs.automation.repair_sensor import (
    FULL_SCAN_EVERY,
    REPAIR_SERIES_TAG,
    RepairPlan,
    build_repair_sensor,
    plan_repairs,
    repair_requests,
)
from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, daily_partitions
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.bars import Bar, FetchedWindow
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.tables import api_calls

# These tests count credits or partitions of "today": keep them clear of a UTC midnight.
pytestmark = pytest.mark.usefixtures("away_from_midnight")

UTC = UTC
GOLD = Symbol("XAU/USD")
M15 = TIMEFRAMES_BY_NAME["M15"]
CME = calendar("cme_gold")
NOW = datetime(2024, 3, 20, tzinfo=UTC)
PARTITIONS = daily_partitions("2024-03-11")


def day(n: int) -> tuple[datetime, datetime]:
    start = datetime(2024, 3, n, tzinfo=UTC)
    return start, start + timedelta(days=1)


def fill(store, n: int, fetched_at: list[datetime], missing: int | None = None):
    """Store day n's bars but slot `missing`, recording one fetch at each of `fetched_at`."""
    slots = CME.expected_slots(*day(n), M15.bar)
    bars = [
        Bar(s, Decimal("2160"), Decimal("2161"), Decimal("2159"), Decimal("2160.5"))
        for i, s in enumerate(slots)
        if i != missing
    ]
    windows = [FetchedWindow(*day(n), at, len(bars)) for at in fetched_at]
    store.write("XAUUSD", M15, bars, windows)


def plan(store, now=NOW):
    return plan_repairs(store, GOLD, M15, PARTITIONS, now)


def test_the_plan_names_exactly_the_partitions_to_repair(store):
    for n in (11, 17, 18, 19):
        fill(store, n, [NOW])  # complete
    fill(store, 12, [NOW - timedelta(hours=2)], missing=5)  # provider gap, one try 2 h ago: due (after 1 h)
    # the 13th: never fetched
    fill(store, 14, [NOW - timedelta(minutes=30)], missing=7)  # provider gap tried 30 min ago: not yet
    fill(store, 15, [datetime(2024, 3, 16, tzinfo=UTC), NOW - timedelta(days=2)], missing=9)  # retried 2 days ago: due
    result = plan(store)
    assert result.never_fetched == ["2024-03-13"]
    assert result.provider_retry == ["2024-03-12", "2024-03-15"]
    assert result.given_up == []


def test_provider_gaps_are_retried_per_backoff_then_left_alone(store):
    """Tries at 1 h, 1 day and 1 week after the previous one; after the third retry, never again."""
    tries = [datetime(2024, 3, 13, tzinfo=UTC)]
    for wait in (timedelta(hours=1), timedelta(days=1), timedelta(weeks=1)):
        with store.engine.begin() as connection:
            connection.execute(sa.text("TRUNCATE candles, fetch_coverage"))
        fill(store, 12, tries, missing=5)
        assert plan(store, tries[-1] + wait - timedelta(minutes=1)).provider_retry == []
        assert plan(store, tries[-1] + wait).provider_retry == ["2024-03-12"]
        tries.append(tries[-1] + wait)  # the retry happened, and found nothing again
    with store.engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE candles, fetch_coverage"))
    fill(store, 12, tries, missing=5)
    far_later = tries[-1] + timedelta(days=365)
    assert plan(store, far_later).provider_retry == []
    assert "2024-03-12" in plan(store, far_later).given_up


def sensor_for(store, stand_in_url="http://127.0.0.1:9", days=3, timeframe=M15, **budget):
    recent = daily_partitions((datetime.now(UTC) - timedelta(days=days)).date().isoformat())
    asset = build_candle_asset(GOLD, timeframe, recent)
    sensor = build_repair_sensor(timeframe, {GOLD: asset}, recent)
    resources = {
        "candle_store": CandleStoreResource(database_url=store.url),
        "twelvedata": TwelveDataResource(api_key="unused", base_url=stand_in_url, **budget),
    }
    defs = dg.Definitions(assets=[asset], sensors=[sensor], resources=resources)
    return sensor, defs, recent


def test_the_sensor_respects_the_repair_share(store, dagster_instance):
    sensor, defs, _ = sensor_for(store, credits_per_day=100, repair_credit_share=0.05)
    with store.engine.begin() as connection:
        connection.execute(
            api_calls.insert(),
            [
                {
                    "at": datetime.now(UTC),
                    "credits": 1,
                    "kind": "repair",
                    "symbol": "XAU/USD",
                    "interval": "15min",
                    "outcome": "ok",
                }
                for _ in range(5)
            ],
        )
    with dg.build_sensor_context(
        instance=dagster_instance, repository_def=defs.get_repository_def(), resources=defs.resources
    ) as context:
        result = sensor.evaluate_tick(context)
        assert not result.run_requests
        assert "repair share of today's credits is spent (5 of 5 used by repairs" in result.skip_message


def test_repairs_share_one_bound_newest_first():
    keys = [f"2024-03-{n:02d}" for n in range(1, 21)]
    plan = RepairPlan(never_fetched=keys[10:13], provider_retry=keys[:5] + keys[15:18])
    requests = repair_requests(plan, "op", "xauusd/candles_m15", NOW, limit=5)
    spans = [
        (r.partition_key,) if r.partition_key else (r.tags[PARTITION_RANGE_START_TAG], r.tags[PARTITION_RANGE_END_TAG])
        for r in requests
    ]
    # three never-fetched days, then the newest two retries; a lone day is a single-partition run
    assert spans == [("2024-03-11", "2024-03-13"), ("2024-03-17", "2024-03-18")]
    assert requests[1].run_config == {"ops": {"op": {"config": {"force_refetch": True}}}}
    assert repair_requests(RepairPlan(never_fetched=["2024-03-05"]), "op", "a", NOW)[0].partition_key == "2024-03-05"


def test_never_fetched_days_are_left_to_the_catch_up_and_due_provider_gaps_refetched(store, dagster_instance):
    """Days never fetched: no repair run (the history catch-up fetches them at the plan's pace), and the tick
    says so; a provider gap tried over an hour ago: one forced run for its day."""
    sensor, defs, recent = sensor_for(store, days=5)

    def tick():
        with dg.build_sensor_context(
            instance=dagster_instance, repository_def=defs.get_repository_def(), resources=defs.resources
        ) as context:
            return sensor.evaluate_tick(context)

    result = tick()
    assert not result.run_requests
    assert "never-fetched day(s) are the history catch-up's" in result.skip_message
    day_key = recent.get_partition_keys()[-3]
    start = datetime.fromisoformat(day_key).replace(tzinfo=UTC)
    store.write(
        "XAUUSD", M15, [], [FetchedWindow(start, start + timedelta(days=1), datetime.now(UTC) - timedelta(hours=2), 0)]
    )
    requests = tick().run_requests
    if CME.sessions(start, start + timedelta(days=1)):
        (request,) = requests
        assert request.partition_key == day_key
        assert request.run_config == {"ops": {"xauusd__candles_m15": {"config": {"force_refetch": True}}}}
    else:  # a weekend day has no expected bar, so no provider gap
        assert requests == []


def test_one_sensor_per_timeframe_repairs_every_symbol_but_one_whose_repair_is_in_progress(store, dagster_instance):
    """Gold and silver both hold a provider gap due for a retry; silver's last repair run is still going:
    the timeframe's one sensor asks for gold's alone, tagged with its series."""
    gold, silver = Symbol("XAU/USD", "24x7"), Symbol("XAG/USD", "24x7")
    recent = daily_partitions((datetime.now(UTC) - timedelta(days=5)).date().isoformat())
    assets = {symbol: build_candle_asset(symbol, M15, recent) for symbol in (gold, silver)}
    sensor = build_repair_sensor(M15, assets, recent)
    assert sensor.name == "candles_m15_gap_repair"
    resources = {
        "candle_store": CandleStoreResource(database_url=store.url),
        "twelvedata": TwelveDataResource(api_key="unused", base_url="http://127.0.0.1:9"),
    }
    defs = dg.Definitions(assets=list(assets.values()), sensors=[sensor], resources=resources)
    day_key = recent.get_partition_keys()[-3]
    start = datetime.fromisoformat(day_key).replace(tzinfo=UTC)
    tried = datetime.now(UTC) - timedelta(hours=2)
    for symbol in (gold, silver):
        store.write(symbol.name, M15, [], [FetchedWindow(start, start + timedelta(days=1), tried, 0)])
    tags = {"dagster/sensor_name": sensor.name, REPAIR_SERIES_TAG: "xagusd/candles_m15"}
    dagster_instance.add_run(dg.DagsterRun(job_name="earlier_repair", status=dg.DagsterRunStatus.STARTED, tags=tags))
    with dg.build_sensor_context(
        instance=dagster_instance, repository_def=defs.get_repository_def(), resources=defs.resources
    ) as context:
        (request,) = sensor.evaluate_tick(context).run_requests
        assert request.asset_selection == [assets[gold].key] and request.partition_key == day_key
        assert request.tags[REPAIR_SERIES_TAG] == "xauusd/candles_m15"


def test_after_its_first_scan_a_series_is_scanned_from_where_a_fetch_changed_it(store, monkeypatch, dagster_instance):
    """The first tick scans the whole fetched history; the next ones from the newest day, or from the
    oldest window fetched since (here the catch-up's, into a day it had never fetched, which left a
    provider gap), or from the oldest gap still pending; once a day, all of it again."""
    gold = Symbol("XAU/USD", "24x7")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    recent = daily_partitions((today - timedelta(days=10)).date().isoformat())
    asset = build_candle_asset(gold, M15, recent)
    sensor = build_repair_sensor(M15, {gold: asset}, recent)
    resources = {
        "candle_store": CandleStoreResource(database_url=store.url),
        "twelvedata": TwelveDataResource(api_key="unused", base_url="http://127.0.0.1:9"),
    }
    defs = dg.Definitions(assets=[asset], sensors=[sensor], resources=resources)
    clock = [today + timedelta(hours=12)]
    monkeypatch.setattr(repair, "utc_now", lambda: clock[0])
    never, hole = today - timedelta(days=6), today - timedelta(days=6, hours=-10)  # a day, and 10:00 in it

    def bars(start: datetime, end: datetime, but: datetime | None = None) -> list[Bar]:
        price = Decimal("2160")
        slots = [start + i * M15.bar for i in range(int((end - start) / M15.bar))]
        return [Bar(s, price, price, price, price) for s in slots if s != but]

    def write(start: datetime, end: datetime, fetched_at: datetime, but: datetime | None = None) -> None:
        stored = bars(start, end, but)
        store.write(gold.name, M15, stored, [FetchedWindow(start, end, fetched_at, len(stored))])

    cursor: list[str | None] = [None]

    def tick():
        with dg.build_sensor_context(
            instance=dagster_instance,
            cursor=cursor[0],
            repository_def=defs.get_repository_def(),
            resources=defs.resources,
        ) as context:
            result = sensor.evaluate_tick(context)
            cursor[0] = result.cursor
            return result

    first = today - timedelta(days=10)
    write(first, never, clock[0] - timedelta(hours=3))
    write(never + timedelta(days=1), today + timedelta(hours=10), clock[0] - timedelta(hours=3))
    result = tick()
    assert not result.run_requests and "scanned from" not in result.skip_message  # the whole history
    clock[0] += timedelta(minutes=15)
    result = tick()
    assert not result.run_requests
    assert f"scanned from {today:%Y-%m-%d}; nothing before it changed since the last scan" in result.skip_message
    write(never, never + timedelta(days=1), clock[0] + timedelta(minutes=1), but=hole)  # the catch-up's run
    clock[0] += timedelta(minutes=75)  # the gap is due for its first retry
    (request,) = tick().run_requests
    assert request.partition_key == f"{never:%Y-%m-%d}"
    clock[0] += timedelta(minutes=15)  # the retry not run yet: the pending gap keeps its day scanned
    (request,) = tick().run_requests
    assert request.partition_key == f"{never:%Y-%m-%d}"
    write(hole, hole + M15.bar, clock[0])  # the retry found the bar
    clock[0] += timedelta(minutes=15)
    result = tick()
    assert not result.run_requests and f"scanned from {never:%Y-%m-%d}" in result.skip_message
    clock[0] += timedelta(minutes=15)
    assert f"scanned from {today:%Y-%m-%d}" in tick().skip_message
    clock[0] += FULL_SCAN_EVERY
    assert "scanned from" not in tick().skip_message
