"""The alert sensor over every series: one notice per incident, one when it clears."""

import dagster as dg

from xau_pipeline.defs.alerts.sensor import Series, build_alert_sensor
from xau_pipeline.defs.candles.definitions import CandleAssets
from xau_pipeline.settings import Settings


def alert_definitions(candles: CandleAssets, settings: Settings) -> dg.Definitions:
    series = [
        Series(symbol, tf, assets[symbol].key) for tf, assets in candles.by_timeframe.items() for symbol in assets
    ]
    return dg.Definitions(sensors=[build_alert_sensor(settings, series)])
