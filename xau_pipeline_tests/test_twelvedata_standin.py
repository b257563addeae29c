"""Tests of the Twelve Data stand-in, over a real socket."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from xau_pipeline_dev import launch
from xau_pipeline_dev.twelvedata_standin import Fault, RequestRecord, StandIn, StandInConfig
from xau_pipeline_dev.twelvedata_standin.__main__ import config_from
from xau_pipeline_dev.twelvedata_standin.prices import mid
from xau_pipeline_dev.twelvedata_standin.server import config_from_json, config_to_json
from xau_pipeline_dev.twelvedata_standin.sessions import in_session

UTC = UTC
KEY = "test-key"
WED = datetime(2025, 6, 11, 14, 37, 5, tzinfo=UTC)  # a Wednesday in session, 5 s into a minute
APIKEY_MSG = (
    "**apikey** parameter is incorrect or not specified. You can get your free API key instantly following this "
    "link: https://twelvedata.com/pricing. If you believe that everything is correct, you can contact us at "
    "https://twelvedata.com/contact/customer"
)
NO_DATA_MSG = "No data is available on the specified dates. Try setting different start/end dates."


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    with StandIn(StandInConfig(api_key=KEY)) as stand_in:
        yield stand_in


@pytest.fixture
def stand_in(server: StandIn) -> StandIn:
    server.restore_defaults()
    return server


def set_clock(stand_in: StandIn, when: datetime) -> None:
    stand_in.configure(time_offset_seconds=(when - datetime.now(UTC)).total_seconds())


def get(stand_in: StandIn, path: str = "/time_series", key: str | None = KEY, timeout: float = 5, **params):
    headers = {"Authorization": f"apikey {key}"} if key is not None else {}
    return requests.get(stand_in.url + path, params=params, headers=headers, timeout=timeout)


def ts(stand_in: StandIn, **params):
    """GET /time_series for XAU/USD in UTC unless overridden (a None value drops the parameter)."""
    merged = {"symbol": "XAU/USD", "timezone": "UTC", **params}
    return get(stand_in, **{k: v for k, v in merged.items() if v is not None})


def values(stand_in: StandIn, **params) -> list[dict[str, str]]:
    response = ts(stand_in, **params)
    assert response.status_code == 200, response.text
    return response.json()["values"]


def as_decimals(row: dict[str, str]) -> tuple[Decimal, ...]:
    return tuple(Decimal(row[k]) for k in ("open", "high", "low", "close"))


def aggregate(rows: list[dict[str, str]]) -> tuple[Decimal, ...]:
    rows = sorted(rows, key=lambda r: r["datetime"])
    bars = [as_decimals(r) for r in rows]
    return bars[0][0], max(b[1] for b in bars), min(b[2] for b in bars), bars[-1][3]


# -- authentication -----------------------------------------------------------------------------


def test_auth_by_header_and_by_query(stand_in: StandIn) -> None:
    by_header = ts(stand_in, interval="1h", start_date="2025-06-10", end_date="2025-06-11")
    by_query = get(
        stand_in,
        key=None,
        apikey=KEY,
        symbol="XAU/USD",
        interval="1h",
        timezone="UTC",
        start_date="2025-06-10",
        end_date="2025-06-11",
    )
    assert by_header.status_code == by_query.status_code == 200
    assert by_header.json() == by_query.json()
    records = stand_in.requests
    assert [r.code for r in records] == [200, 200]
    assert records[1].params["apikey"] == "***"
    assert all(isinstance(r, RequestRecord) and r.credits == 1 for r in records)


@pytest.mark.parametrize("key", ["wrong-key", None])
def test_wrong_or_missing_key_is_401_without_echo(stand_in: StandIn, key: str | None) -> None:
    response = get(stand_in, key=key, symbol="XAU/USD", interval="1h", timezone="UTC")
    assert response.status_code == 401
    assert response.json() == {"code": 401, "message": APIKEY_MSG, "status": "error"}
    assert "wrong-key" not in response.text
    record = stand_in.requests[-1]
    assert (record.status, record.code, record.credits, record.values) == (401, 401, 0, 0)
    assert "wrong-key" not in json.dumps(record.params)


# -- credits ------------------------------------------------------------------------------------


def test_minute_limit(stand_in: StandIn) -> None:
    stand_in.configure(credits_per_minute=3, credits_per_day=None)
    set_clock(stand_in, WED)
    codes = [ts(stand_in, interval="1h", outputsize=2).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    last = ts(stand_in, interval="1h", outputsize=2)
    # Refusals alternate between the two captured wordings: "being 3" (the 4th call), then "of 3".
    assert last.json() == {
        "code": 429,
        "message": "You have run out of API credits for the current minute. 5 API credits were used, with the "
        "current limit of 3. Wait for the next minute or consider switching to a higher tier plan at "
        "https://twelvedata.com/pricing",
        "status": "error",
    }
    assert "with the current limit being 3." in stand_in_message(ts(stand_in, interval="1h", outputsize=2))
    assert [r.credits for r in stand_in.requests] == [1] * 6
    set_clock(stand_in, WED + timedelta(minutes=1))
    assert ts(stand_in, interval="1h", outputsize=2).status_code == 200


def test_day_limit_checked_before_minute_limit(stand_in: StandIn) -> None:
    stand_in.configure(credits_per_minute=2, credits_per_day=2)
    set_clock(stand_in, WED)
    assert [ts(stand_in, interval="1h", outputsize=1).status_code for _ in range(2)] == [200, 200]
    refused = ts(stand_in, interval="1h", outputsize=1)
    assert refused.status_code == 429
    assert refused.json()["message"] == (
        "You have run out of API credits for the day. 3 API credits were used, with the current limit being 2. "
        "Wait for the next day or consider switching to a higher tier plan at https://twelvedata.com/pricing"
    )
    set_clock(stand_in, WED + timedelta(days=1))
    assert ts(stand_in, interval="1h", outputsize=1).status_code == 200


def test_body200_mode_sends_errors_with_http_200(stand_in: StandIn) -> None:
    stand_in.configure(error_status="body200", credits_per_minute=1)
    set_clock(stand_in, WED)
    unauthorized = get(stand_in, key="bad", symbol="XAU/USD", interval="1h")
    assert unauthorized.status_code == 200
    assert unauthorized.json() == {"code": 401, "message": APIKEY_MSG, "status": "error"}
    assert ts(stand_in, interval="1h").status_code == 200
    limited = ts(stand_in, interval="1h")
    assert limited.status_code == 200 and limited.json()["code"] == 429
    assert stand_in.requests[-1].status == 200 and stand_in.requests[-1].code == 429


def test_credit_headers(stand_in: StandIn) -> None:
    set_clock(stand_in, WED)
    ts(stand_in, interval="1h")
    second = ts(stand_in, interval="1h")
    assert second.headers["api-credits-used"] == "2"
    assert second.headers["api-credits-left"] == "6"
    stand_in.configure(credit_headers=False)
    assert "api-credits-used" not in ts(stand_in, interval="1h").headers


def test_api_usage_and_unknown_path(stand_in: StandIn) -> None:
    set_clock(stand_in, WED)
    ts(stand_in, interval="1h")
    usage = get(stand_in, "/api_usage")
    assert usage.status_code == 200
    body = usage.json()
    assert (body["current_usage"], body["plan_limit"]) == (2, 8)
    assert body["timestamp"].startswith("2025-06-11 14:37:")
    missing = get(stand_in, "/quote")
    assert missing.status_code == 404 and missing.json()["status"] == "error"
    assert [r.path for r in stand_in.requests] == ["/time_series", "/api_usage", "/quote"]
    assert stand_in.time_series_calls() == 1


# -- parameters and errors ----------------------------------------------------------------------


def test_parameter_errors(stand_in: StandIn) -> None:
    stand_in.configure(credits_per_minute=None)
    unknown = ts(stand_in, symbol="FOO/BAR", interval="1h")
    assert unknown.status_code == 404
    assert unknown.json()["message"].startswith("**symbol** or **figi** parameter is missing or invalid.")
    assert ts(stand_in, symbol=None, interval="1h").json()["code"] == 404
    bad_interval = ts(stand_in, interval="2min")
    assert bad_interval.status_code == 400
    assert bad_interval.json()["message"] == (
        "Invalid **interval** provided: 2min. Supported intervals: 1min, 5min, 15min, 30min, 45min, 1h, 2h, 4h, "
        "8h, 1day, 1week, 1month"
    )
    assert ts(stand_in, interval="1week").status_code == 400
    assert ts(stand_in, interval="1h", outputsize=5001).status_code == 400
    assert ts(stand_in, interval="1h", outputsize=0).status_code == 400
    assert ts(stand_in, interval="1h", start_date="10/06/2025").status_code == 400
    assert ts(stand_in, interval="1h", timezone="Mars/Olympus").status_code == 400
    assert [(r.credits, r.values) for r in stand_in.requests] == [(1, 0)] * 8


def stand_in_message(response) -> str:
    return response.json()["message"]


def test_no_data_in_range(stand_in: StandIn) -> None:
    stand_in.configure(weekend_bars=False)  # CME hours: nothing on a Saturday
    response = ts(stand_in, interval="1h", start_date="2025-06-14", end_date="2025-06-15")
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": NO_DATA_MSG, "status": "error"}


# -- data ---------------------------------------------------------------------------------------


def test_success_body_format(stand_in: StandIn) -> None:
    body = ts(stand_in, interval="1h", start_date="2025-06-10", end_date="2025-06-11").json()
    assert body["status"] == "ok"
    assert body["meta"] == {
        "symbol": "XAU/USD",
        "interval": "1h",
        "currency_base": "Gold Spot",
        "currency_quote": "US Dollar",
        "type": "Precious Metal",
    }
    for row in body["values"]:
        assert list(row) == ["datetime", "open", "high", "low", "close"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["datetime"])
        for key in ("open", "high", "low", "close"):
            assert re.fullmatch(r"\d+(\.\d{0,4}[1-9])?", row[key]), row[key]
        o, h, low, c = as_decimals(row)
        assert low <= min(o, c) <= max(o, c) <= h
    daily = ts(stand_in, interval="1day", start_date="2025-06-09", end_date="2025-06-12").json()["values"]
    assert [r["datetime"] for r in daily] == ["2025-06-11", "2025-06-10", "2025-06-09"]


def test_default_outputsize_is_30_without_dates(stand_in: StandIn) -> None:
    set_clock(stand_in, WED)
    rows = values(stand_in, interval="15min")
    assert len(rows) == 30
    assert rows[0]["datetime"] == "2025-06-11 14:30:00"


def test_truncation_keeps_newest_5000(stand_in: StandIn) -> None:
    window = {"interval": "15min", "start_date": "2025-03-01", "end_date": "2025-06-01"}
    desc = values(stand_in, **window)
    asc = values(stand_in, order="asc", **window)
    everything = stand_in.bars("XAU/USD", "15min", utc(2025, 3, 1), utc(2025, 6, 1))
    assert len(everything) > 5000
    newest = [b["datetime"].strftime("%Y-%m-%d %H:%M:%S") for b in everything[-5000:]]
    assert len(desc) == len(asc) == 5000
    assert [r["datetime"] for r in asc] == newest
    assert [r["datetime"] for r in desc] == newest[::-1]
    assert [r["datetime"] for r in values(stand_in, outputsize=3, **window)] == newest[::-1][:3]


def test_date_only_end_is_exclusive(stand_in: StandIn) -> None:
    rows = values(stand_in, interval="1h", start_date="2025-06-10", end_date="2025-06-11")
    assert rows[0]["datetime"] == "2025-06-10 23:00:00"
    assert rows[-1]["datetime"] == "2025-06-10 00:00:00"


def test_datetime_end_inclusive_per_config(stand_in: StandIn) -> None:
    window = {"interval": "1h", "start_date": "2025-06-10 20:00:00", "end_date": "2025-06-11 00:00:00"}
    assert values(stand_in, **window)[0]["datetime"] == "2025-06-11 00:00:00"
    stand_in.configure(end_inclusive=False)
    assert values(stand_in, **window)[0]["datetime"] == "2025-06-10 23:00:00"


def test_timezone_utc_versus_default_new_york(stand_in: StandIn) -> None:
    window = {"interval": "1h", "start_date": "2025-06-10 14:00:00", "end_date": "2025-06-10 14:00:00"}
    in_utc = values(stand_in, **window)
    in_ny = values(stand_in, **{**window, "timezone": None})
    assert in_ny == values(stand_in, **{**window, "timezone": "Exchange"})
    assert in_utc[0]["datetime"] == in_ny[0]["datetime"] == "2025-06-10 14:00:00"
    bar_18utc = values(stand_in, interval="1h", start_date="2025-06-10 18:00:00", end_date="2025-06-10 18:00:00")
    assert as_decimals(in_ny[0]) == as_decimals(bar_18utc[0]) != as_decimals(in_utc[0])
    in_london = values(stand_in, **{**window, "timezone": "Europe/London"})
    assert as_decimals(in_london[0]) == as_decimals(
        values(stand_in, **{**window, "start_date": "2025-06-10 13:00:00", "end_date": "2025-06-10 13:00:00"})[0]
    )


def test_aggregates_equal_their_15min_bars(stand_in: StandIn) -> None:
    stand_in.configure(h4_phase_hours=1, credits_per_minute=None, weekend_bars=False)
    window = {"start_date": "2025-06-10", "end_date": "2025-06-11"}
    m15 = values(stand_in, interval="15min", **window)
    assert len(m15) == 92  # CME hours: 24 h minus the 21:00-22:00 UTC daily break (New York summer time)
    h1 = values(stand_in, interval="1h", **window)
    assert len(h1) == 23
    for bar in h1:
        parts = [r for r in m15 if r["datetime"][:13] == bar["datetime"][:13]]
        assert as_decimals(bar) == aggregate(parts)
    h4 = values(stand_in, interval="4h", **window)
    assert [r["datetime"][11:13] for r in h4] == ["21", "17", "13", "09", "05", "01"]
    h4_13 = [r for r in m15 if "13" <= r["datetime"][11:13] <= "16"]
    assert as_decimals(next(r for r in h4 if r["datetime"].endswith("13:00:00"))) == aggregate(h4_13)
    day = values(stand_in, interval="1day", start_date="2025-06-10", end_date="2025-06-11")
    assert [r["datetime"] for r in day] == ["2025-06-10"]
    assert as_decimals(day[0]) == aggregate(m15)


def test_deterministic_across_instances_and_windows(stand_in: StandIn) -> None:
    window = {"interval": "15min", "start_date": "2025-06-10 10:00:00", "end_date": "2025-06-10 12:00:00"}
    first = ts(stand_in, **window).json()
    with StandIn(StandInConfig(api_key="other")) as other:
        second = requests.get(
            other.url + "/time_series",
            params={"symbol": "XAU/USD", "timezone": "UTC", **window},
            headers={"Authorization": "apikey other"},
            timeout=5,
        ).json()
    assert first == second
    wider = values(stand_in, interval="15min", start_date="2025-06-09", end_date="2025-06-12")
    assert [r for r in wider if r["datetime"] in {v["datetime"] for v in first["values"]}] == first["values"]
    m15 = first["values"]
    for newer, older in itertools.pairwise(m15):
        assert newer["open"] == older["close"]


def test_still_forming_bar_is_served(stand_in: StandIn) -> None:
    set_clock(stand_in, WED)
    rows = values(stand_in, interval="1h", outputsize=3)
    newest = datetime.strptime(rows[0]["datetime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    now = stand_in.now()
    assert newest <= now < newest + timedelta(hours=1)
    m15 = values(stand_in, interval="15min", start_date="2025-06-11 14:00:00")
    assert [r["datetime"][11:] for r in m15] == ["14:30:00", "14:15:00", "14:00:00"]
    assert as_decimals(rows[0]) == aggregate(m15)
    assert stand_in.bars("XAU/USD", "1h", utc(2025, 6, 11), utc(2025, 6, 12))[-1]["datetime"] == utc(2025, 6, 11, 13)
    set_clock(stand_in, WED + timedelta(minutes=10))
    later = values(stand_in, interval="1h", outputsize=3)
    assert later[0]["datetime"] == rows[0]["datetime"] and later[0] != rows[0]
    assert later[1:] == rows[1:]


def test_a_24_7_feed_by_default_with_weekend_bars_that_move_a_little(stand_in: StandIn) -> None:
    """As the forex/metals feed v2: XAU/USD's Saturday 1h bars are there, nearly flat but not flat."""
    saturday = {"interval": "1h", "start_date": "2025-06-14 00:00:00", "end_date": "2025-06-14 05:00:00"}
    quiet = values(stand_in, **saturday)
    assert len(quiet) == 6
    days = values(stand_in, interval="1day", start_date="2025-06-14", end_date="2025-06-16")
    assert [d["datetime"] for d in days] == ["2025-06-15", "2025-06-14"]  # Saturday and Sunday daily bars
    stand_in.configure(weekend_bars=False)
    friday_last = values(stand_in, interval="15min", start_date="2025-06-13 20:00:00", end_date="2025-06-14 00:00:00")
    assert friday_last[0]["datetime"] == "2025-06-13 20:45:00"  # Friday 17:00 New York = 21:00 UTC in summer
    assert ts(stand_in, **saturday).status_code == 400  # CME hours: a closed market
    close = Decimal(friday_last[0]["close"])
    for row in quiet:
        o, h, lo, c = (Decimal(row[k]) for k in ("open", "high", "low", "close"))
        assert lo < h and lo <= min(o, c) and max(o, c) <= h
        assert h - lo < close * Decimal("0.0001") and abs(c - close) < close * Decimal("0.0001")
    assert len({row["close"] for row in quiet}) == len(quiet)


