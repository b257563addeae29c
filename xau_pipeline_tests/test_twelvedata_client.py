"""The client against the local stand-in over a real socket: windows, parsing, every error row."""

import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from xau_pipeline.store.coverage import closed_until
from xau_pipeline.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.trading_calendar import calendar
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline.twelvedata.errors import (
    AuthenticationError,
    DailyLimitError,
    InvalidRequestError,
    PlanNotAllowedError,
    ServiceUnavailableError,
    UnknownSymbolError,
)
from xau_pipeline.utc import utc_now
from xau_pipeline_dev.twelvedata_standin import Fault
from xau_pipeline_tests.conftest import TEST_API_KEY

UTC = UTC
M15, H1, H4, D1 = (TIMEFRAMES_BY_NAME[n] for n in ("M15", "H1", "H4", "D1"))
WEDNESDAY = datetime(2024, 3, 13, tzinfo=UTC)
DAY = timedelta(days=1)
CME = calendar("cme_gold")


def client_for(stand_in, **kwargs) -> TwelveDataClient:
    kwargs.setdefault("backoff_seconds", 0.01)
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
def test_window_is_fetched_exactly(stand_in, timeframe):
    start, end = WEDNESDAY - 10 * DAY, WEDNESDAY
    result = client_for(stand_in).fetch("XAU/USD", timeframe, [(start, end)], CME).raise_for_error()
    assert as_served(result.bars) == expected(stand_in, timeframe.interval, start, end)
    assert result.bars and all(b.open_time.tzinfo == UTC and b.volume is None for b in result.bars)
    assert all(isinstance(b.close, Decimal) for b in result.bars)
    assert result.calls == result.credits == 1


def test_requests_send_utc_and_the_key_only_in_a_header(stand_in):
    client_for(stand_in).fetch("XAU/USD", H1, [(WEDNESDAY - DAY, WEDNESDAY)], CME).raise_for_error()
    (request,) = stand_in.requests
    assert request.params["timezone"] == "UTC"
    assert request.params["start_date"] == "2024-03-12 00:00:00"
    assert request.params["end_date"] == "2024-03-12 23:59:59"
    assert "apikey" not in request.params


@pytest.mark.parametrize("end_inclusive", [True, False])
def test_inclusive_or_exclusive_end_gives_the_same_bars(stand_in, end_inclusive):
    stand_in.configure(end_inclusive=end_inclusive)
    start, end = WEDNESDAY, WEDNESDAY + timedelta(hours=6)
    result = client_for(stand_in).fetch("XAU/USD", H1, [(start, end)], CME).raise_for_error()
    assert [b.open_time for b in result.bars] == [start + timedelta(hours=h) for h in range(6)]


@pytest.mark.parametrize(("timeframe", "days", "calls"), [(M15, 90, 2), (D1, 366, 1)], ids=["M15-90d", "D1-year"])
def test_long_windows_cost_the_fewest_calls(stand_in, timeframe, days, calls):
    """5000 bars a call: 90 days of M15 (about 6,000 bars) take 2 calls, a year of D1 one."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    result = client_for(stand_in).fetch("XAU/USD", timeframe, [(start, start + days * DAY)], CME).raise_for_error()
    assert stand_in.time_series_calls() == result.calls == calls
    assert as_served(result.bars) == expected(stand_in, timeframe.interval, start, start + days * DAY)
    assert max(r.values for r in stand_in.requests) <= 5000


def test_truncated_pages_are_followed_up(stand_in):
    """With 24/7 weekend bars a window sized for market hours overflows 5000: the rest is fetched, not lost."""
    stand_in.configure(weekend_bars=True)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + 60 * DAY
    result = client_for(stand_in).fetch("XAU/USD", M15, [(start, end)], CME).raise_for_error()
    assert as_served(result.bars) == expected(stand_in, "15min", start, end)
    assert result.calls == stand_in.time_series_calls() >= 2


def test_still_forming_bars_are_dropped(stand_in):
    """The stand-in runs two hours ahead: what it serves as closed is still forming by our clock."""
    now = WEDNESDAY + timedelta(hours=10, minutes=7)
    stand_in.configure(time_offset_seconds=(now - utc_now()).total_seconds() + 7200)
    result = (
        client_for(stand_in, clock=lambda: now)
        .fetch("XAU/USD", M15, [(WEDNESDAY, WEDNESDAY + DAY)], CME)
        .raise_for_error()
    )
    assert result.bars[-1].open_time == now.replace(minute=45, hour=9)
    assert result.forming_dropped > 0
    assert stand_in.requests[-1].values == len(result.bars) + result.forming_dropped


def test_a_bar_served_just_before_its_close_is_not_taken_as_final(stand_in):
    """Our clock reads 10:15:10 but the provider's 10:14:58: its 10:00 bar is still forming."""
    now = WEDNESDAY + timedelta(hours=10, minutes=15, seconds=10)
    stand_in.configure(time_offset_seconds=(now - utc_now()).total_seconds() - 12)
    result = client_for(stand_in, clock=lambda: now).fetch("XAU/USD", M15, [(WEDNESDAY, now)], CME).raise_for_error()
    assert result.bars[-1].open_time == WEDNESDAY + timedelta(hours=9, minutes=45)
    assert result.forming_dropped == 1
    (window,) = result.windows
    assert closed_until(window, M15.bar) <= WEDNESDAY + timedelta(hours=10)  # so the 10:00 bar stays missing


