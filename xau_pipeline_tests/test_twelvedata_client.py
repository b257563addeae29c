"""The client against the local stand-in over a real socket: windows, parsing, every error row.

Windows are planned and stored by ingest (the client makes one call); `fetch` below runs an ingest
into the test database and reads back what it stored.
"""

import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from xau_pipeline.clock import utc_now
from xau_pipeline.ingest import ingest
from xau_pipeline.market.bars import Bar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.coverage import closed_until
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline.twelvedata.errors import (
    AuthenticationError,
    DailyLimitError,
    InvalidRequestError,
    MalformedAnswerError,
    PlanNotAllowedError,
    ServiceUnavailableError,
    UnknownSymbolError,
)
from xau_pipeline.twelvedata.retry_policy import RetryPolicy
from xau_pipeline_dev.twelvedata_standin import Fault
from xau_pipeline_tests.conftest import TEST_API_KEY

UTC = UTC
M15, H1, H4, D1 = (TIMEFRAMES_BY_NAME[n] for n in ("M15", "H1", "H4", "D1"))
WEDNESDAY = datetime(2024, 3, 13, tzinfo=UTC)
DAY = timedelta(days=1)


def fetch(client, store, api_symbol, timeframe, start, end):
    """Ingest [start, end) with `client`; the report, its error raised, with the stored bars as `bars`."""
    report = ingest(client, store, Symbol(api_symbol), timeframe, start, end)
    if report.error is not None:
        raise report.error
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                'SELECT "timestamp", open, high, low, close, volume FROM candles '
                'WHERE timeframe = :tf AND "timestamp" >= :start AND "timestamp" < :end ORDER BY "timestamp"'
            ),
            {"tf": timeframe.name, "start": start, "end": end},
        )
        report.bars = [Bar(*row) for row in rows]  # type: ignore[attr-defined]
    return report


def client_for(stand_in, **kwargs) -> TwelveDataClient:
    kwargs.setdefault("retry", RetryPolicy(first_pause=timedelta(seconds=0.01)))
    kwargs.setdefault("timeout_seconds", 5)
    return TwelveDataClient(kwargs.pop("api_key", TEST_API_KEY), stand_in.url, **kwargs)


def as_served(bars):
    return [(b.open_time, b.open, b.high, b.low, b.close) for b in bars]


def expected(stand_in, interval, start, end):
    return [
        (b["datetime"], b["open"], b["high"], b["low"], b["close"])
        for b in stand_in.bars("XAU/USD", interval, start, end)
    ]


@pytest.mark.parametrize("timeframe", [M15, H1, H4, D1], ids=lambda tf: tf.name)
def test_window_is_fetched_exactly(stand_in, store, timeframe):
    start, end = WEDNESDAY - 10 * DAY, WEDNESDAY
    result = fetch(client_for(stand_in), store, "XAU/USD", timeframe, start, end)
    assert as_served(result.bars) == expected(stand_in, timeframe.interval, start, end)
    assert result.bars and all(b.open_time.tzinfo == UTC and b.volume is None for b in result.bars)
    assert all(isinstance(b.close, Decimal) for b in result.bars)
    assert result.calls == result.credits == 1


def test_requests_send_utc_and_the_key_only_in_a_header(stand_in, store):
    fetch(client_for(stand_in), store, "XAU/USD", H1, WEDNESDAY - DAY, WEDNESDAY)
    (request,) = stand_in.requests
    assert request.params["timezone"] == "UTC"
    assert request.params["start_date"] == "2024-03-12 00:00:00"
    assert request.params["end_date"] == "2024-03-12 23:59:59"
    assert "apikey" not in request.params


@pytest.mark.parametrize("end_inclusive", [True, False])
def test_inclusive_or_exclusive_end_gives_the_same_bars(stand_in, store, end_inclusive):
    stand_in.configure(end_inclusive=end_inclusive)
    start, end = WEDNESDAY, WEDNESDAY + timedelta(hours=6)
    result = fetch(client_for(stand_in), store, "XAU/USD", H1, start, end)
    assert [b.open_time for b in result.bars] == [start + timedelta(hours=h) for h in range(6)]


