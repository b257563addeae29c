"""Asset checks end to end: Dagster runs the checks with the materialization, or alone."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from xau_pipeline.assets import build_candle_asset
from xau_pipeline.checks import build_candle_checks
from xau_pipeline.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, daily_partitions
from xau_pipeline.settings import Settings
from xau_pipeline.store.gaps import NEVER_FETCHED, PROVIDER_EMPTY
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import TIMEFRAMES_BY_NAME

# Dagster materializations.
pytestmark = pytest.mark.slow

UTC = UTC
GOLD = Symbol("XAU/USD")
PARTITIONS = daily_partitions("2024-01-01")
ASSETS = {name: build_candle_asset(GOLD, TIMEFRAMES_BY_NAME[name], PARTITIONS) for name in ("M15", "H1")}
SETTINGS = Settings(database_url="unused: each check gets its store from its resource")
CHECKS = {
    name: build_candle_checks(GOLD, TIMEFRAMES_BY_NAME[name], ASSETS[name], PARTITIONS, SETTINGS) for name in ASSETS
}
EVERYTHING = [*ASSETS.values(), *CHECKS["M15"], *CHECKS["H1"]]


@pytest.fixture
def instance(dagster_instance):
    return dagster_instance


def run(instance, resources, first, last, checks_only=False):
    selection = dg.AssetSelection.checks(*CHECKS["M15"], *CHECKS["H1"]) if checks_only else None
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


def test_a_provider_hole_is_reported_and_explained(instance, resources, stand_in):
    hole = (datetime(2024, 2, 7, 10, tzinfo=UTC), datetime(2024, 2, 7, 11, tzinfo=UTC))
    stand_in.configure(holes=[hole])
    result = run(instance, resources, "2024-02-06", "2024-02-07")
    assert result.success
    clean, holed = (
        evaluations(result, "M15", "no_gaps")["2024-02-06"],
        evaluations(result, "M15", "no_gaps")["2024-02-07"],
    )
    assert clean.passed and clean.metadata["missing"].value == 0
    assert not holed.passed
    assert (holed.metadata["missing"].value, holed.metadata[PROVIDER_EMPTY].value) == (4, 4)
    assert "| 2024-02-07 10:45 UTC | provider returned nothing |" in holed.metadata["missing_bars"].value
    assert holed.severity == dg.AssetCheckSeverity.WARN
    h1 = evaluations(result, "H1", "no_gaps")["2024-02-07"]
    assert (h1.passed, h1.metadata[PROVIDER_EMPTY].value) == (False, 1)
    consistency = evaluations(result, "H1", "consistent_with_m15")
    assert {day: e.passed for day, e in consistency.items() if day} == {"2024-02-06": True, "2024-02-07": True}
    assert [consistency[day].metadata["bars_compared"].value for day in ("2024-02-06", "2024-02-07")] == [23, 22]


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
    assert evaluations(result, "M15", "no_gaps")["2024-02-12"].passed

    ohlc = evaluations(result, "M15", "ohlc_valid")["2024-02-12"]
    assert (ohlc.passed, ohlc.severity, ohlc.metadata["invalid_bars"].value) == (False, dg.AssetCheckSeverity.ERROR, 1)
    assert "2024-02-12 09:30" in ohlc.metadata["invalid"].value
    assert evaluations(result, "H1", "ohlc_valid")["2024-02-12"].passed

    consistency = evaluations(result, "H1", "consistent_with_m15")["2024-02-12"]
    assert (consistency.passed, consistency.metadata["mismatches"].value) == (False, 1)
    assert "2024-02-12 14:00 | high, close |" in consistency.metadata["mismatched_bars"].value
    assert consistency.metadata["bars_compared"].value == 23


def test_fresh_looks_at_the_newest_partition(instance, resources, stand_in, away_from_midnight):
    """On a 24x7 calendar with weekend bars, so the result does not depend on the day the test runs."""
    stand_in.configure(weekend_bars=True)
    symbol = Symbol("XAU/USD", calendar="24x7")
    asset = build_candle_asset(symbol, TIMEFRAMES_BY_NAME["M15"], PARTITIONS)
    checks = build_candle_checks(symbol, TIMEFRAMES_BY_NAME["M15"], asset, PARTITIONS, SETTINGS)
    today = datetime.now(UTC).date()
    result = dg.materialize(
        [asset, *checks],
        instance=instance,
        resources=resources,
        tags={
            PARTITION_RANGE_START_TAG: (today - timedelta(days=1)).isoformat(),
            PARTITION_RANGE_END_TAG: today.isoformat(),
        },
    )
    fresh = {e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == "fresh"}
    assert set(fresh) - {None} == {today.isoformat()}
    assert fresh[today.isoformat()].passed
    assert 0 <= fresh[today.isoformat()].metadata["age_minutes"].value < 60