def test_holes_remove_bars(stand_in: StandIn) -> None:
    stand_in.configure(credits_per_minute=None)
    window = {"start_date": "2025-06-10 11:00:00", "end_date": "2025-06-10 14:00:00"}
    before = values(stand_in, interval="15min", **window)
    stand_in.configure(
        holes=[(utc(2025, 6, 10, 12), utc(2025, 6, 10, 13)), (utc(2025, 6, 10, 13, 15), utc(2025, 6, 10, 13, 45))]
    )
    m15 = values(stand_in, interval="15min", **window)
    assert {r["datetime"][11:16] for r in before} - {r["datetime"][11:16] for r in m15} == {
        "12:00",
        "12:15",
        "12:30",
        "12:45",
        "13:15",
        "13:30",
    }
    h1 = values(stand_in, interval="1h", **window)
    assert [r["datetime"][11:13] for r in h1] == ["14", "13", "11"]
    assert as_decimals(h1[1]) == aggregate([r for r in m15 if r["datetime"][11:13] == "13"])


def test_revisions_change_15min_and_1h(stand_in: StandIn) -> None:
    start, end = utc(2025, 6, 10, 12), utc(2025, 6, 10, 13)
    m15_before = stand_in.bars("XAU/USD", "15min", start, end)
    h1_before = stand_in.bars("XAU/USD", "1h", start, end)
    stand_in.configure(revisions={utc(2025, 6, 10, 12, 15): Decimal("25")})
    m15_after = stand_in.bars("XAU/USD", "15min", start, end)
    h1_after = stand_in.bars("XAU/USD", "1h", start, end)
    for key in ("open", "high", "low", "close"):
        assert m15_after[1][key] == m15_before[1][key] + 25
    assert m15_after[0] == m15_before[0] and m15_after[2:] == m15_before[2:]
    assert h1_after[0]["high"] == m15_after[1]["high"] != h1_before[0]["high"]
    served = values(stand_in, interval="1h", start_date="2025-06-10 12:00:00", end_date="2025-06-10 12:00:00")
    assert as_decimals(served[0]) == tuple(h1_after[0][k] for k in ("open", "high", "low", "close"))


