"""One daily partitioning shared by every candle asset."""

from __future__ import annotations

import os
from datetime import date

import dagster as dg

DEFAULT_HISTORY_START = "2024-01-01"


def history_start(value: str | None = None) -> str:
    """First partition day from `XAU_HISTORY_START` (YYYY-MM-DD), default 2024-01-01."""
    raw = value if value is not None else os.environ.get("XAU_HISTORY_START", DEFAULT_HISTORY_START)
    try:
        return date.fromisoformat(raw.strip()).isoformat()
    except ValueError:
        raise ValueError(f"XAU_HISTORY_START must be a date like 2024-01-01, got {raw!r}") from None


def daily_partitions(start: str | None = None) -> dg.DailyPartitionsDefinition:
    """UTC days from the history start; end_offset=1 adds today's partition so the day in progress refreshes."""
    return dg.DailyPartitionsDefinition(start_date=history_start(start), timezone="UTC", end_offset=1)
