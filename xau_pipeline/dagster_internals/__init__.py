"""The one fence around Dagster's internals: no other module of the project imports a private Dagster
name (`dagster._core`, an underscore attribute, dagster-postgres's internals).

- `registry.py`: every internal used, what for, and what to do when an upgrade moves it; looked up
  by name when a run needs it, never when the code location loads.
- `evaluations.py`: a ranged run's per-day check evaluations, targeted and logged as one batch.
- `partition_key_filter()`: one day's newest check verdicts, for the alert sensor.
- `storage.py` (dagster.yaml's `storage: custom:`) and `event_log.py`: dagster-postgres's storage with
  a pooled event log that stores such a batch in one transaction.

If an internal is missing or changed, the code location still loads and runs take the public path:
evaluations logged one at a time by `context.log_event` (without their target where its type is
missing), dagster-postgres's plain storage; one warning line says which internal and where to look.
test_dagster_internals.py has a guard per internal that says what to do on an upgrade.
"""

import logging
from typing import Any

from xau_pipeline.dagster_internals import registry
from xau_pipeline.dagster_internals.evaluations import (
    MaterializationTarget,
    day_evaluation,
    latest_materializations,
    log_day_evaluations,
    stores_evaluations_in_batches,
)

__all__ = [
    "MaterializationTarget",
    "day_evaluation",
    "latest_materializations",
    "log_day_evaluations",
    "partition_key_filter",
    "stores_evaluations_in_batches",
]


def partition_key_filter() -> Any:
    """Dagster's `PartitionKeyFilter` class, or None with one warning line if an upgrade moved it."""
    found = registry.resolve(registry.PARTITION_KEY_FILTER)
    if found is None:
        logging.getLogger(__name__).warning(
            registry.warning_line(registry.ALERT_INTERNALS, "check verdicts are not watched for alerts")
        )
    return found
