"""Asset checks end to end: Dagster runs the checks in the asset's step with the materialization, or alone."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, daily_partitions
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.settings import Settings
from xau_pipeline.store.gaps import NEVER_FETCHED, PROVIDER_EMPTY

# Dagster materializations.
pytestmark = pytest.mark.slow

UTC = UTC
GOLD = Symbol("XAU/USD")
PARTITIONS = daily_partitions("2024-01-01")
SETTINGS = Settings(database_url="unused: each check gets its store from its resource")
ASSETS = {name: build_candle_asset(GOLD, TIMEFRAMES_BY_NAME[name], PARTITIONS, SETTINGS) for name in ("M15", "H1")}
EVERYTHING = list(ASSETS.values())


@pytest.fixture(autouse=True)
def cme_hours(stand_in):
    """These tests count the bars of gold's hours: the stand-in serves CME hours only (one turns a 24/7 feed on)."""
    stand_in.configure(weekend_bars=False)


@pytest.fixture
def instance(dagster_instance):
    return dagster_instance


def run(instance, resources, first, last, checks_only=False):
    selection = dg.AssetSelection.checks_for_assets(*ASSETS.values()) if checks_only else None
    return dg.materialize(
        EVERYTHING,
        instance=instance,
        resources=resources,
        selection=selection,
        tags={PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last},
    )


def evaluations(result, timeframe, check):
    key = ASSETS[timeframe].key
    return {
        e.partition: e for e in result.get_asset_check_evaluations() if e.asset_key == key and e.check_name == check
    }


def day_checks(result, timeframe):
    """{day: the `checks` table of that day's materialization}."""
    key = ASSETS[timeframe].key
    return {
        e.partition: e.materialization.metadata["checks"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key == key
    }


def test_a_provider_hole_is_reported_and_explained(instance, resources, stand_in):
    hole = (datetime(2024, 2, 7, 10, tzinfo=UTC), datetime(2024, 2, 7, 11, tzinfo=UTC))
    stand_in.configure(holes=[hole])
    result = run(instance, resources, "2024-02-06", "2024-02-07")
    assert result.success
    assert "| no_gaps | passed | expected 92, present 92, missing 0, " in day_checks(result, "M15")["2024-02-06"]
    assert set(evaluations(result, "M15", "no_gaps")) == {None, "2024-02-06", "2024-02-07"}  # the range, each day
    assert evaluations(result, "M15", "no_gaps")["2024-02-06"].passed
    holed = evaluations(result, "M15", "no_gaps")["2024-02-07"]
    assert not holed.passed
    assert (holed.metadata["missing"].value, holed.metadata[PROVIDER_EMPTY].value) == (4, 4)
    assert "| 2024-02-07 10:45 UTC | provider returned nothing |" in holed.metadata["missing_bars"].value
    assert holed.severity == dg.AssetCheckSeverity.WARN
    h1 = evaluations(result, "H1", "no_gaps")["2024-02-07"]
    assert (h1.passed, h1.metadata[PROVIDER_EMPTY].value) == (False, 1)
    consistency = evaluations(result, "H1", "consistent_with_m15")
    assert set(consistency) == {None, "2024-02-06", "2024-02-07"} and all(e.passed for e in consistency.values())
    assert consistency[None].metadata["days_judged"].value == 2
    h1_days = day_checks(result, "H1")
    assert "| consistent_with_m15 | passed | bars_compared 23, " in h1_days["2024-02-06"]
    assert "| consistent_with_m15 | passed | bars_compared 22, " in h1_days["2024-02-07"]


def test_a_range_gets_one_result_per_check_and_each_days_verdicts_on_its_materialization(instance, resources, stand_in):
    """A ranged run: one typed result per check for the range, an evaluation for each judged day,
    and every day's verdicts in that day's materialization."""
    stand_in.configure(holes=[(datetime(2024, 2, 7, 10, tzinfo=UTC), datetime(2024, 2, 7, 11, tzinfo=UTC))])
    result = run(instance, resources, "2024-02-06", "2024-02-08")
    assert result.success
    no_gaps = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == ASSETS["M15"].key and e.check_name == "no_gaps"
    ]
    by_partition = {e.partition: e for e in no_gaps}
    assert set(by_partition) == {None, "2024-02-06", "2024-02-07", "2024-02-08"}  # the range, each day
    assert [by_partition[day].passed for day in ("2024-02-06", "2024-02-07", "2024-02-08")] == [True, False, True]
    assert not by_partition["2024-02-07"].passed and by_partition["2024-02-07"].metadata[PROVIDER_EMPTY].value == 4
    whole = by_partition[None]
    assert not whole.passed and "range 2024-02-06 .. 2024-02-08, not one day" in whole.description
    assert (whole.metadata["days_judged"].value, whole.metadata["days_failed"].value) == (3, 1)
    assert "| 2024-02-07 |" in whole.metadata["failed_days"].value
    ohlc = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == ASSETS["M15"].key and e.check_name == "ohlc_valid"
    ]
    assert sorted((e.partition or "", e.passed) for e in ohlc) == [
        ("", True),
        ("2024-02-06", True),
        ("2024-02-07", True),
        ("2024-02-08", True),
    ]
    checks_of_day = day_checks(result, "M15")
    assert set(checks_of_day) == {"2024-02-06", "2024-02-07", "2024-02-08"}
    assert "| no_gaps | failed (WARN) |" in checks_of_day["2024-02-07"]
    for day in ("2024-02-06", "2024-02-08"):
        assert "| no_gaps | passed |" in checks_of_day[day] and "| ohlc_valid | passed |" in checks_of_day[day]
    assert "| fresh | not judged | judged on today's partition only |" in checks_of_day["2024-02-06"]