@pytest.mark.parametrize(("timeframe", "days", "calls"), [(M15, 90, 2), (D1, 366, 1)], ids=["M15-90d", "D1-year"])
def test_long_windows_cost_the_fewest_calls(stand_in, store, timeframe, days, calls):
    """5000 bars a call: 90 days of M15 (about 6,000 bars) take 2 calls, a year of D1 one."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    result = fetch(client_for(stand_in), store, "XAU/USD", timeframe, start, start + days * DAY)
    assert stand_in.time_series_calls() == result.calls == calls
    assert as_served(result.bars) == expected(stand_in, timeframe.interval, start, start + days * DAY)
    assert max(r.values for r in stand_in.requests) <= 5000


def test_truncated_pages_are_followed_up(stand_in, store):
    """With 24/7 weekend bars a window sized for market hours overflows 5000: the rest is fetched, not lost."""
    stand_in.configure(weekend_bars=True)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + 60 * DAY
    result = fetch(client_for(stand_in), store, "XAU/USD", M15, start, end)
    assert as_served(result.bars) == expected(stand_in, "15min", start, end)
    assert result.calls == stand_in.time_series_calls() >= 2


def test_still_forming_bars_are_dropped(stand_in, store):
    """The stand-in runs two hours ahead: what it serves as closed is still forming by our clock."""
    now = WEDNESDAY + timedelta(hours=10, minutes=7)
    stand_in.configure(time_offset_seconds=(now - utc_now()).total_seconds() + 7200)
    result = fetch(client_for(stand_in, clock=lambda: now), store, "XAU/USD", M15, WEDNESDAY, WEDNESDAY + DAY)
    assert result.bars[-1].open_time == now.replace(minute=45, hour=9)
    # ingest asks only for bars that can have closed by our clock: nothing still forming is served.
    assert stand_in.requests[-1].params["end_date"] == "2024-03-13 09:51:30"
    assert stand_in.requests[-1].values == len(result.bars) + result.forming_dropped


def test_a_bar_served_just_before_its_close_is_not_taken_as_final(stand_in, store):
    """Our clock reads 10:15:10 but the provider's 10:14:58: its 10:00 bar is still forming."""
    now = WEDNESDAY + timedelta(hours=10, minutes=15, seconds=10)
    stand_in.configure(time_offset_seconds=(now - utc_now()).total_seconds() - 12)
    result = fetch(client_for(stand_in, clock=lambda: now), store, "XAU/USD", M15, WEDNESDAY, now)
    assert result.bars[-1].open_time == WEDNESDAY + timedelta(hours=9, minutes=45)
    assert result.forming_dropped == 0  # ingest did not even ask for it
    (window,) = result.windows
    assert closed_until(window, M15.bar) <= WEDNESDAY + timedelta(hours=10)  # so the 10:00 bar stays missing


def test_no_data_is_an_empty_result(stand_in, store):
    """The provider has nothing for a day the market traded: an empty result, recorded as fetched."""
    stand_in.configure(holes=[(WEDNESDAY, WEDNESDAY + DAY)])
    result = fetch(client_for(stand_in), store, "XAU/USD", M15, WEDNESDAY, WEDNESDAY + DAY)
    assert result.bars == [] and result.calls == 1
    assert stand_in.requests[-1].code == 400
    assert len(result.windows) == 1


def test_a_closed_market_costs_no_call(stand_in, store):
    saturday, good_friday = datetime(2024, 3, 16, tzinfo=UTC), datetime(2024, 3, 29, tzinfo=UTC)
    for day in (saturday, good_friday):
        result = fetch(client_for(stand_in), store, "XAU/USD", M15, day, day + DAY)
        assert (result.calls, result.bars, stand_in.time_series_calls()) == (0, [], 0)


