"""A code location for the GraphQL tests: the M15 and H1 assets of test_check_partitions.py, as the UI loads them."""

import warnings

import dagster as dg

from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import daily_partitions
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

partitions = daily_partitions("2024-01-01")
defs = dg.Definitions(
    assets=[build_candle_asset(Symbol("XAU/USD"), TIMEFRAMES_BY_NAME[name], partitions) for name in ("M15", "H1")],
    resources={
        "twelvedata": TwelveDataResource(api_key=dg.EnvVar("TWELVE_DATA_API_KEY")),
        "candle_store": CandleStoreResource(database_url=dg.EnvVar("XAU_DATABASE_URL")),
    },
)
