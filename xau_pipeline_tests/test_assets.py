"""The candle assets end to end: Dagster runs against the stand-in and a real PostgreSQL."""

import gc
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from xau_pipeline.defs.candles import asset_factory as assets_module
from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, daily_partitions
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline_dev.twelvedata_standin import Fault
from xau_pipeline_tests.conftest import NO_CREDIT_LIMITS, TEST_API_KEY

# Dagster materializations.
pytestmark = pytest.mark.slow

UTC = UTC
GOLD = Symbol("XAU/USD")
PARTITIONS = daily_partitions("2024-01-01")
ASSETS = {tf.name: build_candle_asset(GOLD, tf, PARTITIONS) for tf in TIMEFRAMES}


@pytest.fixture
def instance(dagster_instance):
    return dagster_instance


def backfill(instance, resources, first, last, timeframes=ASSETS, force=False, raise_on_error=True, assets=ASSETS):
    run_config = (
        {"ops": {assets[tf].op.name: {"config": {"force_refetch": True}} for tf in timeframes}} if force else None
    )
    return dg.materialize(
        [assets[tf] for tf in timeframes],
        instance=instance,
        resources=resources,
        tags={PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last},
        run_config=run_config,
        raise_on_error=raise_on_error,
    )


def stored_rows(store, timeframe):
    query = sa.text(
        'SELECT "timestamp", open, high, low, close, updated_at FROM candles '
        "WHERE symbol = 'XAUUSD' AND timeframe = :tf ORDER BY \"timestamp\""
    )
    with store.engine.connect() as connection:
        return list(connection.execute(query, {"tf": timeframe}))


def served(stand_in, timeframe, start, end):
    interval = next(tf.interval for tf in TIMEFRAMES if tf.name == timeframe)
    return [
        (b["datetime"], b["open"], b["high"], b["low"], b["close"])
        for b in stand_in.bars("XAU/USD", interval, start, end)
    ]


def materialization_metadata(result, timeframe):
    """The metadata of the (first) materialization of `timeframe` in a run."""
    return partition_metadata(result, timeframe)[0][1]


def partition_metadata(result, timeframe):
    """(partition, metadata) of each materialization of `timeframe` in a run, in partition order."""
    key = ASSETS[timeframe].key
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return sorted((e.partition, e.materialization.metadata) for e in events)


def run_log(instance, result) -> str:
    return "\n".join(record.user_message for record in instance.all_logs(result.run_id))


def test_quarter_backfill_stores_exactly_what_is_served_and_reruns_for_free(instance, resources, stand_in, store):
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)
    result = backfill(instance, resources, "2024-01-01", "2024-03-31")
    assert result.success
    log = run_log(instance, result)
    for name in ASSETS:
        rows = stored_rows(store, name)
        assert [tuple(r[:5]) for r in rows] == served(stand_in, name, start, end), name
        assert len({r.timestamp for r in rows}) == len(rows)
        days = partition_metadata(result, name)
        assert len(days) == 91  # one materialization per day of the quarter
        assert sum(metadata["dagster/row_count"].value for _, metadata in days) == len(rows)
        assert all("api_calls" not in metadata for _, metadata in days)  # the run's totals are not the day's
        tf_name = name
        assert f"XAUUSD {tf_name}: {len(rows)} inserted, 0 updated, 0 unchanged" in log
    assert "run totals over 91 partition(s) 2024-01-01 00:00 UTC .. " in log
    assert log.count("| 1 | ok: ") == 5  # the ledger of the run's calls: M15 2, H1 1, H4 1, D1 1
    first_calls = stand_in.time_series_calls()
    assert first_calls == 5

    before = {name: stored_rows(store, name) for name in ASSETS}
    again = backfill(instance, resources, "2024-01-01", "2024-03-31")
    assert again.success
    assert stand_in.time_series_calls() == first_calls
    assert run_log(instance, again).count(": 0 API call(s), 0 credit(s), 0 row(s) inserted, 0 updated") == 4
    for name in ASSETS:
        assert stored_rows(store, name) == before[name]