def test_bars_matches_served(stand_in: StandIn) -> None:
    set_clock(stand_in, WED)
    stand_in.configure(credits_per_minute=None)
    for interval in ("15min", "1h", "4h", "1day"):
        served = values(stand_in, interval=interval, start_date="2025-06-02", order="asc")
        bars = stand_in.bars("XAU/USD", interval, utc(2025, 6, 2), utc(2025, 6, 12))
        closed = served[:-1]  # the newest bar is still forming
        assert len(bars) == len(closed) > 0
        for bar, row in zip(bars, closed):
            fmt = "%Y-%m-%d" if interval == "1day" else "%Y-%m-%d %H:%M:%S"
            assert bar["datetime"].strftime(fmt) == row["datetime"] and bar["datetime"].tzinfo is not None
            assert tuple(bar[k] for k in ("open", "high", "low", "close")) == as_decimals(row)


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 520])
def test_html_faults(stand_in: StandIn, status: int) -> None:
    stand_in.push_fault(Fault(f"html_{status}"))
    response = ts(stand_in, interval="1h")
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith(f"<html>\r\n<head><title>{status} ")
    assert ts(stand_in, interval="1h").status_code == 200
    assert [(r.status, r.credits) for r in stand_in.requests] == [(status, 0), (200, 1)]


