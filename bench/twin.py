"""The jobs bench/run_shape.py times: the real candle job, and a do-nothing twin of it.

The twin has the same asset keys, daily partitions from the same start, the same check names and
`BackfillPolicy.single_run()`, and does no work. It comes in two shapes:

- `old`: what the project had before issue #12, four `@asset`s and fifteen separate partitioned
  `@asset_check`s (19 steps), on Dagster's default (multiprocess) executor;
- `new`: one `@multi_asset` per series with its checks as `check_specs` (4 steps), in-process,
  each step with the run worker's heap frozen (`xau_pipeline.defs.candles.gc_freeze`), as `xau_pipeline.definitions`
  builds the real ones now. With `per_partition` it also logs, in a
  ranged run, one evaluation per partitioned check and day with bars (every day but Saturday),
  targeting that day's materialization and logged as one batch, as the real assets do;
- `replay`: the `new` shape recording what a real run of the same range recorded, read from the file
  `XAU_BENCH_REPLAY` names (`capture` writes it): each step's log lines, each day's materialization
  metadata, each day's check evaluation (verdict, metadata, description, targeting that day's
  materialization, one batch) and each range result, with the same payloads, and nothing else
  (no fetch, store or judgement).

Jobs are rebuilt in each process from these functions (`dg.build_reconstructable_job`), so the
multiprocess executor's step processes can load them.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.
import functools
import os
import pickle
import warnings
from collections import defaultdict
from datetime import date
from pathlib import Path

import dagster as dg

from xau_pipeline.dagster_internals import day_evaluation, latest_materializations, log_day_evaluations
from xau_pipeline.defs.candles.gc_freeze import long_lived_heap_frozen

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

SERIES = {"candles_m15": False, "candles_h1": True, "candles_h4": True, "candles_d1": True}
BASE_CHECKS = ("no_gaps", "ohlc_valid", "quarantine_empty", "fresh")
SATURDAY = 5


def _checks(name: str) -> tuple[str, ...]:
    return BASE_CHECKS + (("consistent_with_m15",) if SERIES[name] else ())


def _old_shape(partitions: dg.DailyPartitionsDefinition) -> dg.Definitions:
    assets, checks = [], []
    for name in SERIES:

        @dg.asset(
            name=name,
            key_prefix=["xauusd"],
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            pool="twelvedata",
        )
        def candles() -> dg.MaterializeResult:
            return dg.MaterializeResult()

        assets.append(candles)
        for check_name in _checks(name):

            @dg.asset_check(asset=candles, name=check_name, partitions_def=partitions, blocking=False)
            def check() -> dg.AssetCheckResult:
                return dg.AssetCheckResult(passed=True)

            checks.append(check)
    return dg.Definitions(assets=assets, asset_checks=checks)


def _series(name: str, partitions: dg.DailyPartitionsDefinition, step) -> dg.AssetsDefinition:
    """One series' twin, shaped as the real asset (keys, checks, partitions, backfill policy, pool),
    running `step(context, key)` with the heap frozen as the real step does (xau_pipeline.defs.candles.gc_freeze)."""
    key = dg.AssetKey(["xauusd", name])

    @dg.multi_asset(
        name=f"xauusd__{name}",
        specs=[dg.AssetSpec(key)],
        # `fresh` is not partitioned, as in the real assets.
        check_specs=[
            dg.AssetCheckSpec(n, asset=key, partitions_def=None if n == "fresh" else partitions) for n in _checks(name)
        ],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="twelvedata",
        can_subset=True,
    )
    def candles(context: dg.AssetExecutionContext):
        with long_lived_heap_frozen():
            yield from step(context, key)

    return candles


def _new_step(context: dg.AssetExecutionContext, key: dg.AssetKey, per_partition: bool):
    checks = sorted(check_key.name for check_key in context.selected_asset_check_keys)
    if key in context.selected_asset_keys:
        yield dg.MaterializeResult(asset_key=key)
    if context.has_partition_key or not per_partition:
        for check_name in checks:
            yield dg.AssetCheckResult(passed=True, check_name=check_name)
        return
    days = [p for p in context.partition_keys if date.fromisoformat(p).weekday() != SATURDAY]
    stored = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=days), len(days)
    )
    targets = {record.partition_key: record for record in stored.records}
    log_day_evaluations(
        context,
        [
            day_evaluation(key, check_name, day, True, dg.AssetCheckSeverity.WARN, targets.get(day))
            for check_name in checks
            if check_name != "fresh"
            for day in days
        ],
    )


def capture(instance: dg.DagsterInstance, run_id: str, path: Path) -> None:
    """Write what run `run_id` recorded, per asset, for the `replay` twin: its step's log lines,
    materialization metadata per partition, and check evaluations (per partition, or the range's)."""
    recorded: dict = defaultdict(lambda: {"logs": [], "materializations": {}, "evaluations": []})
    for entry in instance.all_logs(run_id):
        if not entry.step_key:
            continue
        step = recorded[entry.step_key]
        if not entry.is_dagster_event:
            step["logs"].append((entry.level, entry.user_message))
            continue
        materialization, data = entry.asset_materialization, entry.get_dagster_event().event_specific_data
        if materialization is not None:
            step["materializations"][materialization.partition] = dict(materialization.metadata)
        elif isinstance(data, dg.AssetCheckEvaluation):
            fields = (data.check_name, data.partition, data.passed, data.severity, data.metadata, data.description)
            step["evaluations"].append(fields)
    path.write_bytes(pickle.dumps(dict(recorded)))


@functools.cache
def read_replay(path: str) -> dict:
    """What `capture` wrote to `path`, read once per process (run_shape.py reads it before timing)."""
    return pickle.loads(Path(path).read_bytes())


def _replay_step(context: dg.AssetExecutionContext, key: dg.AssetKey):
    recorded = read_replay(os.environ["XAU_BENCH_REPLAY"])[context.get_step_execution_context().step.key]
    for level, message in recorded["logs"]:
        context.log.log(level, message)
    for partition, metadata in recorded["materializations"].items():
        context.add_asset_metadata(metadata, asset_key=key, partition_key=partition)
    yield dg.MaterializeResult(asset_key=key)
    by_day = [e for e in recorded["evaluations"] if e[1] is not None]
    targets = latest_materializations(context.instance, key, sorted({e[1] for e in by_day}))
    log_day_evaluations(
        context,
        [
            day_evaluation(key, check, day, passed, severity, targets.get(day), metadata, description)
            for check, day, passed, severity, metadata, description in by_day
        ],
    )
    for check, day, passed, severity, metadata, description in recorded["evaluations"]:
        if day is None:
            yield dg.AssetCheckResult(
                check_name=check, passed=passed, severity=severity, metadata=metadata, description=description
            )


def _new_shape(partitions: dg.DailyPartitionsDefinition, per_partition: bool, replay: bool = False) -> dg.Definitions:
    step = _replay_step if replay else functools.partial(_new_step, per_partition=per_partition)
    assets = [_series(name, partitions, step) for name in SERIES]
    return dg.Definitions(assets=assets, executor=dg.in_process_executor)


def twin_job(shape: str, start: str, per_partition: bool = False, only: str | None = None) -> dg.JobDefinition:
    partitions = dg.DailyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1)
    defs = _old_shape(partitions) if shape == "old" else _new_shape(partitions, per_partition, shape == "replay")
    return _one_job(defs, only)


def _one_job(defs: dg.Definitions, only: str | None = None) -> dg.JobDefinition:
    """A job over every asset (or the one named `only`, e.g. candles_m15) and its checks."""
    selection = dg.AssetSelection.assets(dg.AssetKey(["xauusd", only])) if only else dg.AssetSelection.all()
    jobs = [dg.define_asset_job("candles", selection=selection)]
    return dg.Definitions.merge(defs, dg.Definitions(jobs=jobs)).get_job_def("candles")


def real_job(only: str | None = None) -> dg.JobDefinition:
    """The project's own job over the candle assets and their checks, configured from the environment."""
    from xau_pipeline.definitions import build_definitions
    from xau_pipeline.settings import Settings

    return _one_job(build_definitions(Settings.from_env()), only)


def reconstructable(function: str, *args):
    return dg.build_reconstructable_job(
        "twin", function, reconstructable_args=args, reconstructor_working_directory=os.path.dirname(__file__)
    )
