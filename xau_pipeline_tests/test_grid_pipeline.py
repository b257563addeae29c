"""Real-feed fidelity (issue #10, parts 2-4): the stand-in serves H4 and D1 on the UTC grid or on the
17:00 New York grid (across DST), for gold's hours or around the clock; the real client and ingest
load two weeks around each US DST switch into the test database, and the gap report on the
detected grid finds exactly the served bars: no gap, no bar off-session.

The fixed UTC phase the gap query used before grids (still what `phase=` gives) is measured too:
on a New York feed it reports phantom gaps beside bars off its grid; those are now one grid-mismatch
line and are never fetched.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest

from xau_pipeline.defs.automation.repair_sensor import plan_repairs
from xau_pipeline.defs.automation.schedules import build_candle_schedule
from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, daily_partitions
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.ingest import ingest
from xau_pipeline.interfaces import cli
from xau_pipeline.market.bar_grid import new_york_close_grid, utc_grid
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.gaps import GRID_MISMATCH
from xau_pipeline.store.quality import M15Comparison
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline.twelvedata.windows import WindowPlanner, merge_gaps
from xau_pipeline_dev.testing import bar_phase
from xau_pipeline_tests.conftest import TEST_API_KEY

UTC = UTC
H4, D1 = TIMEFRAMES_BY_NAME["H4"], TIMEFRAMES_BY_NAME["D1"]
WEEKS = {
    # Two weeks each, the switch Sunday in the middle: 10 March and 3 November 2024.
    "march": (datetime(2024, 3, 3, tzinfo=UTC), datetime(2024, 3, 17, tzinfo=UTC)),
    "november": (datetime(2024, 10, 27, tzinfo=UTC), datetime(2024, 11, 10, tzinfo=UTC)),
}
# (stand-in bar_anchor, weekend bars (a 24/7 feed), the symbol's calendar)
FEEDS = {
    "utc": ("utc", False, "cme_gold"),
    "new_york": ("new_york", False, "cme_gold"),
    "utc_24x7": ("utc", True, "24x7"),
    "new_york_24x7": ("new_york", True, "24x7"),
}

# The fixed UTC phase (the dominant one) on each feed, before grids: (missing, off-session) per week.
# A New York feed's bars sit on the UTC grid of the dominant phase in one season only.
FIXED_PHASE_BEFORE = {
    ("utc", "H4"): {"march": (0, 0), "november": (0, 0)},
    ("utc", "D1"): {"march": (0, 0), "november": (0, 0)},
    ("new_york", "H4"): {"march": (31, 30), "november": (31, 30)},
    ("new_york", "D1"): {"march": (6, 5), "november": (6, 5)},
    ("utc_24x7", "H4"): {"march": (0, 0), "november": (0, 0)},
    ("utc_24x7", "D1"): {"march": (0, 0), "november": (0, 0)},
    ("new_york_24x7", "H4"): {"march": (40, 40), "november": (40, 40)},
    ("new_york_24x7", "D1"): {"march": (7, 7), "november": (7, 7)},
}


def load(stand_in, store, feed: str, timeframe, week: str):
    anchor, weekend_bars, calendar_name = FEEDS[feed]
    # D1 bars carrying their open time (not a bare date): where they open is then read off them.
    stand_in.configure(bar_anchor=anchor, weekend_bars=weekend_bars, daily_stamp="open")
    symbol = Symbol("XAU/USD", calendar_name)
    start, end = WEEKS[week]
    report = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url), store, symbol, timeframe, start, end)
    assert report.complete
    return symbol, start, end


@pytest.mark.parametrize("week", WEEKS)
@pytest.mark.parametrize("timeframe", [H4, D1], ids=["H4", "D1"])
@pytest.mark.parametrize("feed", FEEDS)
def test_each_grid_loads_exactly_with_no_false_gap_across_the_dst_switch(stand_in, store, feed, timeframe, week):
    symbol, start, end = load(stand_in, store, feed, timeframe, week)
    served = stand_in.bars("XAU/USD", timeframe.interval, start, end)
    stored = store.newest(symbol.name, timeframe, start, end, limit=1000)
    assert [(r.timestamp, r.open, r.high, r.low, r.close) for r in reversed(stored)] == [
        (b["datetime"], b["open"], b["high"], b["low"], b["close"]) for b in served
    ]

    detection = store.grid(symbol.name, timeframe)
    anchored = FEEDS[feed][0] == "new_york"
    assert detection.grid == (new_york_close_grid(timeframe.bar) if anchored else utc_grid(timeframe.bar))
    policy = calendar(symbol.calendar)
    now = datetime.now(UTC)
    after = store.gaps(symbol.name, timeframe, policy, (start, end), now, grid=detection.grid)
    assert (after.missing, after.off_session, after.stored, after.expected) == (0, 0, len(served), len(served))
    assert after.mismatch is None
    # The default (no phase, no grid) detects the same grid.
    assert store.gaps(symbol.name, timeframe, policy, (start, end), now).missing == 0

    before = store.gaps(
        symbol.name, timeframe, policy, (start, end), now, phase=bar_phase(store, symbol.name, timeframe)
    )
    assert (before.missing, before.off_session) == FIXED_PHASE_BEFORE[(feed, timeframe.name)][week]
    if before.missing:
        # Phase 4: every phantom gap is one grid-mismatch line, none is fetched.
        assert before.count(GRID_MISMATCH) == before.missing and not before.real_gaps
        assert before.mismatch is not None
        assert before.mismatch.found == new_york_close_grid(timeframe.bar).describe()
        assert before.mismatch.line.startswith(f"grid mismatch: {before.missing} slot(s) of the ")


@pytest.mark.parametrize("timeframe", [H4, D1], ids=["H4", "D1"])
def test_repair_spends_nothing_on_a_new_york_feed(stand_in, store, timeframe):
    symbol, start, end = load(stand_in, store, "new_york", timeframe, "november")
    calls = stand_in.time_series_calls()
    partitions = dg.DailyPartitionsDefinition(start_date=start.strftime("%Y-%m-%d"), timezone="UTC")
    plan = plan_repairs(store, symbol, timeframe, partitions, end + timedelta(hours=2))
    assert (plan.never_fetched, plan.provider_retry, plan.given_up) == ([], [], [])
    assert stand_in.time_series_calls() == calls


def test_a_new_york_d1_bar_opening_sunday_evening_is_fetched():
    """The 17:00 New York D1 bar opens Sunday 22:00 UTC in winter, before gold opens at 23:00: the
    sessions-overlap rule keeps a gap holding only its open (the market-closed rule drops no call)."""
    cme = calendar("cme_gold")
    sunday = datetime(2024, 1, 7, 22, tzinfo=UTC)
    gap = (sunday, sunday + timedelta(seconds=1))
    assert merge_gaps([gap], D1.bar, cme) == [gap]
    # Saturday's 17:00 bar overlaps no session: no call.
    saturday = datetime(2024, 1, 6, 22, tzinfo=UTC)
    assert merge_gaps([(saturday, saturday + timedelta(seconds=1))], timedelta(hours=23), cme) == []


def test_windows_sized_on_a_new_york_grid_hold_at_most_max_bars_of_it():
    cme, grid = calendar("cme_gold"), new_york_close_grid(H4.bar)
    span = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 12, 1, tzinfo=UTC))
    planner = WindowPlanner(span, H4.bar, cme, max_bars=50, grid=grid)
    windows, end = [], span[1]
    while end > span[0]:
        window = planner.window_ending_at(end)
        windows.append(window)
        end = window[0]
    counts = [cme.count_expected(*w, H4.bar, grid=grid) for w in windows]
    assert counts[:-1] == [50] * (len(windows) - 1) and 0 < counts[-1] <= 50
    assert len(windows) == planner.expected_calls == -(-cme.count_expected(*span, H4.bar, grid=grid) // 50)
    assert merge_gaps(
        [(span[0], span[0] + timedelta(days=7)), (span[0] + timedelta(days=8), span[1])], H4.bar, cme, 50, grid
    ) == [
        (span[0], span[0] + timedelta(days=7)),
        (span[0] + timedelta(days=8), span[1]),
    ]


def test_gaps_command_names_the_new_york_grid_and_finds_nothing_missing(stand_in, store, capsys, monkeypatch):
    load(stand_in, store, "new_york", H4, "march")
    monkeypatch.setenv("XAU_DATABASE_URL", store.url)
    monkeypatch.delenv("XAU_SYMBOLS", raising=False)
    monkeypatch.setattr(cli, "utc_now", lambda: datetime(2024, 4, 1, tzinfo=UTC))
    assert cli.main(["gaps", "H4", "--start", "2024-03-03", "--end", "2024-03-17"]) == 0
    out = capsys.readouterr().out
    assert "grid:        4h anchored America/New_York 17:00" in out.splitlines()
    assert "missing:     0 (never fetched 0, provider returned nothing 0, not published yet 0)" in out.splitlines()
    assert "off-session: 0" in out.splitlines()


def test_h4_on_the_new_york_grid_agrees_with_its_m15_bars(stand_in, store):
    """consistent_with_m15 on the detected grid: each New York H4 bar is its M15 bars, across the switch."""
    symbol, start, end = load(stand_in, store, "new_york", H4, "march")
    load(stand_in, store, "new_york", TIMEFRAMES_BY_NAME["M15"], "march")
    grid = store.grid(symbol.name, H4).grid
    policy = calendar(symbol.calendar)

    def m15_expected(slot: datetime) -> int:
        return policy.count_expected(slot, grid.slot_of(slot)[1], timedelta(minutes=15))

    mismatches, compared, incomplete = store.m15_mismatches(
        symbol.name, H4, start, end, M15Comparison(Decimal("0.000001"), m15_expected, grid)
    )
    served = stand_in.bars("XAU/USD", "4h", start, end)
    assert (mismatches, compared, incomplete) == ([], len(served), 0)
    # On the fixed UTC phase, the bars of the other DST season fall between its slots: half of the
    # 60 bars cannot be compared.
    phase = bar_phase(store, symbol.name, H4)
    _, compared_before, incomplete_before = store.m15_mismatches(
        symbol.name, H4, start, end, M15Comparison(Decimal("0.000001"), m15_expected, phase=phase)
    )
    assert (compared_before, incomplete_before, len(served)) == (30, 30, 60)


def test_repair_skips_phantom_gaps_even_on_a_fixed_phase(stand_in, store, monkeypatch):
    """Were the repair sensor's gap report taken on the fixed UTC phase (as before grids), its 31
    "missing" H4 slots would all be grid mismatches: nothing is planned, no credit spent."""
    symbol, start, end = load(stand_in, store, "new_york", H4, "march")
    phase, now = bar_phase(store, symbol.name, H4), end + timedelta(hours=2)
    mismatch = store.gaps(symbol.name, H4, calendar(symbol.calendar), (start, end), now, phase=phase).mismatch
    assert mismatch is not None and mismatch.line == (
        "grid mismatch: 31 slot(s) of the 4h anchored UTC 01:00 grid are empty beside 30 stored bar(s) off it; "
        "the stored bars fit 4h anchored America/New_York 17:00. Not gaps: nothing to fetch."
    )
    real_gaps = store.gaps
    monkeypatch.setattr(store, "gaps", lambda *args, **kwargs: real_gaps(*args, **kwargs, phase=phase))
    assert store.gaps(symbol.name, H4, calendar(symbol.calendar), (start, end), now).count(GRID_MISMATCH) == 31
    partitions = dg.DailyPartitionsDefinition(start_date=start.strftime("%Y-%m-%d"), timezone="UTC")
    plan = plan_repairs(store, symbol, H4, partitions, now)
    assert (plan.never_fetched, plan.provider_retry, plan.given_up) == ([], [], [])


@pytest.mark.slow
@pytest.mark.parametrize("feed", ["utc", "new_york"])
def test_dagster_backfill_across_the_november_switch_on_either_grid(dagster_instance, resources, stand_in, store, feed):
    """The assets (daily partitions, one ranged run) on each grid: exactly the served H4 and D1 bars,
    none missing on the detected grid; a New York D1 bar lands in the partition of its open's UTC day."""
    stand_in.configure(bar_anchor=feed, weekend_bars=False, daily_stamp="open")
    gold = Symbol("XAU/USD")
    partitions = daily_partitions("2024-10-01")
    assets = [build_candle_asset(gold, tf, partitions) for tf in (H4, D1)]
    result = dg.materialize(
        assets,
        instance=dagster_instance,
        resources=resources,
        tags={PARTITION_RANGE_START_TAG: "2024-10-27", PARTITION_RANGE_END_TAG: "2024-11-09"},
    )
    assert result.success
    start, end = WEEKS["november"]
    for tf in (H4, D1):
        served = stand_in.bars("XAU/USD", tf.interval, start, end)
        stored = store.newest(gold.name, tf, start, end, limit=1000)
        assert [r.timestamp for r in reversed(stored)] == [b["datetime"] for b in served]
        grid = store.grid(gold.name, tf).grid
        report = store.gaps(gold.name, tf, calendar("cme_gold"), (start, end), datetime.now(UTC), grid=grid)
        assert (report.missing, report.off_session, report.expected) == (0, 0, len(served))
    if feed == "new_york":
        # Sunday 3 November, the switch: the D1 bar from 17:00 New York (22:00 UTC, standard time again).
        assert datetime(2024, 11, 3, 22, tzinfo=UTC) in {
            r.timestamp for r in store.newest(gold.name, D1, start, end, 100)
        }