def test_bad_json_fault(stand_in: StandIn) -> None:
    stand_in.push_fault(Fault("bad_json"))
    response = ts(stand_in, interval="1h")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        response.json()


def test_error_fault(stand_in: StandIn) -> None:
    stand_in.push_fault(Fault("error", code=500, message="Internal error"))
    stand_in.push_fault(Fault("error", status=200, code=503, message="Busy"))
    first, second = ts(stand_in, interval="1h"), ts(stand_in, interval="1h")
    assert first.status_code == 500
    assert first.json() == {"code": 500, "message": "Internal error", "status": "error"}
    assert second.status_code == 200 and second.json()["code"] == 503
    assert [(r.code, r.credits) for r in stand_in.requests] == [(500, 1), (503, 1)]


def test_slow_fault_and_delay(stand_in: StandIn) -> None:
    stand_in.push_fault(Fault("slow", seconds=0.6))
    with pytest.raises(requests.Timeout):
        ts(stand_in, interval="1h", timeout=0.2)
    assert ts(stand_in, interval="1h", timeout=2).status_code == 200
    stand_in.configure(delay_seconds=0.6)
    with pytest.raises(requests.Timeout):
        ts(stand_in, interval="1h", timeout=0.2)
    deadline = time.monotonic() + 5  # let the abandoned answers finish before the next test resets the log
    while len(stand_in.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(r.code, r.credits) for r in stand_in.requests] == [(200, 1), (200, 1), (200, 1)]


def test_reset_fault(stand_in: StandIn) -> None:
    stand_in.push_fault(Fault("reset"))
    with pytest.raises(requests.ConnectionError):
        ts(stand_in, interval="1h")
    assert ts(stand_in, interval="1h").status_code == 200
    assert stand_in.time_series_calls() == 2
    assert stand_in.requests[0].credits == 0


def test_faults_are_fifo_and_reset_clears_them(stand_in: StandIn) -> None:
    stand_in.push_fault(Fault("html_520"))
    stand_in.push_fault(Fault("html_502"))
    assert [ts(stand_in, interval="1h").status_code for _ in range(3)] == [520, 502, 200]
    stand_in.push_fault(Fault("html_502"))
    stand_in.reset()
    assert stand_in.requests == []
    assert ts(stand_in, interval="1h").status_code == 200
    with pytest.raises(ValueError):
        Fault("explode")