def test_no_data_is_an_empty_result(stand_in):
    """The provider has nothing for a day the market traded: an empty result, recorded as fetched."""
    stand_in.configure(holes=[(WEDNESDAY, WEDNESDAY + DAY)])
    result = client_for(stand_in).fetch("XAU/USD", M15, [(WEDNESDAY, WEDNESDAY + DAY)], CME).raise_for_error()
    assert result.bars == [] and result.calls == 1
    assert stand_in.requests[-1].code == 400
    assert len(result.windows) == 1


def test_a_closed_market_costs_no_call(stand_in):
    saturday, good_friday = datetime(2024, 3, 16, tzinfo=UTC), datetime(2024, 3, 29, tzinfo=UTC)
    result = client_for(stand_in).fetch(
        "XAU/USD", M15, [(saturday, saturday + DAY), (good_friday, good_friday + DAY)], CME
    )
    assert (result.raise_for_error().calls, result.bars, stand_in.time_series_calls()) == (0, [], 0)


@pytest.mark.parametrize("error_status", ["http", "body200"])
def test_wrong_key_fails_after_one_request(stand_in, error_status):
    stand_in.configure(error_status=error_status)
    with pytest.raises(AuthenticationError, match="TWELVE_DATA_API_KEY") as info:
        client_for(stand_in, api_key="wrong-key-123").fetch(
            "XAU/USD", H1, [(WEDNESDAY, WEDNESDAY + DAY)], CME
        ).raise_for_error()
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
def test_client_errors_fail_at_once(stand_in, code, message, error, error_status):
    stand_in.configure(error_status=error_status)
    stand_in.push_fault(Fault("error", code=code, message=message))
    with pytest.raises(error):
        client_for(stand_in).fetch("XAU/USD", H1, [(WEDNESDAY, WEDNESDAY + DAY)], CME).raise_for_error()
    assert stand_in.time_series_calls() == 1


def test_unknown_symbol_is_named(stand_in):
    with pytest.raises(UnknownSymbolError, match="XAU/EUR"):
        client_for(stand_in).fetch("XAU/EUR", H1, [(WEDNESDAY, WEDNESDAY + DAY)], CME).raise_for_error()
    assert stand_in.time_series_calls() == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault("html_502"),
        Fault("html_520"),
        Fault("bad_json"),
        Fault("reset"),
        Fault("error", status=500, code=500, message="Internal error"),
    ],
    ids=lambda f: f.kind + (str(f.status) if f.status else ""),
)
def test_transient_failures_are_retried(stand_in, fault):
    stand_in.push_fault(fault)
    stand_in.push_fault(fault)
    result = client_for(stand_in).fetch("XAU/USD", H1, [(WEDNESDAY, WEDNESDAY + DAY)], CME).raise_for_error()
    assert as_served(result.bars) == expected(stand_in, "1h", WEDNESDAY, WEDNESDAY + DAY)
    assert stand_in.time_series_calls() == 3


