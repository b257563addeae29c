"""How many runs may call Twelve Data at once: the `twelvedata` pool's limit, derived from the plan.

Every candle asset declares pool "twelvedata" (granularity `run`: a run holds one slot while it
runs). dagster.yaml ships the free plan's limits: 2 slots, and at most 1 catch-up run at a time, so
one slot stays free for the schedules' runs. A paid plan's credits need more runs in flight: one
slot per CREDITS_PER_SLOT credits a minute, capped at the instance's `max_concurrent_runs` (what the
machine, or the cluster, can run). Dagster reads these limits only from its instance file (plain
integers there, not environment variables), so the launcher writes them into the copy of
dagster.yaml it puts in DAGSTER_HOME, and `xau-pipeline credits` prints them for a deployment's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from xau_pipeline.defs.candles.partitions import CATCH_UP_TAG

POOL = "twelvedata"
# The free plan's 8 credits a minute give the 2 slots dagster.yaml has always had.
CREDITS_PER_SLOT = 4
MIN_SLOTS = 2
DEFAULT_MAX_CONCURRENT_RUNS = 10  # Dagster's default, when the instance file sets none


@dataclass(frozen=True)
class PoolLimits:
    """Runs calling the API at once (the pool's limit), and of those at most how many catch-up runs."""

    twelvedata: int
    catch_up: int


def pool_limits(credits_per_minute: int, max_concurrent_runs: int = DEFAULT_MAX_CONCURRENT_RUNS) -> PoolLimits:
    """One slot per CREDITS_PER_SLOT credits a minute, at least 2, at most the instance's runs; catch-up
    runs take all but one (the schedules')."""
    cap = max_concurrent_runs if max_concurrent_runs > 0 else credits_per_minute  # -1: no run limit
    slots = max(MIN_SLOTS, min(credits_per_minute // CREDITS_PER_SLOT, cap))
    return PoolLimits(slots, slots - 1)


def with_plan_limits(instance_yaml: str, credits_per_minute: int) -> tuple[str, PoolLimits]:
    """The instance file with `concurrency` set for the plan: the pool's default limit and the
    catch-up runs' tag limit (other settings as they were; comments are not kept)."""
    config: dict[str, Any] = yaml.safe_load(instance_yaml) or {}
    concurrency = config.setdefault("concurrency", {})
    runs = concurrency.setdefault("runs", {})
    limits = pool_limits(credits_per_minute, int(runs.get("max_concurrent_runs", DEFAULT_MAX_CONCURRENT_RUNS)))
    concurrency.setdefault("pools", {})["default_limit"] = limits.twelvedata
    others = [rule for rule in runs.get("tag_concurrency_limits") or [] if rule.get("key") != CATCH_UP_TAG]
    runs["tag_concurrency_limits"] = [*others, {"key": CATCH_UP_TAG, "limit": limits.catch_up}]
    header = f"# Written by the launcher from dagster.yaml, with the `{POOL}` pool sized for the plan.\n"
    return header + yaml.safe_dump(config, sort_keys=False), limits
