"""A stored materialization as a check evaluation's target names it (no Dagster internal here)."""

from __future__ import annotations

from typing import NamedTuple


class MaterializationTarget(NamedTuple):
    """What a check evaluation's target names of a stored materialization (`EventLogRecord` has the same fields)."""

    storage_id: int
    run_id: str
    timestamp: float
