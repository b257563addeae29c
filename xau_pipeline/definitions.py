"""The code location: candle assets, their checks and schedules, and the resources they use."""

import warnings

import dagster as dg

from xau_pipeline.assets import build_candle_asset
from xau_pipeline.checks import build_candle_checks
from xau_pipeline.partitions import daily_partitions
from xau_pipeline.repair import build_repair_sensor
from xau_pipeline.resources import default_resources
from xau_pipeline.schedules import build_candle_schedule
from xau_pipeline.settings import Settings
from xau_pipeline.timeframes import TIMEFRAMES

# Partitioned asset checks and backfill policies are preview/beta in Dagster 1.13: we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Four assets per configured symbol (one per timeframe), each with its checks, schedule and repair sensor."""
    partitions = daily_partitions(settings.history_start)
    assets, checks, schedules, sensors = [], [], [], []
    for symbol in settings.symbols:
        for tf in TIMEFRAMES:
            asset = build_candle_asset(symbol, tf, partitions, settings.read_api_url)
            assets.append(asset)
            checks += build_candle_checks(symbol, tf, asset, partitions, settings)
            schedules.append(build_candle_schedule(symbol, tf, asset, partitions))
            sensors.append(build_repair_sensor(symbol, tf, asset, partitions))
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        schedules=schedules,
        sensors=sensors,
        resources=default_resources(settings),
    )


defs = build_definitions(Settings.from_env())
