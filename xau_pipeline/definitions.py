"""The code location: candle assets (their checks inside), schedules, repair sensors and resources.

Runs execute in-process: a candle run is a handful of steps that talk to the API and PostgreSQL,
and a process per step cost more than the work (imports and a database connection each, see
docs/architecture.md, "Run shape"). The console level is the instance's (`python_logs` in
dagster.yaml: INFO, one line per API call and window and one for the checks, not Dagster's debug
line per event).
"""

import warnings

import dagster as dg

from xau_pipeline.alerts.sensor import Series, build_alert_sensor
from xau_pipeline.assets import build_candle_asset
from xau_pipeline.catch_up import build_catch_up_sensor
from xau_pipeline.maintenance import build_maintenance_schedule, dagster_maintenance
from xau_pipeline.partitions import daily_partitions
from xau_pipeline.publication_sensor import build_publication_sensor
from xau_pipeline.repair import build_repair_sensor
from xau_pipeline.resources import default_resources
from xau_pipeline.schedules import build_candle_schedule
from xau_pipeline.settings import Settings
from xau_pipeline.timeframes import TIMEFRAMES

# Partitioned asset checks and backfill policies are preview/beta in Dagster 1.13: we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Four assets per configured symbol (one per timeframe) with their checks; per timeframe one
    schedule, one publication sensor and one repair sensor over every symbol's asset; one history
    catch-up sensor per symbol; one alert sensor over every series; the daily maintenance job of
    Dagster's storage."""
    partitions = daily_partitions(settings.history_start)
    by_timeframe = {
        tf: {symbol: build_candle_asset(symbol, tf, partitions, settings) for symbol in settings.symbols}
        for tf in TIMEFRAMES
    }
    schedules = [build_candle_schedule(tf, assets, partitions) for tf, assets in by_timeframe.items()]
    schedules.append(build_maintenance_schedule(settings))
    sensors = [build_repair_sensor(tf, assets, partitions) for tf, assets in by_timeframe.items()]
    sensors += [build_publication_sensor(tf, assets, partitions) for tf, assets in by_timeframe.items()]
    sensors += [
        build_catch_up_sensor(
            symbol, [by_timeframe[tf][symbol] for tf in TIMEFRAMES], partitions, running=settings.catch_up
        )
        for symbol in settings.symbols
    ]
    series = [Series(symbol, tf, assets[symbol].key) for tf, assets in by_timeframe.items() for symbol in assets]
    sensors.append(build_alert_sensor(settings, series))
    return dg.Definitions(
        assets=[asset for symbol in settings.symbols for asset in (by_timeframe[tf][symbol] for tf in TIMEFRAMES)],
        schedules=schedules,
        jobs=[dagster_maintenance],
        sensors=sensors,
        resources=default_resources(settings),
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())