@pytest.mark.parametrize("error_status", ["http", "body200"])
def test_wrong_key_fails_after_one_request(stand_in, store, error_status):
    stand_in.configure(error_status=error_status)
    with pytest.raises(AuthenticationError, match="TWELVE_DATA_API_KEY") as info:
        fetch(client_for(stand_in, api_key="wrong-key-123"), store, "XAU/USD", H1, WEDNESDAY, WEDNESDAY + DAY)
    assert stand_in.time_series_calls() == 1
    assert "wrong-key-123" not in str(info.value)


def test_missing_key_fails_before_any_request(stand_in):
    with pytest.raises(AuthenticationError, match="TWELVE_DATA_API_KEY"):
        client_for(stand_in, api_key="")
    assert stand_in.time_series_calls() == 0


@pytest.mark.parametrize(
    ("code", "message", "error"),
    [
        (403, "The 'demo' API key is only used for initial familiarity with the API.", PlanNotAllowedError),
        (400, "Invalid **interval** provided: 15min.", InvalidRequestError),
        (404, "**symbol** not found: XAU/USD", UnknownSymbolError),
    ],
)
@pytest.mark.parametrize("error_status", ["http", "body200"])
def test_client_errors_fail_at_once(stand_in, store, code, message, error, error_status):
    stand_in.configure(error_status=error_status)
    stand_in.push_fault(Fault("error", code=code, message=message))
    with pytest.raises(error):
        fetch(client_for(stand_in), store, "XAU/USD", H1, WEDNESDAY, WEDNESDAY + DAY)
    assert stand_in.time_series_calls() == 1


def test_unknown_symbol_is_named(stand_in, store):
    with pytest.raises(UnknownSymbolError, match="XAU/EUR"):
        fetch(client_for(stand_in), store, "XAU/EUR", H1, WEDNESDAY, WEDNESDAY + DAY)
    assert stand_in.time_series_calls() == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault("html_502"),
        Fault("html_520"),
        Fault("reset"),
        Fault("error", status=500, code=500, message="Internal error"),
    ],
    ids=lambda f: f.kind + (str(f.status) if f.status else ""),
)
def test_transient_failures_are_retried(stand_in, store, fault):
    stand_in.push_fault(fault)
    stand_in.push_fault(fault)
    result = fetch(client_for(stand_in), store, "XAU/USD", H1, WEDNESDAY, WEDNESDAY + DAY)
    assert as_served(result.bars) == expected(stand_in, "1h", WEDNESDAY, WEDNESDAY + DAY)
    assert stand_in.time_series_calls() == 3


def test_an_unreadable_answer_is_asked_for_once_more(stand_in, store):
    stand_in.push_fault(Fault("bad_json"))
    result = fetch(client_for(stand_in), store, "XAU/USD", H1, WEDNESDAY, WEDNESDAY + DAY)
    assert as_served(result.bars) == expected(stand_in, "1h", WEDNESDAY, WEDNESDAY + DAY)
    assert stand_in.time_series_calls() == result.calls == result.credits == 2


def test_an_answer_unreadable_twice_is_not_retried_further(stand_in, store):
    for _ in range(3):
        stand_in.push_fault(Fault("bad_json"))
    with pytest.raises(MalformedAnswerError, match="not JSON.*2 attempts"):
        fetch(client_for(stand_in), store, "XAU/USD", H1, WEDNESDAY, WEDNESDAY + DAY)
    assert stand_in.time_series_calls() == 2


def test_timeouts_are_retried(stand_in, store):
    stand_in.push_fault(Fault("slow", seconds=1.5))
    result = fetch(client_for(stand_in, timeout_seconds=0.5), store, "XAU/USD", H1, WEDNESDAY, WEDNESDAY + DAY)
    assert as_served(result.bars) == expected(stand_in, "1h", WEDNESDAY, WEDNESDAY + DAY)
    assert result.calls == 2
    deadline = time.monotonic() + 5
    while stand_in.time_series_calls() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # let the abandoned slow answer finish before the next test resets the log


