"""A code location for the daemon test: the real factories, with a schedule ticking every minute.

The symbol uses the 24x7 calendar (and the stand-in serves weekend bars) so a tick is never
skipped for a closed market, whatever day the test runs.
"""

import os
import warnings

import dagster as dg

from xau_pipeline.defs.automation.schedules import build_candle_schedule
from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import daily_partitions
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

symbol = Symbol("XAU/USD", calendar="24x7")
timeframe = TIMEFRAMES_BY_NAME["M15"]
partitions = daily_partitions("2024-01-01")
asset = build_candle_asset(symbol, timeframe, partitions)

defs = dg.Definitions(
    assets=[asset],
    schedules=[build_candle_schedule(timeframe, {symbol: asset}, partitions, cron_schedule="* * * * *")],
    resources={
        "twelvedata": TwelveDataResource(
            api_key=dg.EnvVar("TWELVE_DATA_API_KEY"), base_url=os.environ.get("TWELVE_DATA_BASE_URL", "")
        ),
        "candle_store": CandleStoreResource(database_url=dg.EnvVar("XAU_DATABASE_URL")),
    },
)
