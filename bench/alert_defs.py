"""The code location bench/alert_latency.py runs under a real daemon: the alert sensor alone, over one
series on the 24x7 calendar (never a closed market, whatever day the bench runs), its channels from
the environment as in production (Settings.from_env)."""

import warnings

import dagster as dg

from xau_pipeline.defs.alerts.sensor import Series, build_alert_sensor
from xau_pipeline.defs.resources import CandleStoreResource
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.settings import Settings

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

SYMBOL = Symbol("XAU/USD", calendar="24x7")
KEY = dg.AssetKey(["xauusd", "candles_m15"])
settings = Settings.from_env()

defs = dg.Definitions(
    sensors=[build_alert_sensor(settings, [Series(SYMBOL, TIMEFRAMES_BY_NAME["M15"], KEY)])],
    resources={"candle_store": CandleStoreResource(database_url=settings.database_url)},
)
