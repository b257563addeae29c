"""The candle assets, one per symbol and timeframe, and the checks that judge each day."""
