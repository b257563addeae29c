"""The stale-run rule: which of a sensor's runs count as still in progress.

A run queued or running that Dagster has not heard of for STALE_RUN_AFTER has died (its process
was killed, its machine went away); run monitoring will mark it failed, and the sensors that wait
for their runs stop waiting for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import dagster as dg

STALE_RUN_AFTER = timedelta(hours=6)
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def runs_in_progress(
    instance: dg.DagsterInstance, tags: Mapping[str, str], now: datetime, limit: int | None = None
) -> Sequence[dg.DagsterRun]:
    """The runs tagged `tags` queued or running and heard of within STALE_RUN_AFTER of `now`, newest first."""
    filters = dg.RunsFilter(tags=dict(tags), statuses=IN_PROGRESS, updated_after=now - STALE_RUN_AFTER)
    return instance.get_runs(filters=filters, limit=limit)
