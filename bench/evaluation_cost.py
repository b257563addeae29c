"""What one per-day check evaluation costs to store, by Dagster storage and by how it is logged.

A ranged run of a do-nothing asset with three checks logs one evaluation per day and check (as a
candle asset's ranged run does), on a fresh PostgreSQL-backed instance per case:

- storage `postgres`: dagster-postgres's own (an event log connection per event; the Helm chart's);
- storage `pooled`: dagster.yaml's (`xau_pipeline/dagster_internals/storage.py`);
- logged `one at a time`: `context.log_event` per evaluation;
- logged `batch`: `xau_pipeline.dagster_internals.log_day_evaluations` (one batch where the storage
  stores batches of them; on `postgres` it falls back to one at a time).

Each case times the logging of the evaluations inside the step (the materializations already
stored) and prints its cost per evaluation and its ratio to the pooled storage's one-at-a-time
case, timed in the same run (alternated, the median of --repeat each).

Usage: python bench/evaluation_cost.py [--days 300] [--repeat 3]
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg
import yaml

from xau_pipeline.dagster_internals import day_evaluation, log_day_evaluations
from xau_pipeline.defs.candles.partitions import partition_range_tags
from xau_pipeline.settings import apply_dagster_environment
from xau_pipeline_dev.testing import temporary_database

apply_dagster_environment()  # as `make run` does

SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
CHECKS = ("no_gaps", "ohlc_valid", "quarantine_empty")
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2024-01-01")
KEY = dg.AssetKey("evaluation_probe")
# Figures of the size a candle day's verdict carries.
METADATA = {"bars": 96, "expected": 96, "missing": 0, "off_session": 0}
timings: list[tuple[int, float]] = []


def probe_asset(batched: bool) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="evaluation_probe",
        specs=[dg.AssetSpec(KEY)],
        partitions_def=PARTITIONS,
        check_specs=[dg.AssetCheckSpec(name, asset=KEY) for name in CHECKS],
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def evaluation_probe(context: dg.AssetExecutionContext):
        days = context.partition_keys
        yield dg.MaterializeResult(asset_key=KEY)
        targets = {
            record.partition_key: record
            for record in context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=KEY, asset_partitions=list(days)), len(days)
            ).records
        }
        evaluations = [
            day_evaluation(KEY, name, day, True, dg.AssetCheckSeverity.WARN, targets.get(day), metadata=METADATA)
            for name in CHECKS
            for day in days
        ]
        began = time.perf_counter()
        if batched:
            log_day_evaluations(context, evaluations)
        else:
            for evaluation in evaluations:
                context.log_event(evaluation)
        timings.append((len(evaluations), time.perf_counter() - began))
        for name in CHECKS:
            yield dg.AssetCheckResult(check_name=name, passed=True)

    return evaluation_probe


def storage_config(storage: str, url: str) -> dict:
    if storage == "postgres":
        return {"postgres": {"postgres_url": url}}
    project = yaml.safe_load((ROOT / "dagster.yaml").read_text())["storage"]
    project["custom"]["config"] = {"postgres_url": url}
    return project


def one_case(storage: str, batched: bool, days: int) -> float:
    """Milliseconds per evaluation logged, on a fresh instance of `storage`."""
    keys = PARTITIONS.get_partition_keys()[:days]
    with (
        temporary_database(SERVER, "xau_bench_evaluations") as url,
        tempfile.TemporaryDirectory(prefix="xau_bench_home_") as home,
    ):
        Path(home, "dagster.yaml").write_text(
            yaml.safe_dump({"telemetry": {"enabled": False}, "storage": storage_config(storage, url)})
        )
        with dg.DagsterInstance.from_config(home) as instance:
            result = dg.materialize(
                [probe_asset(batched)], instance=instance, tags=partition_range_tags(keys[0], keys[-1])
            )
            assert result.success
    count, seconds = timings.pop()
    return seconds * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cases = [("pooled", False), ("pooled", True), ("postgres", False), ("postgres", True)]
    one_case("pooled", True, 5)  # untimed: the first run in a process pays Dagster's set-up
    measured: dict[tuple[str, bool], list[float]] = {case: [] for case in cases}
    for _ in range(args.repeat):
        for storage, batched in cases:
            measured[(storage, batched)].append(one_case(storage, batched, args.days))
    reference = statistics.median(measured[("pooled", False)])
    print(f"\nOne check evaluation stored, {args.days} days x {len(CHECKS)} checks per run, median of {args.repeat}")
    print(f"{'storage':<10}{'logged':<16}{'ms each':>9}{'all runs':>24}{'/ pooled one at a time':>24}")
    for (storage, batched), values in measured.items():
        median = statistics.median(values)
        runs = ", ".join(f"{value:.2f}" for value in values)
        logged = "batch" if batched else "one at a time"
        print(f"{storage:<10}{logged:<16}{median:>9.2f}{runs:>24}{median / reference:>23.2f}x")


if __name__ == "__main__":
    main()