def test_restore_defaults_undoes_every_setting_and_clears_the_counters(stand_in: StandIn) -> None:
    identity = {"api_key": KEY, "host": stand_in.config.host, "port": stand_in.config.port}
    changed = {
        "symbols": {"XAU/USD": Decimal("1000")},
        "credits_per_minute": 1,
        "credits_per_day": 1,
        "error_status": "body200",
        "end_inclusive": False,
        "weekend_bars": False,
        "plan_gated": (),
        "day_boundary": "utc+10",
        "daily_stamp": "open",
        "holes": [(utc(2025, 6, 10, 12), utc(2025, 6, 10, 13))],
        "revisions": {utc(2025, 6, 10, 11): Decimal("10")},
        "time_offset_seconds": 3600.0,
        "delay_seconds": 0.01,
        "h4_phase_hours": 1,
        "bar_anchor": "new_york",
        "credit_headers": False,
        "max_outputsize": 10,
        "publication_delay_seconds": (0.0, 0.0),
        "publication_late_share": 0.5,
        "publication_late_seconds": (1.0, 2.0),
        "publication_seed": 7,
        "before_publication": "provisional",
    }
    defaults = StandInConfig(**identity)
    # Every setting but the server's identity is changed here, each to a value other than its default.
    assert set(changed) | set(identity) == {f.name for f in dataclasses.fields(StandInConfig)}
    assert all(changed[name] != getattr(defaults, name) for name in changed)
    stand_in.configure(**changed)
    set_clock(stand_in, WED)
    assert ts(stand_in, interval="1h", outputsize=2).status_code == 200
    assert ts(stand_in, interval="1h", outputsize=2).json()["code"] == 429  # the day's one credit is spent
    stand_in.push_fault(Fault("html_502"))

    stand_in.restore_defaults()
    assert stand_in.config == defaults
    assert stand_in.requests == []
    assert ts(stand_in, interval="1h", outputsize=2).status_code == 200  # no fault left in the queue

    # Overrides apply on top of the defaults; the credit counters started again from zero.
    stand_in.configure(credits_per_day=1, time_offset_seconds=(WED - datetime.now(UTC)).total_seconds())
    stand_in.restore_defaults(credits_per_day=1, time_offset_seconds=stand_in.config.time_offset_seconds)
    assert stand_in.config == dataclasses.replace(
        defaults, credits_per_day=1, time_offset_seconds=stand_in.config.time_offset_seconds
    )
    assert [ts(stand_in, interval="1h", outputsize=2).status_code for _ in range(2)] == [200, 429]
    with pytest.raises(TypeError):
        stand_in.restore_defaults(api_key="another")
    with pytest.raises(TypeError):
        stand_in.restore_defaults(no_such_field=1)
    assert stand_in.config.api_key == KEY


# -- control ------------------------------------------------------------------------------------


def test_configure_rejects_unknown_fields(stand_in: StandIn) -> None:
    with pytest.raises(TypeError):
        stand_in.configure(no_such_field=1)


def control(stand_in: StandIn, method: str, name: str, key: str | None = KEY, **kwargs):
    headers = {"Authorization": f"apikey {key}"} if key is not None else {}
    return requests.request(method, f"{stand_in.url}/__standin__/{name}", headers=headers, timeout=5, **kwargs)


def test_control_endpoints(stand_in: StandIn) -> None:
    config = {
        "credits_per_minute": 1,
        "holes": [["2025-06-10T12:00:00+00:00", "2025-06-10T13:00:00+00:00"]],
        "revisions": {"2025-06-10T11:00:00Z": "10"},
    }
    assert control(stand_in, "POST", "config", json=config).status_code == 200
    assert stand_in.config.holes == [(utc(2025, 6, 10, 12), utc(2025, 6, 10, 13))]
    assert stand_in.config.revisions == {utc(2025, 6, 10, 11): Decimal("10")}
    window = {"interval": "15min", "start_date": "2025-06-10 11:00:00", "end_date": "2025-06-10 13:00:00"}
    assert [r["datetime"][11:16] for r in values(stand_in, **window)] == ["13:00", "11:45", "11:30", "11:15", "11:00"]
    assert ts(stand_in, **window).status_code == 429
    logged = control(stand_in, "GET", "requests").json()
    assert [(r["code"], r["credits"], r["values"]) for r in logged] == [(200, 1, 5), (429, 1, 0)]
    assert logged[0]["params"]["interval"] == "15min" and logged[0]["at"].startswith("20")
    shown = control(stand_in, "GET", "config", params={"apikey": KEY})  # the key in the query string works too
    assert shown.status_code == 200
    assert shown.json()["credits_per_minute"] == 1 and "api_key" not in shown.json() and KEY not in shown.text
    bad = control(stand_in, "POST", "config", json={"nope": 1})
    assert bad.status_code == 400
    assert control(stand_in, "POST", "fault", json={"kind": "html_502"}).status_code == 200
    assert ts(stand_in, **window).status_code == 502
    assert control(stand_in, "POST", "reset").status_code == 200
    assert stand_in.requests == [] and stand_in.config.credits_per_minute == 1
    assert ts(stand_in, **window).status_code == 200


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_control_endpoints_require_the_key(stand_in: StandIn, key: str | None) -> None:
    ts(stand_in, interval="1h")
    before = stand_in.config
    attempts = [
        ("GET", "requests", {}),
        ("GET", "config", {}),
        ("POST", "config", {"json": {"api_key": "taken-over", "credits_per_minute": 1}}),
        ("POST", "reset", {}),
        ("POST", "fault", {"json": {"kind": "html_502"}}),
        ("GET", "config", {"params": {"apikey": "wrong-key"}}),
    ]
    for method, name, kwargs in attempts:
        response = control(stand_in, method, name, key=key, **kwargs)
        assert response.status_code == 401, (method, name, response.text)
        assert response.json() == {"code": 401, "message": APIKEY_MSG, "status": "error"}
        assert KEY not in response.text and "time_series" not in response.text
    # Nothing was changed, cleared or queued.
    assert stand_in.config == before
    assert [r.path for r in stand_in.requests] == ["/time_series"]
    assert ts(stand_in, interval="1h").status_code == 200


# -- prices and sessions ------------------------------------------------------------------------


