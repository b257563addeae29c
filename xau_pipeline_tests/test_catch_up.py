"""History catch-up: ticks on a stopped clock, runs against the stand-in and a real PostgreSQL."""

import math
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from xau_pipeline.defs.automation import catch_up_sensor as catch_up
from xau_pipeline.defs.automation.catch_up_sensor import (
    SeriesProgress,
    build_catch_up_sensor,
    history_progress,
    newest_stretch,
    plan_catch_up,
    spare_for_an_unknown_feed,
    stored_days_above,
    unmaterialized_days,
)
from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import CATCH_UP_TAG, daily_partitions
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.store.credit_budget import BudgetSettings, minute_limit
from xau_pipeline_tests.conftest import TEST_API_KEY

# Dagster runs; the ledger's "today" is the database's.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("away_from_midnight")]

GOLD = Symbol("XAU/USD")
CME = calendar("cme_gold")
HISTORY_START = datetime(2024, 1, 1, tzinfo=UTC)
# The stopped clock: the sensor sees 2024 as if it were 2025-01-01 12:00 UTC.
NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)
PARTITIONS = daily_partitions("2024-01-01")
ASSETS = [build_candle_asset(GOLD, tf, PARTITIONS) for tf in TIMEFRAMES]
SENSOR = build_catch_up_sensor(GOLD, ASSETS, PARTITIONS)


def minimum_credits(stand_in, start=HISTORY_START, end=datetime(2025, 1, 1, tzinfo=UTC)) -> dict[str, int]:
    """ceil(bars served / 5000) per timeframe: the least any fetch of the whole history can pay."""
    return {tf.name: math.ceil(len(stand_in.bars("XAU/USD", tf.interval, start, end)) / 5000) for tf in TIMEFRAMES}


@pytest.fixture
def stopped_clock(monkeypatch):
    monkeypatch.setattr(catch_up, "utc_now", lambda: NOW)


def harness(store, stand_in, api_key=TEST_API_KEY, **budget):
    resources = {
        "candle_store": CandleStoreResource(database_url=store.url),
        "twelvedata": TwelveDataResource(
            api_key=api_key,
            base_url=stand_in.url,
            backoff_seconds=0.01,
            **{"credits_per_minute": 8, "credits_per_day": 100_000, "scheduled_symbols": 0, **budget},
        ),
    }
    return dg.Definitions(assets=ASSETS, sensors=[SENSOR], resources=resources), resources


def tick(defs, instance, cursor=None):
    with dg.build_sensor_context(
        instance=instance, repository_def=defs.get_repository_def(), resources=defs.resources, cursor=cursor
    ) as context:
        result = SENSOR.evaluate_tick(context)
        return result, context.cursor


def execute(request, instance, resources, raise_on_error=True):
    tags = {**request.tags, **({"dagster/partition": request.partition_key} if request.partition_key else {})}
    return dg.materialize(ASSETS, instance=instance, resources=resources, tags=tags, raise_on_error=raise_on_error)


def a_minute_passes(store, days=0):
    """The stopped clock moves on: the ledger's calls are a minute (and `days`) older."""
    with store.engine.begin() as connection:
        connection.execute(sa.text("UPDATE api_calls SET at = at - :age"), {"age": timedelta(minutes=1, days=days)})


def calls(store) -> dict[str, int]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT interval, sum(credits) FROM api_calls GROUP BY interval"))
        by_interval = dict(rows.all())
    return {tf.name: int(by_interval.get(tf.interval, 0)) for tf in TIMEFRAMES}


def asked_twice(stand_in) -> list:
    """Request windows asked for more than once (nothing stored may be asked for again)."""
    seen, twice = set(), []
    for record in stand_in.requests:
        if record.path.endswith("time_series"):
            key = (record.params.get("interval"), record.params.get("start_date"), record.params.get("end_date"))
            if key in seen:
                twice.append(key)
            seen.add(key)
    return twice


