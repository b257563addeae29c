"""The one place that names a Dagster type not exported by `dagster`: an evaluation's target materialization.

Dagster 1.13.27 counts a partition's check evaluation in the check's Partitions tab only when it
targets that partition's latest materialization (`AssetCheckPartitionInfo.is_current`). A ranged
step gets no such target from a typed `AssetCheckResult`, so a day's evaluation is built here.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

# `target_materialization_data` is documented in the public docstring of `dg.AssetCheckEvaluation`
# ("The latest materialization at execution time of the check."), but its type is exported only
# from this private module. test_check_target.py fails, saying what to do, if an upgrade moves it.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

__all__ = ["day_evaluation"]


def day_evaluation(
    asset_key: dg.AssetKey,
    check_name: str,
    partition: str,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    target: dg.EventLogRecord | None,
    metadata: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> dg.AssetCheckEvaluation:
    """One partition's evaluation, targeting `target` (that partition's stored materialization, or none)."""
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=check_name,
        passed=passed,
        partition=partition,
        severity=severity,
        metadata=metadata,
        description=description,
        target_materialization_data=(
            AssetCheckEvaluationTargetMaterializationData(
                storage_id=target.storage_id, run_id=target.run_id, timestamp=target.timestamp
            )
            if target is not None
            else None
        ),
    )