def test_sessions_follow_new_york_time() -> None:
    # Winter (EST): open Sunday 23:00 UTC, close Friday 22:00 UTC, break 22:00-23:00 UTC.
    assert not in_session(utc(2025, 1, 12, 22, 45)) and in_session(utc(2025, 1, 12, 23, 0))
    assert in_session(utc(2025, 1, 17, 21, 45)) and not in_session(utc(2025, 1, 17, 22, 0))
    assert not in_session(utc(2025, 1, 14, 22, 30)) and in_session(utc(2025, 1, 14, 23, 0))
    assert not in_session(utc(2025, 1, 18, 12, 0))
    # Summer (EDT): one hour earlier.
    assert in_session(utc(2025, 6, 8, 22, 0)) and not in_session(utc(2025, 6, 8, 21, 45))
    assert not in_session(utc(2025, 6, 13, 21, 0)) and not in_session(utc(2025, 6, 10, 21, 15))


def test_prices_are_plausible_and_positive() -> None:
    assert 1900 < mid("XAU/USD", 2050.0, int(utc(2024, 1, 1).timestamp())) < 2200
    assert 3900 < mid("XAU/USD", 2050.0, int(utc(2026, 1, 15).timestamp())) < 4800
    for year in range(2010, 2036):
        assert mid("XAG/USD", 23.0, int(utc(year, 6, 1).timestamp())) > 0


def test_main_takes_the_key_from_the_environment_not_the_command_line(capsys) -> None:
    config, note = config_from(["--port", "0", "--no-limits"], {"TWELVE_DATA_API_KEY": "env-key"})
    assert (config.api_key, config.port, config.credits_per_minute, note) == ("env-key", 0, None, None)
    config, note = config_from([], {})
    assert config.api_key == "demo-key" and config.credits_per_minute == 8
    assert note is not None and "TWELVE_DATA_API_KEY" in note and "demo-key" in note
    assert config_from([], {"TWELVE_DATA_API_KEY": "  "})[0].api_key == "demo-key"
    with pytest.raises(SystemExit) as exited:
        config_from(["--api-key", "argv-key"], {})
    assert exited.value.code == 2 and "--api-key" in capsys.readouterr().err


def test_main_serves_the_new_york_grid_on_request() -> None:
    assert config_from([], {})[0].bar_anchor == "utc"
    assert config_from(["--bar-anchor", "new_york"], {})[0].bar_anchor == "new_york"
    default = config_from([], {})[0]
    assert (default.weekend_bars, default.plan_gated, default.day_boundary, default.daily_stamp) == (
        True,
        ("XAG/USD",),
        None,
        "date",
    )
    argv = ["--cme-hours", "--paid-plan", "--day-boundary", "utc+10", "--h4-phase-hours", "2", "--daily-stamp", "open"]
    switched = config_from(argv, {})[0]
    assert (switched.weekend_bars, switched.plan_gated, switched.day_boundary) == (False, (), "utc+10")
    assert (switched.h4_phase_hours, switched.daily_stamp) == (2, "open")


def test_new_york_anchored_bars_move_with_dst_and_1day_bars_carry_their_open(stand_in: StandIn) -> None:
    """17:00 New York: H4 at 22/02/... UTC in winter and 21/01/... in summer; the D1 bar opening
    Sunday evening holds Sunday evening and Monday, and with daily_stamp="open" its datetime is its open."""
    stand_in.configure(bar_anchor="new_york", weekend_bars=False, daily_stamp="open")
    winter = stand_in.bars("XAU/USD", "4h", utc(2024, 1, 9), utc(2024, 1, 10))
    summer = stand_in.bars("XAU/USD", "4h", utc(2024, 7, 9), utc(2024, 7, 10))
    assert [b["datetime"].hour for b in winter] == [2, 6, 10, 14, 18, 22]
    assert [b["datetime"].hour for b in summer] == [1, 5, 9, 13, 17, 21]
    days = stand_in.bars("XAU/USD", "1day", utc(2024, 1, 6), utc(2024, 1, 13))
    assert [b["datetime"] for b in days] == [utc(2024, 1, d, 22) for d in (7, 8, 9, 10, 11)]
    rows = values(stand_in, interval="1day", start_date="2024-01-07", end_date="2024-01-09")
    assert [v["datetime"] for v in rows] == ["2024-01-08 22:00:00", "2024-01-07 22:00:00"]
    m15 = stand_in.bars("XAU/USD", "15min", utc(2024, 1, 7, 22), utc(2024, 1, 8, 22))
    assert days[0]["open"] == m15[0]["open"] and days[0]["close"] == m15[-1]["close"]


def start_main(*argv: str, env: dict[str, str]) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-m", "xau_pipeline_dev.twelvedata_standin", "--port", "0", *argv],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def daily_bars(url: str, key: str) -> requests.Response:
    return requests.get(
        url + "/time_series",
        headers={"Authorization": f"apikey {key}"},
        timeout=5,
        params={"symbol": "XAU/USD", "interval": "1day", "timezone": "UTC"},
    )


@pytest.mark.process
def test_main_runs_and_stops_on_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TWELVE_DATA_API_KEY"}
    with_key = start_main("--no-limits", env={**env, "TWELVE_DATA_API_KEY": "env-secret-7c1d"})
    without_key = start_main("--no-limits", env=env)
    try:
        keyed, demo = (
            re.search(r"http://127\.0\.0\.1:\d+", p.stdout.readline()).group(0) for p in (with_key, without_key)
        )
        assert daily_bars(keyed, "env-secret-7c1d").status_code == 200
        assert daily_bars(keyed, "demo-key").status_code == 401
        assert daily_bars(demo, "demo-key").status_code == 200
        for proc in (with_key, without_key):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
        assert "TWELVE_DATA_API_KEY is not set" in without_key.stderr.read()
        assert with_key.stderr.read() == ""
    finally:
        for proc in (with_key, without_key):
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.stderr.close()


