"""Run by test_dagster_internals.py in a process of its own: for each Dagster internal in turn, taken
away, load the code location and run M15 over two days on dagster.yaml's storage; print one JSON
line per case. A module-level name is deleted from its Dagster module while the code location loads
(as an upgrade that moved it); for the run, each internal is hidden from the fence's lookup
(`registry.resolve`) instead: Dagster's own code imports most of them too, and would break.

Arguments: the Dagster database's URL, the candle database's URL, the stand-in's URL, the API key.
"""

import importlib
import json
import logging
import os
import sys

import dagster as dg
import sqlalchemy as sa
import yaml

DAYS = ("2024-03-12", "2024-03-13")
M15 = dg.AssetKey(["xauusd", "candles_m15"])
# The transactions a run's per-day evaluations were stored in (a transaction's rows share their xmin).
TRANSACTIONS = sa.text(
    "SELECT count(*), count(DISTINCT e.xmin::text) FROM event_logs e "
    "JOIN asset_check_executions c ON c.evaluation_event_storage_id = e.id "
    "WHERE c.run_id = :run AND c.partition IS NOT NULL AND c.execution_status <> 'PLANNED'"
)
WARNING = "Dagster internals missing or changed"
FENCE_MODULES = [
    f"xau_pipeline.dagster_internals.{name}" for name in ("registry", "evaluations", "event_log", "storage")
]


class Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def fresh_fence():
    """The project's modules imported again, so each case loads the code location from scratch."""
    for name in [name for name in sys.modules if name == "xau_pipeline" or name.startswith("xau_pipeline.")]:
        del sys.modules[name]
    return importlib.import_module("xau_pipeline.dagster_internals.registry")


def run_case(hidden: str | None, dagster_url: str, repo: str) -> dict:
    registry = fresh_fence()
    removed = None
    if hidden is not None:
        internal = next(i for i in registry.INTERNALS if i.name == hidden)
        if "." not in internal.attribute:
            module = importlib.import_module(internal.module)
            removed = (module, internal.attribute, getattr(module, internal.attribute))
            delattr(module, internal.attribute)
        original = registry.resolve
        hiding = lambda i, owner=None: None if i.name == hidden else original(i, owner)  # noqa: E731
        for name in FENCE_MODULES:  # those imported with the registry (the package's __init__)
            if name in sys.modules:
                sys.modules[name].resolve = hiding
    storage_log = Counter()
    logging.getLogger("xau_pipeline.dagster_internals").addHandler(storage_log)
    try:
        definitions = importlib.import_module("xau_pipeline.definitions")  # the code location loads
        if removed is not None:
            setattr(*removed)
            removed = None
        from xau_pipeline.dagster_internals import stores_evaluations_in_batches
        from xau_pipeline.defs.candles.partitions import partition_range_tags

        job = definitions.defs.resolve_implicit_global_asset_job_def()
        with open(os.path.join(repo, "dagster.yaml")) as instance_file:
            storage = yaml.safe_load(instance_file)["storage"]
        storage["custom"]["config"] = {"postgres_url": dagster_url}
        overrides = {"storage": storage, "telemetry": {"enabled": False}}
        with dg.instance_for_test(overrides=overrides) as instance:
            result = job.execute_in_process(
                instance=instance, asset_selection=[M15], tags=partition_range_tags(DAYS[0], DAYS[-1])
            )
            logs = [record.user_message for record in instance.all_logs(result.run_id)]
            batched = stores_evaluations_in_batches(instance)
        engine = sa.create_engine(dagster_url, poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            stored, transactions = connection.execute(TRANSACTIONS, {"run": result.run_id}).one()
        engine.dispose()
        days = [e for e in result.get_asset_check_evaluations() if e.partition is not None]
        return {
            "hidden": hidden,
            "success": result.success,
            "pooled_storage": batched,
            "run_warnings": sum(WARNING in line for line in logs),
            "storage_warnings": sum(WARNING in line for line in storage_log.lines),
            "day_evaluations": sorted({e.partition for e in days}),
            "targeted": sum(e.target_materialization_data is not None for e in days),
            "evaluations": len(days),
            "stored": stored,
            "transactions": transactions,
        }
    finally:
        logging.getLogger("xau_pipeline.dagster_internals").removeHandler(storage_log)
        if removed is not None:
            setattr(*removed)


def main() -> None:
    dagster_url, candle_url, stand_in_url, api_key = sys.argv[1:5]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ.update(
        TWELVE_DATA_API_KEY=api_key,
        TWELVE_DATA_BASE_URL=stand_in_url,
        XAU_DATABASE_URL=candle_url,
        XAU_HISTORY_START="2024-01-01",
        TWELVE_DATA_CREDITS_PER_MINUTE="10000",
        TWELVE_DATA_CREDITS_PER_DAY="100000",
    )
    names = [None, *(i.name for i in fresh_fence().INTERNALS)]
    for hidden in names:
        print(json.dumps(run_case(hidden, dagster_url, repo)), flush=True)


if __name__ == "__main__":
    main()