def test_each_partition_of_a_ranged_run_carries_its_own_days_figures(instance, resources, store):
    """Three days in one run: each day's materialization shows that day's rows, first and last bar and newest bars."""
    result = backfill(instance, resources, "2024-02-06", "2024-02-08", timeframes=["M15", "H1"])
    assert result.success
    for name in ("M15", "H1"):
        days = partition_metadata(result, name)
        assert [partition for partition, _ in days] == ["2024-02-06", "2024-02-07", "2024-02-08"]
        rows = stored_rows(store, name)
        for partition, metadata in days:
            own = [r for r in rows if f"{r.timestamp:%Y-%m-%d}" == partition]
            assert own, partition
            assert metadata["dagster/row_count"].value == len(own), (name, partition)
            assert metadata["first_bar"].value == f"{own[0].timestamp:%Y-%m-%d %H:%M} UTC"
            assert metadata["last_bar"].value == f"{own[-1].timestamp:%Y-%m-%d %H:%M} UTC"
            newest = metadata["newest_bars"].value
            assert f"| {own[-1].timestamp:%Y-%m-%d %H:%M} | {own[-1].open} |" in newest
            assert all(partition in line for line in newest.splitlines()[2:])  # only that day's bars
        firsts = {metadata["first_bar"].value for _, metadata in days}
        assert len(firsts) == 3  # different per day, not the run's figures copied


def test_a_single_partition_run_shows_the_run_on_its_day(instance, resources, store):
    result = dg.materialize(
        [ASSETS["H1"]], instance=instance, resources=resources, partition_key="2024-02-07", selection=[ASSETS["H1"].key]
    )
    metadata = materialization_metadata(result, "H1")
    rows = stored_rows(store, "H1")
    assert metadata["dagster/row_count"].value == metadata["rows_inserted"].value == len(rows) > 0
    assert metadata["api_calls"].value == 1 and "| 1 | ok: " in metadata["api_call_ledger"].value


def test_the_step_judges_with_the_long_lived_heap_frozen_and_hands_it_back(instance, resources, monkeypatch):
    frozen_while_judging = []
    judge_run = assets_module.judge_run

    def judging(*args, **kwargs):
        frozen_while_judging.append(gc.get_freeze_count())
        return judge_run(*args, **kwargs)

    monkeypatch.setattr(assets_module, "judge_run", judging)
    result = dg.materialize([ASSETS["D1"]], instance=instance, resources=resources, partition_key="2024-02-07")
    assert result.success
    assert len(frozen_while_judging) == 1 and frozen_while_judging[0] > 0
    assert gc.get_freeze_count() == 0


def test_forced_refetch_updates_a_revised_bar(instance, resources, stand_in, store):
    backfill(instance, resources, "2024-02-05", "2024-02-06", timeframes=["M15", "H1"])
    revised_at = datetime(2024, 2, 5, 14, 15, tzinfo=UTC)
    stand_in.configure(revisions={revised_at: "1.5"})
    calls = stand_in.time_series_calls()
    result = backfill(instance, resources, "2024-02-05", "2024-02-06", timeframes=["M15", "H1"], force=True)
    assert stand_in.time_series_calls() == calls + 2
    log = run_log(instance, result)
    assert "XAUUSD M15: 0 inserted, 1 updated" in log and "XAUUSD H1: 0 inserted, 1 updated" in log
    window = (datetime(2024, 2, 5, tzinfo=UTC), datetime(2024, 2, 7, tzinfo=UTC))
    for name in ("M15", "H1"):
        assert [tuple(r[:5]) for r in stored_rows(store, name)] == served(stand_in, name, *window)


