import importlib

import dagster as dg


def test_definitions_load(monkeypatch):
    """The code location loads with placeholder settings: four assets in group `candles`, one partitioning."""
    monkeypatch.setenv("TWELVE_DATA_API_KEY", "placeholder")
    monkeypatch.setenv("XAU_HISTORY_START", "2024-01-01")
    import xau_pipeline.definitions as module

    defs = importlib.reload(module).defs
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert keys == {f"xauusd/candles_{tf}" for tf in ("m15", "h1", "h4", "d1")}
    specs = defs.resolve_all_asset_specs()
    assert {spec.group_name for spec in specs} == {"candles"}
    assert len({spec.partitions_def for spec in specs}) == 1
    partitions = specs[0].partitions_def
    assert partitions.get_first_partition_key() == "2024-01-01"
    assert (
        partitions.get_last_partition_key()
        == dg.DailyPartitionsDefinition("2024-01-01", end_offset=1).get_last_partition_key()
    )
    defs.resolve_implicit_global_asset_job_def()


def test_a_second_symbol_is_one_setting(monkeypatch):
    monkeypatch.setenv("XAU_SYMBOLS", "XAU/USD, XAG/USD")
    import xau_pipeline.definitions as module

    try:
        keys = {key.to_user_string() for key in importlib.reload(module).defs.resolve_all_asset_keys()}
        assert "xagusd/candles_h4" in keys and len(keys) == 8
    finally:
        monkeypatch.delenv("XAU_SYMBOLS")
        importlib.reload(module)


def test_a_run_of_every_asset_is_one_in_process_step_per_series_with_its_checks_inside(monkeypatch):
    """Four steps (not 19) in one process: the checks are check specs of their asset, and can run alone."""
    monkeypatch.setenv("TWELVE_DATA_API_KEY", "placeholder")
    import xau_pipeline.definitions as module

    defs = importlib.reload(module).defs
    job = defs.resolve_implicit_global_asset_job_def()
    assert len(job.nodes) == 4
    assert job.executor_def is dg.in_process_executor
    check_keys = [
        key for node in job.nodes for key in defs.resolve_assets_def(dg.AssetKey(node.name.split("__"))).check_keys
    ]
    assert {key.name for key in check_keys} == {
        "no_gaps",
        "ohlc_valid",
        "quarantine_empty",
        "fresh",
        "consistent_with_m15",
    }
    assert len(check_keys) == 19
    assert defs.resolve_assets_def(dg.AssetKey(["xauusd", "candles_h1"])).can_subset


def test_many_symbols_share_one_schedule_and_one_repair_sensor_per_timeframe():
    """50 symbols: 200 assets, but 4 schedules and 4 repair sensors (each over all symbols' asset of its
    timeframe), and one history catch-up sensor per symbol."""
    from xau_pipeline.definitions import build_definitions
    from xau_pipeline.settings import Settings

    symbols = ",".join(f"S{n:02d}/USD:fx_24x5" for n in range(50))
    defs = build_definitions(Settings.from_env({"XAU_SYMBOLS": symbols, "TWELVE_DATA_API_KEY": "placeholder"}))
    assert len(defs.resolve_all_asset_keys()) == 200
    schedules = {s.name: s for s in defs.schedules}
    assert sorted(schedules) == sorted(
        [*(f"candles_{tf}_on_close" for tf in ("m15", "h1", "h4", "d1")), "dagster_maintenance_daily"]
    )
    repair = [s for s in defs.sensors if s.name.endswith("_gap_repair")]
    assert sorted(s.name for s in repair) == sorted(f"candles_{tf}_gap_repair" for tf in ("m15", "h1", "h4", "d1"))
    assert len([s for s in defs.sensors if s.name.endswith("_history_catch_up")]) == 50
    m15 = schedules["candles_m15_on_close"].target.assets_defs
    assert {key.path[1] for a in m15 for key in a.keys} == {"candles_m15"} and len(m15) == 50
