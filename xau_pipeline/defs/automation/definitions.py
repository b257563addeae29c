"""What launches candle runs unattended: per timeframe a schedule at each close, a publication
sensor and a repair sensor over every symbol's asset; per symbol a history catch-up sensor."""

import dagster as dg

from xau_pipeline.defs.automation.catch_up_sensor import build_catch_up_sensor
from xau_pipeline.defs.automation.publication_sensor import build_publication_sensor
from xau_pipeline.defs.automation.repair_sensor import build_repair_sensor
from xau_pipeline.defs.automation.schedules import build_candle_schedule
from xau_pipeline.defs.candles.definitions import CandleAssets
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.settings import Settings


def automation_definitions(candles: CandleAssets, settings: Settings) -> dg.Definitions:
    partitions = candles.partitions
    by_timeframe = candles.by_timeframe
    sensors = [build_repair_sensor(tf, assets, partitions) for tf, assets in by_timeframe.items()]
    sensors += [build_publication_sensor(tf, assets, partitions) for tf, assets in by_timeframe.items()]
    sensors += [
        build_catch_up_sensor(
            symbol, [by_timeframe[tf][symbol] for tf in TIMEFRAMES], partitions, running=settings.catch_up
        )
        for symbol in settings.symbols
    ]
    return dg.Definitions(
        schedules=[build_candle_schedule(tf, assets, partitions) for tf, assets in by_timeframe.items()],
        sensors=sensors,
    )