class StoppedClockTwelveData(TwelveDataResource):
    """The API resource with the pipeline's clock stopped at `stopped_at` (ISO 8601)."""

    stopped_at: str

    def client(self, *args, **kwargs):
        client = super().client(*args, **kwargs)
        stopped = datetime.fromisoformat(self.stopped_at)
        client.clock = lambda: stopped
        return client


WINTER_WEDNESDAY = datetime(2024, 3, 6, tzinfo=UTC)  # CME metals trade from 23:00 UTC the day before


@pytest.mark.parametrize(
    ("time_of_day", "closed_m15"),
    [
        (timedelta(hours=13, minutes=7, seconds=20), 52),  # 00:00 .. 12:45; the 13:00 bar is still forming
        (timedelta(minutes=15, seconds=30), 1),  # the 00:00 bar closed at 00:15, 30 s ago: final
        (timedelta(minutes=15, seconds=29), 0),  # 1 s earlier it is not final yet: no call at all
        (timedelta(minutes=2), 0),  # right after midnight
    ],
)
def test_todays_partition_asks_only_for_closed_bars(instance, stand_in, store, time_of_day, closed_m15):
    """ "Now" is fixed on a trading day, and the stand-in runs an hour ahead of it, so it would serve
    bars that have not closed by our clock: only those closed 30 s before "now" are asked for and kept."""
    now = WINTER_WEDNESDAY + time_of_day
    stand_in.configure(time_offset_seconds=(now + timedelta(hours=1) - datetime.now(UTC)).total_seconds())
    resources = {
        "twelvedata": StoppedClockTwelveData(
            api_key=TEST_API_KEY,
            base_url=stand_in.url,
            backoff_seconds=0.01,
            stopped_at=now.isoformat(),
            **NO_CREDIT_LIMITS,
        ),
        "candle_store": CandleStoreResource(database_url=store.url),
    }
    today = now.date().isoformat()
    result = backfill(instance, resources, today, today, timeframes=["M15", "D1"])
    assert result.success
    m15 = [tuple(r[:5]) for r in stored_rows(store, "M15")]
    assert len(m15) == closed_m15
    assert m15 == served(stand_in, "M15", WINTER_WEDNESDAY, WINTER_WEDNESDAY + closed_m15 * timedelta(minutes=15))
    # One M15 call when a bar has closed, none otherwise; none for D1, whose bar of today cannot have closed.
    assert [r.params["interval"] for r in stand_in.requests] == ["15min"] * bool(closed_m15)
    assert sum(r.values for r in stand_in.requests) == closed_m15
    assert stored_rows(store, "D1") == []


