from pathlib import Path

import yaml
from dagster._core.instance.config import dagster_instance_config

from xau_pipeline.defs.candles.partitions import CATCH_UP_TAG
from xau_pipeline.defs.candles.twelvedata_pool import pool_limits, with_plan_limits

REPO = Path(__file__).resolve().parent.parent


def concurrency_of(text: str) -> tuple[int, int, int]:
    """(pool default limit, catch-up tag limit, max concurrent runs) of an instance file."""
    concurrency = yaml.safe_load(text)["concurrency"]
    (catch_up,) = [
        rule["limit"] for rule in concurrency["runs"]["tag_concurrency_limits"] if rule["key"] == CATCH_UP_TAG
    ]
    return concurrency["pools"]["default_limit"], catch_up, concurrency["runs"]["max_concurrent_runs"]


def test_the_shipped_instance_files_hold_the_free_plans_limits():
    for name in ("dagster.yaml", "deploy/dagster.yaml"):
        assert concurrency_of((REPO / name).read_text()) == (2, 1, 4)
    assert pool_limits(8) == pool_limits(8, 4) and pool_limits(8).twelvedata == 2


def test_a_paid_plan_widens_the_pool_up_to_the_instances_run_limit(tmp_path):
    """610 credits a minute: 152 slots by the plan, 4 by the shipped max_concurrent_runs; one left to schedules."""
    assert (pool_limits(610, -1).twelvedata, pool_limits(55).twelvedata) == (152, 10)
    text, limits = with_plan_limits((REPO / "dagster.yaml").read_text(), 610)
    assert concurrency_of(text) == (4, 3, 4) and (limits.twelvedata, limits.catch_up) == (4, 3)
    (tmp_path / "dagster.yaml").write_text(text)
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster accepts the written file
    assert config["concurrency"]["pools"]["default_limit"] == 4