def test_checks_alone_find_never_fetched_days_and_bad_rows(instance, resources, store):
    assert run(instance, resources, "2024-02-12", "2024-02-12").success
    with store.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE candles SET low = high + 1 WHERE timeframe = 'M15' AND \"timestamp\" = '2024-02-12 09:30+00'"
            )
        )
        connection.execute(
            sa.text(
                "UPDATE candles SET high = high + 5, close = close + 5 WHERE timeframe = 'H1' AND \"timestamp\" = '2024-02-12 14:00+00'"
            )
        )
    result = run(instance, resources, "2024-02-12", "2024-02-13", checks_only=True)
    assert not result.get_asset_materialization_events()
    never = evaluations(result, "M15", "no_gaps")["2024-02-13"]
    assert (never.passed, never.metadata[NEVER_FETCHED].value, never.metadata["missing"].value) == (False, 92, 92)
    no_gaps = evaluations(result, "M15", "no_gaps")[None]  # the range: the 12th passed, the 13th did not
    assert (no_gaps.passed, no_gaps.metadata["days_judged"].value, no_gaps.metadata["days_failed"].value) == (
        False,
        2,
        1,
    )
    assert evaluations(result, "M15", "no_gaps")["2024-02-12"].passed

    ohlc = evaluations(result, "M15", "ohlc_valid")["2024-02-12"]
    assert (ohlc.passed, ohlc.severity, ohlc.metadata["invalid_bars"].value) == (False, dg.AssetCheckSeverity.ERROR, 1)
    assert "2024-02-12 09:30" in ohlc.metadata["invalid"].value
    assert set(evaluations(result, "H1", "ohlc_valid")) == {None, "2024-02-12"}
    assert all(e.passed for e in evaluations(result, "H1", "ohlc_valid").values())

    consistency = evaluations(result, "H1", "consistent_with_m15")["2024-02-12"]
    assert (consistency.passed, consistency.metadata["mismatches"].value) == (False, 1)
    assert "2024-02-12 14:00 | high, close |" in consistency.metadata["mismatched_bars"].value
    assert consistency.metadata["bars_compared"].value == 23


def test_fresh_looks_at_the_newest_partition(instance, resources, stand_in, away_from_midnight):
    """On a 24x7 calendar with weekend bars, so the result does not depend on the day the test runs."""
    stand_in.configure(weekend_bars=True)
    symbol = Symbol("XAU/USD", calendar="24x7")
    asset = build_candle_asset(symbol, TIMEFRAMES_BY_NAME["M15"], PARTITIONS, SETTINGS)
    today = datetime.now(UTC).date()
    result = dg.materialize(
        [asset],
        instance=instance,
        resources=resources,
        tags={
            PARTITION_RANGE_START_TAG: (today - timedelta(days=1)).isoformat(),
            PARTITION_RANGE_END_TAG: today.isoformat(),
        },
    )
    fresh = {e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == "fresh"}
    assert set(fresh) == {None}  # not partitioned: one result, judged on today's partition
    assert fresh[None].passed and 0 <= fresh[None].metadata["age_minutes"].value < 60
    (spec,) = [s for s in asset.check_specs if s.name == "fresh"]
    assert spec.partitions_def is None  # the UI shows its latest result, not per-day statuses
    days = {e.partition: e.materialization.metadata["checks"].value for e in result.get_asset_materialization_events()}
    assert "| fresh | passed | " in days[today.isoformat()]
    assert "| fresh | not judged |" in days[(today - timedelta(days=1)).isoformat()]


