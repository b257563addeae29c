"""ingest(): one series over one window, with the log lines an operator reads."""

import logging
from datetime import datetime, timedelta, timezone

from xau_pipeline.ingest import ingest
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline_tests.conftest import TEST_API_KEY

UTC = timezone.utc
GOLD = Symbol("XAU/USD")
M15 = TIMEFRAMES_BY_NAME["M15"]
START, END = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 31, tzinfo=UTC)


def test_each_call_and_each_window_is_one_readable_log_line(stand_in, store, caplog):
    caplog.set_level(logging.INFO, logger="test.ingest")
    log = logging.getLogger("test.ingest")
    report = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url, log=log), store, GOLD, M15, START, END, log=log)
    lines = [r.getMessage() for r in caplog.records]
    calls = [line for line in lines if line.startswith("Twelve Data time_series XAU/USD 15min ")]
    assert len(calls) == report.fetch.calls == 2
    assert all("UTC: " in line and " bars" in line and "1 request(s), 1 credit(s)" in line for line in calls)
    assert "2024-03-31 00:00 UTC" in calls[0].replace("..", " ")
    progress = [line for line in lines if "window" in line and "closed bars so far" in line]
    assert [p.split(": ")[1].split(" fetched")[0] for p in progress] == ["window 1 of 2", "window 2 of 2"]
    assert f"{report.counts.inserted} inserted, 0 updated, 0 unchanged; 2 API call(s), 2 credit(s)" in lines[-1]

    caplog.clear()
    again = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url, log=log), store, GOLD, M15, START, END, log=log)
    assert again.fetch.calls == 0
    assert caplog.records[-1].getMessage() == "XAUUSD M15: 2024-01-01 00:00..2024-03-31 00:00 already stored; 0 API calls"


def test_a_window_in_the_future_asks_nothing(stand_in, store):
    future = datetime.now(UTC) + timedelta(days=2)
    report = ingest(TwelveDataClient(TEST_API_KEY, stand_in.url), store, GOLD, M15, future, future + timedelta(days=1))
    assert report.fetch.calls == 0 and stand_in.time_series_calls() == 0
