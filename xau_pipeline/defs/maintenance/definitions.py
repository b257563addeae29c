"""The daily maintenance job of Dagster's storage and its schedule."""

import dagster as dg

from xau_pipeline.defs.maintenance import build_maintenance_schedule, dagster_maintenance
from xau_pipeline.settings import Settings


def maintenance_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(jobs=[dagster_maintenance], schedules=[build_maintenance_schedule(settings)])
