"""ingest(): one series over one window, with the log lines an operator reads."""

import logging
from datetime import UTC, datetime, timedelta

from xau_pipeline.ingest import ingest
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline_tests.conftest import TEST_API_KEY

UTC = UTC
GOLD = Symbol("XAU/USD")
M15 = TIMEFRAMES_BY_NAME["M15"]
START, END = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 31, tzinfo=UTC)


def test_each_call_and_each_window_is_one_readable_log_line(stand_in, store, caplog):
    caplog.set_level(logging.DEBUG, logger="test.ingest")
    log = logging.getLogger("test.ingest")
    report = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url, log=log), store, GOLD, M15, START, END, log=log)
    lines = [r.getMessage() for r in caplog.records]
    calls = [line for line in lines if line.startswith("Twelve Data time_series XAU/USD 15min ")]
    assert len(calls) == report.calls == 2
    assert all("UTC: " in line and " bars" in line and "1 request(s), 1 credit(s)" in line for line in calls)
    assert "2024-03-31 00:00 UTC" in calls[0].replace("..", " ")
    progress = [line for line in lines if "window" in line and "closed bars so far" in line]
    assert [p.split(": ")[1].split(" fetched")[0] for p in progress] == ["window 1 of 2", "window 2 of 2"]
    assert f"{report.counts.inserted} inserted, 0 updated, 0 unchanged; 2 API call(s), 2 credit(s)" in lines[-1]

    caplog.clear()
    again = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url, log=log), store, GOLD, M15, START, END, log=log)
    assert again.calls == 0 and stand_in.time_series_calls() == 2
    # The full newest page covers up to the end asked for: nothing is missing, no call.
    assert "already stored; 0 API calls" in caplog.records[-1].getMessage()
    assert caplog.records[-1].levelno == logging.DEBUG  # the run's totals line says it at INFO


def test_a_window_in_the_future_asks_nothing(stand_in, store):
    future = datetime.now(UTC) + timedelta(days=2)
    report = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url), store, GOLD, M15, future, future + timedelta(days=1))
    assert report.calls == 0 and stand_in.time_series_calls() == 0


def test_an_h4_bar_off_the_utc_grid_is_fetched_once_it_has_closed(stand_in, store):
    """With 4h bars at 01:00, 05:00, ... (the phase is undocumented), the 21:00 bar closes after
    midnight; a later ingest of its day must ask for it even though no 00/04/08... slot is missing."""
    stand_in.configure(h4_phase_hours=1)
    h4, day = TIMEFRAMES_BY_NAME["H4"], datetime(2024, 3, 12, tzinfo=UTC)

    def ingest_at(clock_time):
        client = TwelveDataClient(TEST_API_KEY, stand_in.url, clock=lambda: clock_time)
        return ingest(client, store, GOLD, h4, day, day + timedelta(days=1))

    ingest_at(day + timedelta(days=1, minutes=1))
    later = ingest_at(day + timedelta(days=1, hours=1, minutes=2))
    assert later.calls == 1 and later.counts.inserted == 1
    stored, _first, last = store.summary("XAUUSD", h4, day, day + timedelta(days=1))
    assert last == day + timedelta(hours=21)
    assert stored == len(stand_in.bars("XAU/USD", "4h", day, day + timedelta(days=1)))


def test_a_rerun_of_a_finished_backfill_costs_nothing_even_at_seams(stand_in, store):
    """A 24/7 feed fills pages sized for market hours, and the provider has nothing for the range's
    last hours: the full page's empty tail is covered, so the rerun makes no call."""
    stand_in.configure(
        weekend_bars=True, holes=[(datetime(2024, 3, 28, 18, tzinfo=UTC), datetime(2024, 3, 29, tzinfo=UTC))]
    )
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 29, tzinfo=UTC)
    first = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url), store, GOLD, M15, start, end)
    assert first.complete and first.calls >= 2
    for a, b in [(start, end), (start, start + timedelta(days=40)), (end - timedelta(days=3), end)]:
        again = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url), store, GOLD, M15, a, b)
        assert (again.calls, again.credits) == (0, 0), stand_in.requests[-1].params
    assert stand_in.time_series_calls() == first.calls