@pytest.mark.parametrize(
    ("boundary", "opens_at"),
    [("utc", utc(2024, 1, 9)), ("utc+10", utc(2024, 1, 8, 14)), ("new_york", utc(2024, 1, 8, 22))],
)
def test_daily_bars_carry_a_bare_date_for_any_day_boundary(stand_in: StandIn, boundary, opens_at) -> None:
    """As GBP/USD's "2022-03-05" held the 8h bar opening 2022-03-04 14:00 UTC: the date is the UTC
    date of the day's middle, even with timezone=UTC, and the bar holds that day's 15-minute bars."""
    stand_in.configure(day_boundary=boundary)
    rows = values(stand_in, interval="1day", start_date="2024-01-09", end_date="2024-01-10")
    assert [r["datetime"] for r in rows] == ["2024-01-09"]  # picked by its date
    m15 = stand_in.bars("XAU/USD", "15min", opens_at, opens_at + timedelta(days=1))
    assert len(m15) == 96  # a 24/7 feed
    rendered = [{k: str(b[k]) for k in ("datetime", "open", "high", "low", "close")} for b in m15]
    assert as_decimals(rows[0]) == aggregate(rendered)
    (served,) = stand_in.bars("XAU/USD", "1day", utc(2024, 1, 9), utc(2024, 1, 10))
    assert (served["datetime"], served["opens"]) == (utc(2024, 1, 9), opens_at)


def test_a_symbol_outside_the_free_plan_is_404_and_still_costs_a_credit(stand_in: StandIn) -> None:
    response = ts(stand_in, symbol="XAG/USD", interval="1h", outputsize=2)
    assert (response.status_code, response.json()["code"]) == (404, 404)
    assert stand_in_message(response).startswith("This symbol is available starting with the Grow or Venture plan")
    assert stand_in.requests[-1].credits == 1
    stand_in.configure(plan_gated=())
    assert values(stand_in, symbol="XAG/USD", interval="1h", outputsize=2)


# -- publication delay --------------------------------------------------------------------------

# One closed bar of each interval, on a Wednesday in session: (interval, open, close, its served datetime).
PUBLISHED_BARS = [
    ("15min", utc(2025, 6, 11, 14, 15), utc(2025, 6, 11, 14, 30), "2025-06-11 14:15:00"),
    ("1h", utc(2025, 6, 11, 14), utc(2025, 6, 11, 15), "2025-06-11 14:00:00"),
    ("4h", utc(2025, 6, 11, 12), utc(2025, 6, 11, 16), "2025-06-11 12:00:00"),
    ("1day", utc(2025, 6, 11), utc(2025, 6, 12), "2025-06-11"),
]
PUBLISHED_IDS = [bar[0] for bar in PUBLISHED_BARS]
OHLC = ("open", "high", "low", "close")