def test_a_year_never_fetched_is_complete_after_the_expected_ticks_at_the_minimum_credits(
    store, stand_in, dagster_instance, stopped_clock
):
    """366 days from an empty database at 8 credits a run: the ticks the credits need, each run the newest
    days, every partition of every series materialized, and no call beyond ceil(bars / 5000) per series."""
    defs, resources = harness(store, stand_in)
    minimum = minimum_credits(stand_in)
    expected_ticks = math.ceil(sum(minimum.values()) / 8)
    cursor, ticks, ranges, judged = None, 0, [], []
    while True:
        result, cursor = tick(defs, dagster_instance, cursor)
        if not result.run_requests:
            break
        (request,) = result.run_requests
        assert request.tags[CATCH_UP_TAG] == "XAUUSD"
        ranges.append(
            request.partition_key
            or (request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"])
        )
        run = execute(request, dagster_instance, resources)
        assert run.success
        judged += [(e.asset_key, e.check_name, e.partition) for e in run.get_asset_check_evaluations() if e.partition]
        # H1, H4 and D1 follow M15 in the same run, the first one included (nothing stored, a 24/7 feed)
        materialized = {e.asset_key for e in run.get_asset_materialization_events()}
        assert materialized == {asset.key for asset in ASSETS}, (ranges[-1], materialized)
        ticks += 1
        a_minute_passes(store)
        assert ticks <= expected_ticks, f"more ticks than the credits need: {ranges}"
    assert ticks == expected_ticks
    assert calls(store) == minimum
    # each day is judged once per check, though later runs' ranges re-cover days already done
    assert len(judged) == len(set(judged)) > 0
    assert result.skip_message == "history complete: every closed bar since 2024-01-01 was fetched"
    # newest first: the first run ends with the newest day, a later one reaches the history's start
    assert ranges[0][1] == "2024-12-31" and ranges[0][0] > "2024-01-01" and min(r[0] for r in ranges) == "2024-01-01"
    keys = set(PARTITIONS.get_partition_keys(current_time=datetime(2025, 1, 1, tzinfo=UTC))) - {"2025-01-01"}
    for asset in ASSETS:
        assert keys <= dagster_instance.get_materialized_partitions(asset.key), asset.key
    # once complete, the sensor looks again only after IDLE_RECHECK, without reading the store
    again, _ = tick(defs, dagster_instance, cursor)
    assert "history complete at 2025-01-01 12:00 UTC; next look at 12:15 UTC" in again.skip_message


def test_the_daily_limit_stops_catch_up_and_it_continues_the_next_day_without_asking_twice(
    store, stand_in, dagster_instance, stopped_clock
):
    """A backfill share of 5 credits a day: today's run takes 5, the next tick waits for midnight saying
    so, and tomorrow's runs fetch the rest, no window asked for twice and the minimum paid in all."""
    stand_in.reset()
    defs, resources = harness(store, stand_in, credits_per_day=5, schedule_credit_share=0.0)
    result, cursor = tick(defs, dagster_instance)
    (request,) = result.run_requests
    assert execute(request, dagster_instance, resources).success
    assert sum(calls(store).values()) == 5
    a_minute_passes(store)
    result, cursor = tick(defs, dagster_instance, cursor)
    assert not result.run_requests
    assert "backfill share of today's credits is spent" in result.skip_message
    assert "catch-up continues after" in result.skip_message
    for _ in range(3):  # the next days
        a_minute_passes(store, days=1)
        result, cursor = tick(defs, dagster_instance, cursor)
        if not result.run_requests:
            break
        (request,) = result.run_requests
        assert execute(request, dagster_instance, resources).success
    assert calls(store) == minimum_credits(stand_in)
    assert asked_twice(stand_in) == []


def test_a_run_stopped_by_the_daily_limit_keeps_what_it_fetched_and_the_next_day_pays_only_the_rest(
    store, stand_in, dagster_instance, stopped_clock
):
    """Another process spends today's credits after the tick: the run stops cleanly (no failure), marks
    only wholly fetched days, and the next day's catch-up asks for nothing it stored."""
    stand_in.reset()
    defs, resources = harness(store, stand_in, credits_per_day=8, schedule_credit_share=0.0)
    (request,) = tick(defs, dagster_instance)[0].run_requests
    with store.engine.begin() as connection:  # someone else's calls, taken after the tick
        connection.execute(
            sa.text(
                "INSERT INTO api_calls (at, credits, kind, symbol, interval, outcome) "
                "SELECT now() - interval '2 minutes', 1, 'backfill', 'EUR/USD', '1h', 'ok' FROM generate_series(1, 5)"
            )
        )
    result = execute(request, dagster_instance, resources)
    assert result.success
    assert sum(calls(store).values()) - 5 == 3
    # the days it could not fetch are not judged as gaps: no check failed
    assert [e.check_name for e in result.get_asset_check_evaluations() if not e.passed] == []
    for _ in range(4):
        a_minute_passes(store, days=1)
        tick_result, _ = tick(defs, dagster_instance)
        if not tick_result.run_requests:
            break
        (request,) = tick_result.run_requests
        assert execute(request, dagster_instance, resources).success
    spent = calls(store)
    spent["H1"] -= 5  # the other process's
    assert spent == minimum_credits(stand_in)
    assert asked_twice(stand_in) == []


def test_progress_is_the_stored_share_of_expected_bars(store, stand_in, dagster_instance, stopped_clock):
    """After one run of 4 credits: each series' share is its stored bars on expected slots over the closed
    expected slots, and what is left to fetch is what the credits did not reach."""
    # 4 credits a day for backfills: the run's allotment, and no wait for the minute
    defs, resources = harness(store, stand_in, credits_per_day=4, schedule_credit_share=0.0)
    (request,) = tick(defs, dagster_instance)[0].run_requests
    assert execute(request, dagster_instance, resources).success
    progress = {p.timeframe: p for p in history_progress(store, GOLD, HISTORY_START, NOW)}
    for tf in TIMEFRAMES:
        slots = CME.expected_slots(HISTORY_START, NOW, tf.bar)
        closed = [s for s in slots if s + tf.bar <= NOW]
        with store.engine.connect() as connection:
            stored = connection.execute(
                sa.text(
                    "SELECT count(*) FROM candles WHERE symbol = 'XAUUSD' AND timeframe = :tf AND \"timestamp\" = ANY(:slots)"
                ),
                {"tf": tf.name, "slots": closed},
            ).scalar_one()
        assert (progress[tf.name].expected, progress[tf.name].stored) == (len(closed), stored), tf.name
        assert progress[tf.name].share == stored / len(closed)
    # the run spent its 4 credits; the newest M15 days are stored, the rest is to fetch
    spent = sum(calls(store).values())
    assert spent == 4
    assert 0 < progress["M15"].share < 1
    assert sum(p.credits_to_go for p in progress.values()) == sum(minimum_credits(stand_in).values()) - spent


def test_status_and_health_show_the_same_share(store, stand_in, dagster_instance, stopped_clock, monkeypatch, capsys):
    """`xau-pipeline status`, `doctor` and GET /health report each series' stored share of the bars
    expected since XAU_HISTORY_START, as the progress figures compute it."""
    from datetime import date

    import requests

    from xau_pipeline.interfaces.cli import main
    from xau_pipeline_dev.testing import serving_in_thread

    defs, resources = harness(store, stand_in, credits_per_day=4, schedule_credit_share=0.0)
    (request,) = tick(defs, dagster_instance)[0].run_requests
    assert execute(request, dagster_instance, resources).success
    now = datetime.now(UTC)
    progress = {p.timeframe: p for p in history_progress(store, GOLD, HISTORY_START, now)}
    with serving_in_thread(store.url, history_start=date(2024, 1, 1)) as url:
        health = requests.get(f"{url}/health", timeout=10).json()
    for item in health["series"]:
        p = progress[item["timeframe"]]
        assert (item["expected_bars"], item["stored_bars"]) == (p.expected, p.stored)
        assert item["history_share"] == round(p.share, 4)
    monkeypatch.setenv("XAU_DATABASE_URL", store.url)
    monkeypatch.setenv("XAU_HISTORY_START", "2024-01-01")
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    m15 = progress["M15"]
    assert (
        f"XAU/USD M15  {m15.share:6.1%}  {m15.stored:>9,} of {m15.expected:>9,}  {m15.credits_to_go} credit(s)" in out
    )
    remaining = sum(p.credits_to_go for p in progress.values())
    assert f"XAU/USD: {remaining} credit(s) to go, about" in out
    main(["doctor"])
    (history,) = [line for line in capsys.readouterr().out.splitlines() if "history:" in line]
    assert history.startswith("ok ") and f"M15 {math.floor(m15.share * 1000) / 10:g}% ({m15.stored:,} of" in history


def test_days_fetched_whole_below_a_runs_range_join_the_next_runs_range():
    """A run's oldest page reaches below its range: the next run's range runs on over the days some
    asset has not materialized, up to the first day every asset has."""
    done = {"2024-03-01", "2024-03-02", "2024-03-03"}
    materialized = [done | {"2024-02-27", "2024-02-28"}, done]  # M15 alone has 02-27 and 02-28
    end = datetime(2024, 3, 4, tzinfo=UTC)
    assert stored_days_above(materialized, "2024-02-25", end) == "2024-02-29"
    assert stored_days_above(materialized, "2024-02-29", end) == "2024-02-29"
    assert stored_days_above([set(), set()], "2024-03-02", end) == "2024-03-03"  # never past `end`
    start = datetime(2024, 2, 27, tzinfo=UTC)
    assert unmaterialized_days(materialized, start, end) == ["2024-02-27", "2024-02-28", "2024-02-29"]
    # once nothing is left to fetch, one run per stretch, the newest first, not one over every day between
    assert newest_stretch(["2024-01-06", "2024-02-27", "2024-02-28"]) == ["2024-02-27", "2024-02-28"]
    assert newest_stretch([]) == []


def test_a_series_with_nothing_stored_gets_the_calls_a_feed_around_the_clock_needs():
    """Planned at a bar per expected slot, a first run's range takes up to 7/5 the calls on a 24/7 feed."""
    gold = Symbol("XAU/USD")
    now = datetime(2024, 6, 1, tzinfo=UTC)
    empty = SeriesProgress("M15", 1000, 0, ())
    spare = spare_for_an_unknown_feed(gold, empty, 5, now)
    assert 2 <= spare <= 3  # cme_gold: about 23 of 24 hours on 5 of 7 days
    assert spare_for_an_unknown_feed(gold, SeriesProgress("M15", 1000, 10, ()), 5, now) == 0  # density known
    assert spare_for_an_unknown_feed(gold, empty, 0, now) == 0


def test_the_plan_takes_the_newest_days_whose_windows_fit_the_allotment():
    day = timedelta(days=1)
    end = datetime(2024, 3, 1, tzinfo=UTC)
    m15 = [(end - 10 * day, end), (end - 20 * day - timedelta(hours=5), end - 10 * day)]
    d1 = [(end - 60 * day, end)]
    plan = plan_catch_up([m15, d1], HISTORY_START, allotment=2)
    # the third newest window ends 10 days back: the run starts there and pays for two windows
    assert (plan.first_day, plan.last_day, plan.credits, plan.credits_to_go) == ("2024-02-20", "2024-02-29", 2, 3)
    assert plan.credits_by_series == (1, 1)  # each series may spend its own windows, no more
    # a cut inside a day starts the run the day after: the window reaching into that day is not paid
    m15_inside = [(end - 10 * day + timedelta(hours=1), end), (end - 20 * day, end - 10 * day + timedelta(hours=1))]
    d1_inside = [(end - 60 * day, end - 10 * day + timedelta(hours=3))]
    plan = plan_catch_up([m15_inside, d1_inside], HISTORY_START, allotment=2)
    assert (plan.first_day, plan.credits) == ("2024-02-21", 1)
    assert plan_catch_up([m15, d1], HISTORY_START, allotment=8).first_day == "2024-01-01"
    assert plan_catch_up([[], []], HISTORY_START, allotment=8).first_day is None


def test_a_schedule_tick_during_catch_up_finds_its_credit_in_its_minute():
    """Second by second on a stopped clock: catch-up takes every credit the minute allows it; the
    schedules' calls after the 13:02 and 13:17 ticks still find theirs at once."""
    settings = BudgetSettings(per_minute=8, scheduled_symbols=1)
    taken: list[datetime] = []
    start = datetime(2026, 12, 3, 12, 55, tzinfo=UTC)
    waited = {}
    schedule_calls = {start.replace(hour=13, minute=2, second=s): "13:02" for s in (5, 10, 20, 30)} | {
        start.replace(hour=13, minute=17, second=25): "13:17"
    }
    for second in range(30 * 60):
        now = start + timedelta(seconds=second)
        in_minute = sum(now - timedelta(seconds=61) < at <= now for at in taken)
        if now in schedule_calls:
            limit, _ = minute_limit(settings, "schedule", now)
            waited[now] = in_minute + 1 > limit
            taken.append(now)
            continue
        limit, _ = minute_limit(settings, "backfill", now)
        while in_minute + 1 <= limit:
            taken.append(now)
            in_minute += 1
    assert waited and not any(waited.values())
    # catch-up still ran near the plan's pace: at least 7.5 of 8 credits a minute over the half hour
    assert len(taken) - len(schedule_calls) >= 7.5 * 30


def test_the_rest_of_a_day_after_its_d1_bar_costs_no_call(store, stand_in):
    """D1 fetched until 12:40 of its day: the sliver to midnight holds no D1 open, so neither the
    catch-up's plan nor ingest asks for it (it cost a credit every tick before)."""
    from xau_pipeline.defs.automation.catch_up_sensor import history_windows
    from xau_pipeline.ingest import ingest
    from xau_pipeline.market.bars import FetchedWindow
    from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
    from xau_pipeline.twelvedata.client import TwelveDataClient

    d1 = TIMEFRAMES_BY_NAME["D1"]
    start, end = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 6, tzinfo=UTC)
    fetched = FetchedWindow(start, end - timedelta(hours=11, minutes=20), end + timedelta(days=1), 0)
    store.write("XAUUSD", d1, [], [fetched])
    assert store.missing("XAUUSD", d1, start, end)  # the sliver is not covered
    assert history_windows(store, GOLD, d1, start, end) == []
    report = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url), store, GOLD, d1, start, end)
    assert report.calls == 0