def test_retries_are_bounded(stand_in, store):
    for _ in range(10):
        stand_in.push_fault(Fault("html_502"))
    sleeps = []
    client = client_for(
        stand_in, sleep=sleeps.append, retry=RetryPolicy(max_attempts=4, first_pause=timedelta(seconds=1))
    )
    with pytest.raises(ServiceUnavailableError, match="after 4 attempts.*HTML"):
        fetch(client, store, "XAU/USD", H1, WEDNESDAY, WEDNESDAY + DAY)
    assert stand_in.time_series_calls() == 4
    assert sleeps == [1, 2, 4]


@pytest.mark.slow  # waits for a minute boundary, about 3 s
def test_minute_limit_is_waited_out(stand_in, store):
    """Both clocks are shifted to 2.5 s before a minute boundary, so the wait is short but real."""
    real = utc_now()
    shifted = real.replace(second=57, microsecond=500000) + timedelta(minutes=1)
    offset = (shifted - real).total_seconds()
    stand_in.configure(credits_per_minute=1, time_offset_seconds=offset, weekend_bars=False)
    client = client_for(stand_in, clock=lambda: utc_now() + timedelta(seconds=offset))
    began = time.monotonic()
    first = fetch(client, store, "XAU/USD", H1, WEDNESDAY, WEDNESDAY + DAY)
    second = fetch(client, store, "XAU/USD", H1, WEDNESDAY + DAY, WEDNESDAY + 2 * DAY)
    assert as_served(second.bars) == expected(stand_in, "1h", WEDNESDAY + DAY, WEDNESDAY + 2 * DAY)
    assert len(first.bars) == 23  # the daily break, 21:00-22:00 UTC in US summer time
    assert [r.code for r in stand_in.requests] == [200, 429, 200], stand_in.requests
    assert 1.5 < time.monotonic() - began < 15


@pytest.mark.parametrize("error_status", ["http", "body200"])
def test_daily_limit_stops_with_the_reset_time(stand_in, store, error_status):
    stand_in.configure(credits_per_day=1, error_status=error_status)
    client = client_for(stand_in)
    fetch(client, store, "XAU/USD", H1, WEDNESDAY, WEDNESDAY + DAY)
    with pytest.raises(DailyLimitError, match="resets at .* 00:00 UTC") as info:
        fetch(client, store, "XAU/USD", H1, WEDNESDAY + DAY, WEDNESDAY + 2 * DAY)
    assert info.value.resets_at > utc_now()
    assert stand_in.time_series_calls() == 2


def test_the_key_appears_in_no_log_or_error(stand_in, store, caplog):
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("test.client")
    for fault in (Fault("html_502"), Fault("bad_json"), Fault("reset"), Fault("error", code=400, message="bad")):
        stand_in.push_fault(fault)
    texts = []
    for _ in range(2):
        try:
            fetch(
                client_for(stand_in, log=log, retry=RetryPolicy(max_attempts=3, first_pause=timedelta(seconds=0.01))),
                store,
                "XAU/USD",
                H1,
                WEDNESDAY,
                WEDNESDAY + DAY,
            )
        except Exception as exc:
            texts.append(repr(exc) + str(exc))
    try:
        fetch(
            client_for(stand_in, api_key=TEST_API_KEY + "x", log=log), store, "XAU/USD", H1, WEDNESDAY, WEDNESDAY + DAY
        )
    except Exception as exc:
        texts.append(repr(exc) + str(exc))
    texts.append(caplog.text)
    texts.append(repr(client_for(stand_in)))
    assert len(texts) >= 3 and "time_series" in caplog.text
    assert all(TEST_API_KEY not in text for text in texts)
