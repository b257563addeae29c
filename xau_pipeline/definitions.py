"""The code location: every candle asset and the resources they use."""

import dagster as dg

from xau_pipeline.assets import build_candle_asset
from xau_pipeline.partitions import daily_partitions
from xau_pipeline.resources import default_resources
from xau_pipeline.symbols import configured_symbols
from xau_pipeline.timeframes import TIMEFRAMES

partitions = daily_partitions()
candle_assets = [build_candle_asset(symbol, tf, partitions) for symbol in configured_symbols() for tf in TIMEFRAMES]

defs = dg.Definitions(assets=candle_assets, resources=default_resources())