def test_after_a_failed_run_the_catch_up_waits_before_trying_again(store, stand_in, stopped_clock, dagster_instance):
    """A wrong key: the run fails at its first call (a rejected call costs a credit); the next ticks
    do not launch another for AFTER_A_FAILURE, and say why."""
    defs, resources = harness(store, stand_in, api_key="not-the-key")
    (request,) = tick(defs, dagster_instance)[0].run_requests
    assert not execute(request, dagster_instance, resources, raise_on_error=False).success
    result, _ = tick(defs, dagster_instance)
    assert not result.run_requests
    assert "failed (see its log); next try at" in result.skip_message


def test_xau_catch_up_off_starts_the_sensor_stopped_and_a_bad_value_is_refused():
    from xau_pipeline.settings import Settings, SettingsError

    env = {"XAU_DATABASE_URL": "postgresql://u@127.0.0.1/x"}
    assert Settings.from_env(env).catch_up is True
    off = Settings.from_env({**env, "XAU_CATCH_UP": "off"})
    assert off.catch_up is False
    sensor = build_catch_up_sensor(GOLD, ASSETS, PARTITIONS, running=off.catch_up)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert SENSOR.default_status == dg.DefaultSensorStatus.RUNNING
    with pytest.raises(SettingsError, match="XAU_CATCH_UP must be on or off"):
        Settings.from_env({**env, "XAU_CATCH_UP": "sometimes"})


def test_a_tick_reads_the_clock_once(store, stand_in, monkeypatch):
    """One "now" a tick: the history, the run key and the wait after a failure all use it (credits
    are counted on the ledger's own clock, the database's)."""
    reads = []

    def clock():
        reads.append(NOW)
        return NOW

    monkeypatch.setattr(catch_up, "utc_now", clock)
    with dg.DagsterInstance.ephemeral() as instance:
        defs, resources = harness(store, stand_in, api_key="not-the-key")
        (request,) = tick(defs, instance)[0].run_requests
        assert reads == [NOW] and request.run_key.endswith(f"{NOW:%Y-%m-%dT%H:%M:%S}")
        assert not execute(request, instance, resources, raise_on_error=False).success
        reads.clear()
        result, _ = tick(defs, instance)
        assert reads == [NOW] and "failed (see its log); next try at" in result.skip_message