@pytest.mark.parametrize(
    ("feed", "timeframe", "tick", "bar_open"),
    [
        # After the March switch: New York H4 closes at 21:00 UTC, the UTC grid's at 20:00.
        ("new_york", H4, datetime(2024, 3, 14, 21, 2, tzinfo=UTC), "2024-03-14T17:00Z"),
        ("new_york", H4, datetime(2024, 3, 14, 20, 2, tzinfo=UTC), None),
        ("utc", H4, datetime(2024, 3, 14, 20, 2, tzinfo=UTC), "2024-03-14T16:00Z"),
        ("utc", H4, datetime(2024, 3, 14, 21, 2, tzinfo=UTC), None),
        # Before it: the New York D1 bar of Wednesday 6 March closes Thursday 22:00 UTC.
        ("new_york", D1, datetime(2024, 3, 7, 22, 2, tzinfo=UTC), "2024-03-06T22:00Z"),
        ("new_york", D1, datetime(2024, 3, 7, 0, 2, tzinfo=UTC), None),
        ("utc", D1, datetime(2024, 3, 7, 0, 2, tzinfo=UTC), "2024-03-06T00:00Z"),
    ],
)
def test_schedules_fire_after_the_real_close_of_the_served_grid(
    dagster_instance, stand_in, store, feed, timeframe, tick, bar_open
):
    symbol, _start, _end = load(stand_in, store, feed, timeframe, "march")
    partitions = daily_partitions("2024-01-01")
    asset = build_candle_asset(symbol, timeframe, partitions)
    schedule = build_candle_schedule(timeframe, {symbol: asset}, partitions)
    resources = {
        "candle_store": CandleStoreResource(database_url=store.url),
        "twelvedata": TwelveDataResource(api_key="unused"),
    }
    defs = dg.Definitions(assets=[asset], schedules=[schedule], resources=resources)
    with dg.build_schedule_context(
        instance=dagster_instance,
        scheduled_execution_time=tick,
        repository_def=defs.get_repository_def(),
        resources=resources,
    ) as context:
        result = schedule.evaluate_tick(context)
        if bar_open is None:
            assert not result.run_requests and result.skip_message.startswith(f"no {timeframe.name} bar of the grid")
        else:
            (request,) = result.run_requests
            assert request.run_key == f"{timeframe.key_suffix}:{bar_open}"
            assert request.partition_key == bar_open[:10]
