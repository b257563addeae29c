"""The pipeline against the stand-in as real Twelve Data answers show it (issue #19): a 24/7 feed,
bare-date D1 bars, and each day boundary and H4 phase the stand-in can serve, across both 2024 US
DST switches. For each: no false gap, no wrong bar, and consistent_with_m15 right on every day.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from xau_pipeline.defs.candles.checks import CandleChecks
from xau_pipeline.defs.candles.partitions import daily_partitions
from xau_pipeline.ingest import ingest
from xau_pipeline.interfaces import cli
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline_dev.testing import serving_in_thread
from xau_pipeline_tests.conftest import TEST_API_KEY

M15, H1, H4, D1 = (TIMEFRAMES_BY_NAME[n] for n in ("M15", "H1", "H4", "D1"))
WEEKS = {
    # Two weeks each, the switch Sunday in the middle: 10 March and 3 November 2024.
    "march": (datetime(2024, 3, 3, tzinfo=UTC), datetime(2024, 3, 17, tzinfo=UTC)),
    "november": (datetime(2024, 10, 27, tzinfo=UTC), datetime(2024, 11, 10, tzinfo=UTC)),
}
PARTITIONS = daily_partitions("2024-01-01")
GOLD = Symbol("XAU/USD")  # its calendar: CME gold hours; the feed's other bars are off-session
# The stand-in's switches per variant; each is run for H4 and D1 with the M15 and H1 bars below them.
VARIANTS = {
    "evidence defaults": {},
    "D1 from 00:00 UTC+10": {"day_boundary": "utc+10"},
    "D1 from 17:00 New York": {"day_boundary": "new_york"},
    "H4 phase 1": {"h4_phase_hours": 1},
    "H4 phase 2": {"h4_phase_hours": 2},
    "H4 phase 3": {"h4_phase_hours": 3},
    "H4 and D1 from 17:00 New York": {"bar_anchor": "new_york"},
}


def load(stand_in, store, start, end):
    client = TwelveDataClient(TEST_API_KEY, stand_in.url)
    for timeframe in (M15, H1, H4, D1):
        report = ingest(client, store, GOLD, timeframe, start, end)
        assert report.complete and report.error is None


def served(stand_in, timeframe, start, end):
    return [
        (b["datetime"], b["open"], b["high"], b["low"], b["close"])
        for b in stand_in.bars(GOLD.api_symbol, timeframe.interval, start, end)
    ]


def stored(store, timeframe, start, end):
    rows = store.newest(GOLD.name, timeframe, start, end, limit=100_000)
    return [(r.timestamp, r.open, r.high, r.low, r.close) for r in reversed(rows)]


@pytest.mark.parametrize("week", WEEKS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_no_false_gap_no_wrong_bar_and_m15_consistency_on_each_feed(stand_in, store, variant, week):
    stand_in.configure(**VARIANTS[variant])
    start, end = WEEKS[week]
    load(stand_in, store, start, end)
    now = datetime.now(UTC)
    policy = calendar(GOLD.calendar)
    keys = PARTITIONS.get_partition_keys_in_range(
        dg.PartitionKeyRange(start.strftime("%Y-%m-%d"), (end - timedelta(days=1)).strftime("%Y-%m-%d"))
    )
    for timeframe in (M15, H1, H4, D1):
        bars = served(stand_in, timeframe, start, end)
        assert stored(store, timeframe, start, end) == bars, timeframe.name  # every served bar, none wrong
        report = store.gaps(GOLD.name, timeframe, policy, (start, end), now)
        assert (report.missing, report.mismatch) == (0, None), (timeframe.name, report.gaps[:3])
        # The feed's bars outside gold's hours (weekends, the daily break) are stored as off-session.
        assert report.stored == len(bars) and report.off_session == len(bars) - report.expected
    for timeframe in (H4, D1):
        checks = CandleChecks(store, GOLD, timeframe, PARTITIONS, now, keys=keys)
        verdicts = [checks.judge("consistent_with_m15", key) for key in keys]
        judged = [v for v in verdicts if v is not None]
        assert judged and all(v.passed and not v.unjudged for v in judged), (
            timeframe.name,
            [(k, v.metadata.get("mismatches"), v.description) for k, v in zip(keys, verdicts) if v and not v.passed],
        )
        compared = sum(v.metadata["bars_compared"] for v in judged)
        assert compared == len(served(stand_in, timeframe, start, end))


# Twelve Data keeps the newest bars of a full page: 5000 M15 bars back from here reach Sunday
# 2023-01-01 10:00, and the rest of the window (00:00-09:45) is closed on gold's calendar.
EDGE = (datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 2, 22, 12, tzinfo=UTC))


def test_a_closed_edge_left_by_a_full_page_of_a_24_7_feed_is_asked_for(stand_in, store, capsys, monkeypatch):
    start, end = EDGE
    report = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url), store, GOLD, M15, start, end)
    assert report.complete and report.calls == 2  # the edge costs one more credit, once
    assert [(w.start, w.end) for w in report.windows][-1] == (start, datetime(2023, 1, 1, 10, tzinfo=UTC))
    bars = served(stand_in, M15, start, end)
    assert stored(store, M15, start, end) == bars
    gaps = store.gaps(GOLD.name, M15, calendar(GOLD.calendar), (start, end), datetime.now(UTC))
    assert (gaps.missing, gaps.stored, gaps.off_session) == (0, len(bars), len(bars) - gaps.expected)
    assert gaps.off_session > 40 * 8  # the edge's 40 bars, and the weekends inside the window
    monkeypatch.setenv("XAU_DATABASE_URL", store.url)
    monkeypatch.delenv("XAU_SYMBOLS", raising=False)
    assert cli.main(["gaps", "M15", "--start", "2023-01-01", "--end", "2023-02-22"]) == 0
    lines = capsys.readouterr().out.splitlines()
    day_gaps = store.gaps(
        GOLD.name, M15, calendar(GOLD.calendar), (start, datetime(2023, 2, 22, tzinfo=UTC)), datetime.now(UTC)
    )
    assert f"off-session: {day_gaps.off_session}" in lines and any(line.startswith("missing:     0 ") for line in lines)


def test_a_cme_hours_feed_spends_no_call_on_a_closed_edge(stand_in, store):
    stand_in.configure(weekend_bars=False)
    start, end = EDGE
    report = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url), store, GOLD, M15, start, end)
    assert report.complete and report.calls == 1
    assert stored(store, M15, start, end) == served(stand_in, M15, start, end)


def test_the_cli_and_the_api_say_how_d1_bars_are_stored_and_which_day_each_holds(
    stand_in, store, database_url, capsys, monkeypatch
):
    stand_in.configure(day_boundary="utc+10")
    start, end = WEEKS["march"]
    client = TwelveDataClient(TEST_API_KEY, stand_in.url)
    for timeframe in (H1, D1):
        assert ingest(client, store, GOLD, timeframe, start, end).complete
    said = (
        "D1 bars stored at 00:00 UTC of the date Twelve Data gives them; each holds the day of the 1day anchored "
        "UTC 14:00 grid holding that date's noon UTC (13 of 14 checked against H1)"
    )
    assert store.day_cover(GOLD.name, start, end).describe() == said  # the first day's H1 bars begin mid-day
    monkeypatch.setenv("XAU_DATABASE_URL", store.url)
    monkeypatch.delenv("XAU_SYMBOLS", raising=False)
    assert cli.main(["gaps", "D1", "--start", "2024-03-03", "--end", "2024-03-17"]) == 0
    assert f"day:         {said}" in capsys.readouterr().out.splitlines()
    with serving_in_thread(database_url) as url:
        body = requests.get(
            f"{url}/candles/D1/gaps", params={"start": "2024-03-03", "end": "2024-03-17"}, timeout=30
        ).json()
    assert (body["day_held"], body["missing"]) == (said, 0)


def test_d1_bars_that_fit_no_day_boundary_are_one_line_not_hundreds_of_mismatches(stand_in, store):
    start, end = WEEKS["march"]
    load(stand_in, store, start, end)
    with store.engine.begin() as connection:  # D1 bars no day of H1 bars adds up to
        connection.execute(sa.text("UPDATE candles SET high = high * 1.01 WHERE timeframe = 'D1'"))
    keys = PARTITIONS.get_partition_keys_in_range(dg.PartitionKeyRange("2024-03-03", "2024-03-16"))
    checks = CandleChecks(store, GOLD, D1, PARTITIONS, datetime.now(UTC), keys=keys)
    verdicts = [checks.judge("consistent_with_m15", key) for key in keys]
    assert all(v is not None and v.unjudged and not v.passed for v in verdicts)
    assert {v.description for v in verdicts if v is not None} == {
        "grid mismatch: the D1 bars fit no day boundary tried (00:00-23:00 UTC, 17:00 New York): 0 of 14 bar(s) "
        "with H1 bars match their best fit. Not compared with M15."
    }