def served_around(stand_in: StandIn, interval: str, opens: datetime) -> dict[str, tuple[Decimal, ...]]:
    """The answer for the bars from a day before ``opens`` on (the forming one included), by datetime."""
    start = (opens - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    return {row["datetime"]: as_decimals(row) for row in values(stand_in, interval=interval, start_date=start)}


def ohlc(bar: dict) -> tuple[Decimal, ...]:
    return tuple(bar[k] for k in OHLC)


def bar_at(stand_in: StandIn, interval: str, opens: datetime, *, final: bool = False) -> dict | None:
    rows = stand_in.bars("XAU/USD", interval, opens, opens + timedelta(seconds=1), final=final)
    return rows[0] if rows else None


@pytest.mark.parametrize(("interval", "opens", "closes", "label"), PUBLISHED_BARS, ids=PUBLISHED_IDS)
def test_a_closed_bar_is_absent_until_published(stand_in: StandIn, interval, opens, closes, label) -> None:
    """By default a bar is published 18-120 s after its close (now and then later), and left out of
    answers until then: the answer ends with the bar before it, the forming bar still served."""
    published = stand_in.published_at("XAU/USD", interval, opens)
    assert published.tzinfo is not None and closes + timedelta(seconds=18) <= published
    assert published <= closes + timedelta(seconds=420)
    long_ago = bar_at(stand_in, interval, opens)  # on the real clock, long published
    assert long_ago is not None and long_ago["published"] is True

    set_clock(stand_in, closes + timedelta(seconds=5))
    served = served_around(stand_in, interval, opens)
    assert label not in served
    newest = values(stand_in, interval=interval, outputsize=2)
    assert newest[0]["datetime"] > label > newest[1]["datetime"]  # the forming bar, then the one before
    assert bar_at(stand_in, interval, opens) is None
    held_back = bar_at(stand_in, interval, opens, final=True)
    assert held_back is not None and held_back["published"] is False
    set_clock(stand_in, published - timedelta(seconds=3))
    assert label not in served_around(stand_in, interval, opens)

    set_clock(stand_in, published + timedelta(seconds=1))
    assert served_around(stand_in, interval, opens)[label] == ohlc(held_back)
    shown = bar_at(stand_in, interval, opens)
    assert shown is not None and shown["published"] is True and ohlc(shown) == ohlc(held_back)
    # A bar left out costs what any answer costs: one credit a call.
    assert [(r.code, r.credits) for r in stand_in.requests] == [(200, 1)] * 4


@pytest.mark.parametrize(
    ("interval", "opens", "closes", "label"),
    [*PUBLISHED_BARS, ("15min", utc(2025, 6, 14, 12), utc(2025, 6, 14, 12, 15), "2025-06-14 12:00:00")],
    ids=[*PUBLISHED_IDS, "15min-saturday"],
)
def test_a_closed_bar_is_provisional_until_published(stand_in: StandIn, interval, opens, closes, label) -> None:
    """With before_publication="provisional" the bar is served before its publication with the values
    the feed had its delay earlier (its last ticks not in), and with its final values after."""
    stand_in.configure(before_publication="provisional")
    published = stand_in.published_at("XAU/USD", interval, opens)
    set_clock(stand_in, closes + timedelta(seconds=5))
    early = served_around(stand_in, interval, opens)[label]
    final = bar_at(stand_in, interval, opens, final=True)
    assert final is not None
    assert early != ohlc(final)
    assert early[0] == final["open"] and early[3] != final["close"]
    shown = bar_at(stand_in, interval, opens)
    assert shown is not None and shown["published"] is False and ohlc(shown) == early
    # The provisional values fill in as the feed catches up, and stay provisional until the publication.
    set_clock(stand_in, published - timedelta(seconds=3))
    later = served_around(stand_in, interval, opens)[label]
    assert later not in (early, ohlc(final))

    set_clock(stand_in, published + timedelta(seconds=1))
    assert served_around(stand_in, interval, opens)[label] == ohlc(final)
    shown = bar_at(stand_in, interval, opens)
    assert shown is not None and shown["published"] is True and ohlc(shown) == ohlc(final)


def test_no_publication_delay_publishes_each_bar_at_its_close(stand_in: StandIn) -> None:
    stand_in.configure(publication_delay_seconds=(0.0, 0.0), publication_late_share=0.0)
    interval, opens, closes, label = PUBLISHED_BARS[0]
    assert stand_in.published_at("XAU/USD", interval, opens) == closes
    set_clock(stand_in, closes + timedelta(seconds=1))
    final = bar_at(stand_in, interval, opens, final=True)
    assert final is not None and final["published"] is True
    assert served_around(stand_in, interval, opens)[label] == ohlc(final)
    assert values(stand_in, interval=interval, outputsize=2)[1]["datetime"] == label
    assert bar_at(stand_in, interval, opens) == final


def test_publication_delays_are_deterministic_spread_and_sometimes_late(stand_in: StandIn) -> None:
    opens = [utc(2025, 6, 2) + timedelta(minutes=15 * i) for i in range(4000)]

    def delays(server: StandIn, interval: str = "15min") -> list[float]:
        return [
            (server.published_at("XAU/USD", interval, t) - t - timedelta(minutes=15)).total_seconds() for t in opens
        ]

    default = delays(stand_in)
    assert default == delays(StandIn(StandInConfig(api_key="other")))  # the same in every stand-in
    typical = [d for d in default if d <= 120]
    late = [d for d in default if d > 120]
    assert all(18 <= d <= 120 for d in typical) and all(150 <= d <= 420 for d in late)
    assert 0.01 <= len(late) / len(default) <= 0.03  # 2 % expected
    assert min(typical) < 25 and max(typical) > 113 and 60 < sorted(typical)[len(typical) // 2] < 78
    assert min(late) < 200 and max(late) > 370
    hourly = [(stand_in.published_at("XAU/USD", "1h", t) - t).total_seconds() - 3600 for t in opens[:400:4]]
    assert hourly != default[:400:4]  # each interval's bars have their own delays

    stand_in.configure(
        publication_delay_seconds=(30.0, 40.0), publication_late_share=0.25, publication_late_seconds=(300, 300)
    )
    configured = delays(stand_in)
    assert all(30 <= d <= 40 or d == 300 for d in configured)
    assert 0.22 <= configured.count(300) / len(configured) <= 0.28
    stand_in.configure(publication_seed=1)
    assert delays(stand_in) != configured
    with pytest.raises(ValueError):
        stand_in.published_at("XAU/USD", "1h", utc(2025, 6, 11, 14, 15))  # no 1h bar opens there
    with pytest.raises(ValueError):
        stand_in.published_at("XAU/USD", "1h", datetime(2025, 6, 11, 14))  # naive


def test_publication_settings_through_the_control_endpoint(stand_in: StandIn) -> None:
    posted = {
        "publication_delay_seconds": [5, 7.5],
        "publication_late_share": 0.1,
        "publication_late_seconds": [200, 300],
        "publication_seed": 3,
        "before_publication": "provisional",
    }
    assert control(stand_in, "POST", "config", json=posted).status_code == 200
    config = stand_in.config
    assert (config.publication_delay_seconds, config.publication_late_seconds) == ((5.0, 7.5), (200.0, 300.0))
    assert (config.publication_late_share, config.publication_seed, config.before_publication) == (
        0.1,
        3,
        "provisional",
    )
    shown = control(stand_in, "GET", "config").json()
    assert {k: shown[k] for k in posted} == {**posted, "publication_delay_seconds": [5.0, 7.5]}
    assert StandInConfig(**config_from_json(config_to_json(config))) == config
    for wrong in (
        {"before_publication": "later"},
        {"publication_delay_seconds": [10, 5]},
        {"publication_late_seconds": [-1, 5]},
        {"publication_delay_seconds": 5},
        {"publication_late_share": 1.5},
    ):
        assert control(stand_in, "POST", "config", json=wrong).status_code == 400, wrong
    assert stand_in.config == config


def test_publication_on_the_command_line_and_in_make_demo(monkeypatch) -> None:
    default = config_from([], {})[0]
    assert default.publication_delay_seconds == (18.0, 120.0) and default.publication_late_share == 0.02
    assert (default.publication_late_seconds, default.before_publication) == ((150.0, 420.0), "absent")
    argv = ["--publication-delay", "30,90", "--late-share", "0.1", "--late-delay", "200,600"]
    chosen = config_from([*argv, "--before-publication", "provisional"], {})[0]
    assert (chosen.publication_delay_seconds, chosen.publication_late_share) == ((30.0, 90.0), 0.1)
    assert (chosen.publication_late_seconds, chosen.before_publication) == ((200.0, 600.0), "provisional")
    off = config_from(["--publication-delay", "0"], {})[0]
    assert (off.publication_delay_seconds, off.publication_late_share) == ((0.0, 0.0), 0.0)
    for wrong in (["--publication-delay", "90,30"], ["--late-share", "2"], ["--before-publication", "x"]):
        with pytest.raises(SystemExit):
            config_from(wrong, {})

    monkeypatch.delenv("XAU_DEMO_PUBLICATION_DELAY", raising=False)
    monkeypatch.delenv("XAU_DEMO_BEFORE_PUBLICATION", raising=False)
    assert launch.demo_publication() == {}  # the stand-in's realistic defaults
    monkeypatch.setenv("XAU_DEMO_PUBLICATION_DELAY", "0")
    assert launch.demo_publication() == {"publication_delay_seconds": (0.0, 0.0), "publication_late_share": 0.0}
    monkeypatch.setenv("XAU_DEMO_PUBLICATION_DELAY", "20,60")
    monkeypatch.setenv("XAU_DEMO_BEFORE_PUBLICATION", "provisional")
    assert launch.demo_publication() == {"publication_delay_seconds": (20.0, 60.0), "before_publication": "provisional"}
    monkeypatch.setenv("XAU_DEMO_BEFORE_PUBLICATION", "never")
    with pytest.raises(launch.LaunchError):
        launch.demo_publication()