def test_api_failures_fail_the_run_with_a_clear_message(instance, store, stand_in):
    resources = {
        "twelvedata": TwelveDataResource(api_key="not-the-key", base_url=stand_in.url),
        "candle_store": CandleStoreResource(database_url=store.url),
    }
    result = backfill(instance, resources, "2024-01-02", "2024-01-02", timeframes=["H1"], raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "AuthenticationError: Twelve Data rejected the API key" in failure.event_specific_data.error.message
    assert stand_in.time_series_calls() == 1
    assert stored_rows(store, "H1") == []


def test_the_key_appears_in_no_dagster_event(instance, stand_in, store, monkeypatch):
    monkeypatch.setenv("TWELVE_DATA_API_KEY", TEST_API_KEY)
    resources = {
        "twelvedata": TwelveDataResource(
            api_key=dg.EnvVar("TWELVE_DATA_API_KEY"), base_url=stand_in.url, backoff_seconds=0.01, **NO_CREDIT_LIMITS
        ),
        "candle_store": CandleStoreResource(database_url=store.url),
    }
    stand_in.push_fault(Fault("html_502"))
    ok = backfill(instance, resources, "2024-01-03", "2024-01-03", timeframes=["H1"])
    monkeypatch.setenv("TWELVE_DATA_API_KEY", TEST_API_KEY + "-wrong")
    failed = backfill(instance, resources, "2024-01-04", "2024-01-04", timeframes=["H1"], raise_on_error=False)
    assert ok.success and not failed.success
    for result in (ok, failed):
        records = instance.all_logs(result.run_id)
        assert len(records) > 5
        text = "\n".join(str(r) for r in records) + str(instance.get_run_by_id(result.run_id))
        assert TEST_API_KEY not in text


def test_a_backfill_over_its_share_stops_cleanly_and_completes_later(instance, stand_in, store):
    """Two calls are needed, the backfill share allows one: the newest window is kept, the rest comes later."""
    resources = {
        "twelvedata": TwelveDataResource(
            api_key=TEST_API_KEY, base_url=stand_in.url, credits_per_day=4, schedule_credit_share=0.75
        ),
        "candle_store": CandleStoreResource(database_url=store.url),
    }
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 31, tzinfo=UTC)
    first = backfill(instance, resources, "2024-01-01", "2024-03-30", timeframes=["M15"])
    assert first.success
    assert "stopped early: CreditBudgetExhausted: " in run_log(instance, first)
    assert "backfill share of today's Twelve Data credits is spent" in run_log(instance, first)
    assert stand_in.time_series_calls() == 1
    kept = stored_rows(store, "M15")
    assert 4000 < len(kept) < len(served(stand_in, "M15", start, end))
    assert [tuple(r[:5]) for r in kept] == served(stand_in, "M15", kept[0].timestamp, end)
    # Only the days wholly fetched are materialized: the day of the oldest kept bar and all before it are not.
    materialized = sorted(e.partition for e in first.get_asset_materialization_events())
    first_whole_day = (kept[0].timestamp + timedelta(days=1)).strftime("%Y-%m-%d")
    if kept[0].timestamp.strftime("%H:%M") == "00:00":
        first_whole_day = kept[0].timestamp.strftime("%Y-%m-%d")
    days = PARTITIONS.get_partition_keys_in_range(dg.PartitionKeyRange("2024-01-01", "2024-03-30"))
    assert materialized == [d for d in days if d >= first_whole_day]
    assert "2024-01-01" not in materialized and len(materialized) < len(days)

    with store.engine.begin() as connection:  # the next UTC day
        connection.execute(sa.text("UPDATE api_calls SET at = at - interval '1 day'"))
    second = backfill(instance, resources, "2024-01-01", "2024-03-30", timeframes=["M15"])
    assert "stopped early" not in run_log(instance, second)
    assert stand_in.time_series_calls() == 2
    assert [tuple(r[:5]) for r in stored_rows(store, "M15")] == served(stand_in, "M15", start, end)
    assert [r.updated_at for r in stored_rows(store, "M15")[-len(kept) :]] == [r.updated_at for r in kept]


def test_a_failure_after_some_windows_keeps_them(instance, resources, stand_in, store):
    """The second (older) window fails for good: the run fails clearly, the first window is stored."""
    resources["twelvedata"] = TwelveDataResource(
        api_key=TEST_API_KEY, base_url=stand_in.url, backoff_seconds=0.01, max_attempts=2, **NO_CREDIT_LIMITS
    )
    end = datetime(2024, 3, 31, tzinfo=UTC)
    stand_in.push_fault(Fault("slow", seconds=0))  # the first (newest) window is answered normally
    stand_in.push_fault(Fault("html_502"))
    stand_in.push_fault(Fault("html_502"))
    result = backfill(instance, resources, "2024-01-01", "2024-03-30", timeframes=["M15"], raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "ServiceUnavailableError" in failure.event_specific_data.error.message
    assert "1 window(s) fetched before it are stored" in failure.event_specific_data.error.message
    kept = stored_rows(store, "M15")
    assert kept and [tuple(r[:5]) for r in kept] == served(stand_in, "M15", kept[0].timestamp, end)
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM fetch_coverage")).scalar() == 1
