"""The code location: each domain's definitions under defs/ merged, with the resources and the executor.

Runs execute in-process: a candle run is a handful of steps that talk to the API and PostgreSQL,
and a process per step cost more than the work (imports and a database connection each, see
docs/architecture.md, "Assets, partitions and the run shape"). The console level is the instance's (`python_logs` in
dagster.yaml: INFO, one line per API call and window and one for the checks, not Dagster's debug
line per event).
"""

import warnings

import dagster as dg

from xau_pipeline.defs.alerts.definitions import alert_definitions
from xau_pipeline.defs.automation.definitions import automation_definitions
from xau_pipeline.defs.candles.definitions import build_candle_assets, candle_definitions
from xau_pipeline.defs.maintenance.definitions import maintenance_definitions
from xau_pipeline.defs.resources import default_resources
from xau_pipeline.settings import Settings

# Partitioned asset checks and backfill policies are preview/beta in Dagster 1.13: we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Four assets per configured symbol (one per timeframe) with their checks; per timeframe one
    schedule, one publication sensor and one repair sensor over every symbol's asset; one history
    catch-up sensor per symbol; one alert sensor over every series; the daily maintenance job of
    Dagster's storage."""
    candles = build_candle_assets(settings)
    return dg.Definitions.merge(
        candle_definitions(candles),
        automation_definitions(candles, settings),
        alert_definitions(candles, settings),
        maintenance_definitions(settings),
        dg.Definitions(resources=default_resources(settings), executor=dg.in_process_executor),
    )


defs = build_definitions(Settings.from_env())