def single_day(instance, resources, asset, day, checks_only=False):
    return dg.materialize(
        EVERYTHING,
        instance=instance,
        resources=resources,
        # The run's partition as a tag: dg.materialize's partition_key needs an asset in the selection.
        tags={"dagster/partition": day},
        selection=dg.AssetSelection.checks_for_assets(asset) if checks_only else dg.AssetSelection.assets(asset),
    )


def test_fresh_judges_no_day_but_the_newest(instance, resources):
    """An older day alone: no fresh result at all (Dagster shows the partition skipped), never a pass."""
    result = single_day(instance, resources, ASSETS["H1"], "2024-02-07")
    names = {e.check_name for e in result.get_asset_check_evaluations()}
    assert names == {"no_gaps", "ohlc_valid", "quarantine_empty", "consistent_with_m15"}
    assert all(e.partition == "2024-02-07" for e in result.get_asset_check_evaluations())


def test_consistent_with_m15_without_m15_bars_does_not_pass(instance, resources, store):
    """H1 stored, M15 never fetched: the check warns that it judged nothing, and says why."""
    result = single_day(instance, resources, ASSETS["H1"], "2024-02-07")
    (consistency,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "consistent_with_m15"]
    assert not consistency.passed and consistency.severity == dg.AssetCheckSeverity.WARN
    assert consistency.metadata["bars_compared"].value == 0
    assert consistency.metadata["bars_with_incomplete_m15"].value == 23
    assert consistency.description.startswith("not judged: none of the day's 23 bar(s) has all its M15 bars stored")
    log = "\n".join(record.user_message for record in instance.all_logs(result.run_id))
    assert "consistent_with_m15 0 day(s) passed, 0 failed, 1 warned they could not be judged" in log
    with_m15 = single_day(instance, resources, ASSETS["M15"], "2024-02-07")
    assert with_m15.success
    again = single_day(instance, resources, ASSETS["H1"], "2024-02-07", checks_only=True)
    (consistency,) = [e for e in again.get_asset_check_evaluations() if e.check_name == "consistent_with_m15"]
    assert consistency.passed and consistency.metadata["bars_compared"].value == 23


def test_a_range_without_m15_bars_tells_days_it_could_not_judge_from_failed_ones(instance, resources):
    result = dg.materialize(
        EVERYTHING,
        instance=instance,
        resources=resources,
        selection=dg.AssetSelection.assets(ASSETS["H1"]),
        tags={PARTITION_RANGE_START_TAG: "2024-02-06", PARTITION_RANGE_END_TAG: "2024-02-07"},
    )
    whole = evaluations(result, "H1", "consistent_with_m15")[None]
    assert not whole.passed and whole.severity == dg.AssetCheckSeverity.WARN
    assert (whole.metadata["days_failed"].value, whole.metadata["days_that_could_not_be_judged"].value) == (0, 2)
    assert "0 failed, 2 could not be judged" in whole.description
    assert "| consistent_with_m15 | could not be judged (WARN) | not judged: " in day_checks(result, "H1")["2024-02-06"]


def test_a_day_without_bars_is_not_judged(instance, resources):
    """A Saturday: no bar expected, none stored: no check records a result (Dagster shows them skipped)."""
    result = single_day(instance, resources, ASSETS["H1"], "2024-02-10")
    assert result.success and result.get_asset_check_evaluations() == []


def test_the_m15_bars_expected_per_bar_match_the_calendar(store):
    from xau_pipeline.defs.candles.checks import CandleChecks
    from xau_pipeline.market.market_hours import calendar

    start, end = datetime(2024, 12, 23, tzinfo=UTC), datetime(2025, 1, 3, tzinfo=UTC)  # holidays, early closes
    for name in ("H1", "H4", "D1"):
        timeframe = TIMEFRAMES_BY_NAME[name]
        counts = CandleChecks(store, GOLD, timeframe, PARTITIONS, end)._m15_expected_per_bar(start, end)
        for slot in calendar("cme_gold").expected_slots(start, end, timeframe.bar):
            expected = calendar("cme_gold").count_expected(slot, slot + timeframe.bar, TIMEFRAMES_BY_NAME["M15"].bar)
            assert counts[slot] == expected, (name, slot)


