"""How people and programs read the candles: the HTTP API, the CLI, pandas DataFrames."""
