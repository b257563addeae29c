"""The market's rules, free of Dagster: timeframes, trading hours, bar grids, publication, freshness, the quarantine rule."""
