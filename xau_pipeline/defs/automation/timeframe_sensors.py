"""What the sensors over one timeframe of every symbol (publication, gap repair) share: how they are
declared, and the credits they may spend."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import dagster as dg

from xau_pipeline.market.symbols import Symbol
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.credit_budget import BudgetSettings, credits_by_kind, credits_left


def timeframe_sensor(
    name: str, assets: Mapping[Symbol, dg.AssetsDefinition], interval_seconds: int, description: str
) -> Any:
    """The decorator of a sensor targeting every symbol's asset of one timeframe, running from the start."""
    return dg.sensor(
        name=name,
        target=list(assets.values()),
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )


def credits_today(store: CandleStore, budget: BudgetSettings, now: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """The credits spent today and those each kind of work may still spend, by kind."""
    used = credits_by_kind(store.credits_used_today(now))
    return used, credits_left(budget, used)
