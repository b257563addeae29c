"""What a check's Partitions tab shows after ranged and one-day runs, read through the UI's GraphQL."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import daily_partitions, partition_range_tags
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline_tests.check_statuses import CHECK_PARTITION_STATUSES, statuses_by_check
from xau_pipeline_tests.conftest import dagster_instance_on

# Dagster materializations and a code server for the GraphQL context.
pytestmark = pytest.mark.slow

DEFS = Path(__file__).with_name("checks_defs.py")
M15 = build_candle_asset(Symbol("XAU/USD"), TIMEFRAMES_BY_NAME["M15"], daily_partitions("2024-01-01"))
WEEK = ["2024-03-11", "2024-03-12", "2024-03-13", "2024-03-14", "2024-03-15"]  # Monday to Friday
HOLE = (datetime(2024, 3, 12, 10, tzinfo=UTC), datetime(2024, 3, 12, 11, tzinfo=UTC))  # Tuesday


@pytest.fixture(params=["project", "postgres"])
def instance(request, database_url, tmp_path):
    """A Dagster instance on PostgreSQL of its own (the code server needs a persistent one)."""
    with dagster_instance_on(request.param, database_url, tmp_path) as (fresh, _):
        yield fresh


@pytest.fixture
def graphql(instance):
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    with define_out_of_process_context(str(DEFS), None, instance) as context:

        def statuses(asset_key: dg.AssetKey) -> dict[str, dict[str, str]]:
            """{check: {day: status}} as the Partitions tab reads it (days not listed: missing)."""
            result = execute_dagster_graphql(context, CHECK_PARTITION_STATUSES, {"asset": {"path": asset_key.path}})
            return statuses_by_check(result.data["assetNodeOrError"])

        yield statuses


def week_of(statuses: dict[str, str]) -> list[str | None]:
    return [statuses.get(day) for day in WEEK]


def test_a_ranged_run_shows_each_judged_day_passed_or_failed_and_a_one_day_run_supersedes_it(
    instance, resources, stand_in, graphql
):
    stand_in.configure(holes=[HOLE])
    ranged = dg.materialize([M15], instance=instance, resources=resources, tags=partition_range_tags(WEEK[0], WEEK[-1]))
    assert ranged.success
    logged = "\n".join(record.user_message for record in instance.all_logs(ranged.run_id))
    assert "was not stored before its check evaluations" not in logged
    statuses = graphql(M15.key)
    assert week_of(statuses["no_gaps"]) == ["SUCCEEDED", "FAILED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
    assert week_of(statuses["ohlc_valid"]) == ["SUCCEEDED"] * 5
    assert week_of(statuses["quarantine_empty"]) == ["SUCCEEDED"] * 5
    assert statuses["fresh"] == {}  # not partitioned
    # Each day's evaluation targets that day's materialization from this run.
    materializations = {e.partition: e for e in ranged.get_asset_materialization_events() if e.asset_key == M15.key}
    assert set(materializations) == set(WEEK)
    days = [e for e in ranged.get_asset_check_evaluations() if e.check_name == "no_gaps" and e.partition]
    assert sorted(e.partition for e in days) == WEEK
    for evaluation in days:
        assert evaluation.target_materialization_data is not None
        assert evaluation.target_materialization_data.run_id == ranged.run_id
    # The range's one summary result is still the check page's latest execution.
    (summary,) = [e for e in ranged.get_asset_check_evaluations() if e.check_name == "no_gaps" and not e.partition]
    assert not summary.passed and summary.metadata["days_failed"].value == 1

    # The provider now has Tuesday's bars: a one-day run of Tuesday, fetching it again, passes it.
    stand_in.configure(holes=[])
    again = dg.materialize(
        [M15],
        instance=instance,
        resources=resources,
        partition_key=WEEK[1],
        run_config={"ops": {"xauusd__candles_m15": {"config": {"force_refetch": True}}}},
    )
    assert again.success
    assert week_of(graph := graphql(M15.key)["no_gaps"]) == ["SUCCEEDED"] * 5, graph


def test_a_weekend_in_a_range_is_not_judged_and_its_materialization_says_why(instance, resources, graphql, stand_in):
    stand_in.configure(weekend_bars=False)  # a CME-hours feed: nothing at all on Saturday
    result = dg.materialize(
        [M15], instance=instance, resources=resources, tags=partition_range_tags("2024-03-15", "2024-03-17")
    )
    assert result.success
    statuses = graphql(M15.key)["no_gaps"]
    assert [statuses.get(day) for day in ("2024-03-15", "2024-03-16", "2024-03-17")] == [
        "SUCCEEDED",
        "SKIPPED",  # Saturday: no bar expected, none stored
        "SUCCEEDED",  # Sunday evening's session
    ]
    saturday = next(e for e in result.get_asset_materialization_events() if e.partition == "2024-03-16")
    table = saturday.materialization.metadata["checks"].value
    assert "| no_gaps | not judged | no bar expected (market closed) and none stored |" in table
    assert "| ohlc_valid | not judged | no bar stored |" in table
