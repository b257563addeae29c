"""The candle assets: one per symbol and timeframe on the daily partitions, their checks inside."""

from dataclasses import dataclass

import dagster as dg

from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import daily_partitions
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES, Timeframe
from xau_pipeline.settings import Settings


@dataclass(frozen=True)
class CandleAssets:
    """The built assets, by timeframe then symbol, with the partitions they share."""

    partitions: dg.DailyPartitionsDefinition
    by_timeframe: dict[Timeframe, dict[Symbol, dg.AssetsDefinition]]

    def all(self) -> list[dg.AssetsDefinition]:
        symbols = next(iter(self.by_timeframe.values()), {})
        return [self.by_timeframe[tf][symbol] for symbol in symbols for tf in self.by_timeframe]


def build_candle_assets(settings: Settings) -> CandleAssets:
    partitions = daily_partitions(settings.history_start)
    return CandleAssets(
        partitions,
        {
            tf: {symbol: build_candle_asset(symbol, tf, partitions, settings) for symbol in settings.symbols}
            for tf in TIMEFRAMES
        },
    )


def candle_definitions(candles: CandleAssets) -> dg.Definitions:
    return dg.Definitions(assets=candles.all())