def test_a_range_is_judged_as_each_day_alone(instance, resources, stand_in, store):
    """The ranged run reads each check's range once; every day's verdict equals judging that day alone."""
    from xau_pipeline.defs.candles.checks import CandleChecks, check_names

    stand_in.configure(holes=[(datetime(2024, 2, 7, 10, tzinfo=UTC), datetime(2024, 2, 7, 11, tzinfo=UTC))])
    assert run(instance, resources, "2024-02-05", "2024-02-11").success
    with store.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE candles SET close = close * 1.2 WHERE timeframe = 'H1' AND \"timestamp\" = '2024-02-08 09:00+00'"
            )
        )
    keys = [f"2024-02-{day:02d}" for day in range(4, 13)]  # a never-fetched day at each end
    now = datetime.now(UTC)
    for name in ("M15", "H1"):
        timeframe = TIMEFRAMES_BY_NAME[name]
        ranged = CandleChecks(store, GOLD, timeframe, PARTITIONS, now, keys=keys)
        alone = CandleChecks(store, GOLD, timeframe, PARTITIONS, now)
        verdicts = 0
        for check in check_names(timeframe):
            for key in keys:
                assert ranged.judge(check, key) == alone.judge(check, key), (name, check, key)
                verdicts += ranged.judge(check, key) is not None
        assert verdicts >= len(keys)  # weekend days without bars are not judged
    assert not ranged.judge("ohlc_valid", "2024-02-08").passed
    assert not ranged.judge("no_gaps", "2024-02-07").passed and not ranged.judge("no_gaps", "2024-02-12").passed


def test_phantom_gaps_beside_off_grid_bars_are_one_grid_mismatch_line(store):
    """A UTC-grid H4 day whose 16:00 bar came stamped 17:00 (a 17:00 New York slot): no_gaps fails
    with one grid-mismatch line, and the empty 16:00 slot is not listed as a gap to fetch."""
    from decimal import Decimal

    from xau_pipeline.defs.candles.checks import CandleChecks
    from xau_pipeline.market.bars import Bar

    h4, day = TIMEFRAMES_BY_NAME["H4"], datetime(2024, 2, 7, tzinfo=UTC)  # a Wednesday
    opens = [day + timedelta(hours=h) for h in (0, 4, 8, 12, 17, 20)]  # 16:00 stamped 17:00
    price = Decimal("2050.5")
    store.write("XAUUSD", h4, [Bar(t, price, price, price, price) for t in opens], [])
    # Earlier days on the UTC grid make it the series' grid.
    earlier = [day - timedelta(days=d) + timedelta(hours=h) for d in (1, 2) for h in range(0, 24, 4)]
    # The day before has the same stray stamp: a ranged run's mismatch would count both days.
    earlier = [t + timedelta(hours=1) if t == day - timedelta(days=1) + timedelta(hours=16) else t for t in earlier]
    store.write("XAUUSD", h4, [Bar(t, price, price, price, price) for t in sorted(earlier)], [])
    verdict = CandleChecks(store, GOLD, h4, PARTITIONS, day + timedelta(days=3)).judge("no_gaps", "2024-02-07")
    assert verdict is not None and not verdict.passed
    assert verdict.metadata["grid_mismatch"].startswith("grid mismatch: 1 slot(s)")
    assert "16:00" not in verdict.metadata["missing_bars"].value  # the phantom is not listed as a gap
    assert verdict.metadata["bar_grid"] == CandleChecks(store, GOLD, h4, PARTITIONS, day).grid.describe()
    # Judged within a ranged run, the day shows its own mismatch, not the range's.
    keys = ["2024-02-05", "2024-02-06", "2024-02-07"]
    ranged = CandleChecks(store, GOLD, h4, PARTITIONS, day + timedelta(days=3), keys=keys).judge("no_gaps", keys[-1])
    assert ranged is not None and ranged.metadata["grid_mismatch"] == verdict.metadata["grid_mismatch"]