def test_timeouts_are_retried(stand_in):
    stand_in.push_fault(Fault("slow", seconds=1.5))
    result = (
        client_for(stand_in, timeout_seconds=0.5)
        .fetch("XAU/USD", H1, [(WEDNESDAY, WEDNESDAY + DAY)], CME)
        .raise_for_error()
    )
    assert as_served(result.bars) == expected(stand_in, "1h", WEDNESDAY, WEDNESDAY + DAY)
    assert result.calls == 2
    deadline = time.monotonic() + 5
    while stand_in.time_series_calls() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # let the abandoned slow answer finish before the next test resets the log


def test_retries_are_bounded(stand_in):
    for _ in range(10):
        stand_in.push_fault(Fault("html_502"))
    sleeps = []
    client = client_for(stand_in, max_attempts=4, backoff_seconds=1, sleep=sleeps.append)
    with pytest.raises(ServiceUnavailableError, match="after 4 attempts.*HTML"):
        client.fetch("XAU/USD", H1, [(WEDNESDAY, WEDNESDAY + DAY)], CME).raise_for_error()
    assert stand_in.time_series_calls() == 4
    assert sleeps == [1, 2, 4]


@pytest.mark.slow  # waits for a minute boundary, about 3 s
def test_minute_limit_is_waited_out(stand_in):
    """Both clocks are shifted to 2.5 s before a minute boundary, so the wait is short but real."""
    real = utc_now()
    shifted = real.replace(second=57, microsecond=500000) + timedelta(minutes=1)
    offset = (shifted - real).total_seconds()
    stand_in.configure(credits_per_minute=1, time_offset_seconds=offset)
    client = client_for(stand_in, clock=lambda: utc_now() + timedelta(seconds=offset))
    began = time.monotonic()
    first = client.fetch("XAU/USD", H1, [(WEDNESDAY, WEDNESDAY + DAY)], CME).raise_for_error()
    second = client.fetch("XAU/USD", H1, [(WEDNESDAY + DAY, WEDNESDAY + 2 * DAY)], CME).raise_for_error()
    assert as_served(second.bars) == expected(stand_in, "1h", WEDNESDAY + DAY, WEDNESDAY + 2 * DAY)
    assert len(first.bars) == 23  # the daily break, 21:00-22:00 UTC in US summer time
    assert [r.code for r in stand_in.requests] == [200, 429, 200], stand_in.requests
    assert 1.5 < time.monotonic() - began < 15


@pytest.mark.parametrize("error_status", ["http", "body200"])
def test_daily_limit_stops_with_the_reset_time(stand_in, error_status):
    stand_in.configure(credits_per_day=1, error_status=error_status)
    client = client_for(stand_in)
    client.fetch("XAU/USD", H1, [(WEDNESDAY, WEDNESDAY + DAY)], CME).raise_for_error()
    with pytest.raises(DailyLimitError, match="resets at .* 00:00 UTC") as info:
        client.fetch("XAU/USD", H1, [(WEDNESDAY + DAY, WEDNESDAY + 2 * DAY)], CME).raise_for_error()
    assert info.value.resets_at > utc_now()
    assert stand_in.time_series_calls() == 2


def test_the_key_appears_in_no_log_or_error(stand_in, caplog):
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("test.client")
    for fault in (Fault("html_502"), Fault("bad_json"), Fault("reset"), Fault("error", code=400, message="bad")):
        stand_in.push_fault(fault)
    texts = []
    for _ in range(2):
        try:
            client_for(stand_in, log=log, max_attempts=3).fetch(
                "XAU/USD", H1, [(WEDNESDAY, WEDNESDAY + DAY)], CME
            ).raise_for_error()
        except Exception as exc:
            texts.append(repr(exc) + str(exc))
    try:
        client_for(stand_in, api_key=TEST_API_KEY + "x", log=log).fetch(
            "XAU/USD", H1, [(WEDNESDAY, WEDNESDAY + DAY)], CME
        ).raise_for_error()
    except Exception as exc:
        texts.append(repr(exc) + str(exc))
    texts.append(caplog.text)
    texts.append(repr(client_for(stand_in)))
    assert len(texts) >= 3 and "time_series" in caplog.text
    assert all(TEST_API_KEY not in text for text in texts)
