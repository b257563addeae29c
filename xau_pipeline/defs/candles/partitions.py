"""One daily partitioning shared by every candle asset."""

from __future__ import annotations

from datetime import date

import dagster as dg


def daily_partitions(start: date | str) -> dg.DailyPartitionsDefinition:
    """UTC days from the history start; end_offset=1 adds today's partition so the day in progress refreshes."""
    first = start if isinstance(start, str) else start.isoformat()
    return dg.DailyPartitionsDefinition(start_date=first, timezone="UTC", end_offset=1)


# The run tags by which Dagster runs one range of partitions in a single run (what the UI's
# backfill launches for a single-run backfill policy); public names, not dagster._core imports.
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Tags asking for one run over the partitions `first`..`last` (inclusive)."""
    return {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}


# Tags a history catch-up run (xau_pipeline.defs.automation.catch_up_sensor) with its symbol: it draws on the backfill share
# of the day's credits, and its oldest windows are whole pages.
CATCH_UP_TAG = "xau_pipeline/catch_up"
CATCH_UP_PROGRESS_TAG = "xau_pipeline/history_progress"
CATCH_UP_CREDITS_TAG = "xau_pipeline/catch_up_credits"
