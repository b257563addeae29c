"""Hostile answers from a server on loopback: nothing invalid is stored, each ends as documented,
and the credits booked equal the attempts that reached the server.

The server is this module's own (http.server on 127.0.0.1, port 0): every answer is scripted.
"""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from xau_pipeline.ingest import ingest
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.quarantine_rule import CONFLICT, HIGH_LOW, NOT_POSITIVE, OFF_GRID, UNREADABLE, parse_datetime
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.credit_budget import BudgetSettings
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline.twelvedata.errors import (
    InvalidRequestError,
    MalformedAnswerError,
    RedirectRefusedError,
    ServiceUnavailableError,
    UnknownSymbolError,
    classify_error,
)
from xau_pipeline.twelvedata.retry_policy import RetryPolicy
from xau_pipeline_tests.conftest import TEST_API_KEY

GOLD = Symbol("XAU/USD")
M15, H1 = TIMEFRAMES_BY_NAME["M15"], TIMEFRAMES_BY_NAME["H1"]
WEDNESDAY = datetime(2024, 3, 13, tzinfo=UTC)
DAY = timedelta(days=1)

Responder = Callable[[BaseHTTPRequestHandler], None]


def bar_values(start: datetime, step: timedelta, count: int, price: float = 2150.0) -> list[dict]:
    """Valid bars as Twelve Data sends them: newest first, every value a string."""
    values = []
    for i in range(count):
        o = price + i * 0.1
        values.append(
            {
                "datetime": (start + i * step).strftime("%Y-%m-%d %H:%M:%S"),
                "open": f"{o:.5f}",
                "high": f"{o + 1:.5f}",
                "low": f"{o - 1:.5f}",
                "close": f"{o + 0.5:.5f}",
            }
        )
    return values[::-1]


def h1_day(day: datetime = WEDNESDAY) -> list[dict]:
    # CME gold trades 23 hours on a summer Wednesday (break 21:00-22:00 UTC).
    return [v for v in bar_values(day, timedelta(hours=1), 24) if not v["datetime"].endswith("21:00:00")]


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def answer(values: object, status: int = 200) -> Responder:
    body = json.dumps({"meta": {"symbol": "XAU/USD"}, "values": values, "status": "ok"}).encode()
    return lambda handler: send(handler, status, body)


def raw(body: bytes, status: int = 200) -> Responder:
    return lambda handler: send(handler, status, body)


class HostileServer:
    """Answers each /time_series request with the next scripted responder (the last one repeats)."""

    def __init__(self) -> None:
        self.script: list[Responder] = []
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append(self.path)
                responder = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                try:
                    responder(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


def run_ingest(hostile, store, timeframe=H1, start=WEDNESDAY, end=WEDNESDAY + DAY, **client_kwargs):
    budget = store.credit_budget(
        BudgetSettings(per_minute=10_000, per_day=100_000, schedule_share=0, repair_share=0), "backfill", "hostile"
    )
    client_kwargs.setdefault("retry", RetryPolicy(first_pause=timedelta(seconds=0.01)))
    client_kwargs.setdefault("timeout_seconds", 5)
    client = TwelveDataClient(TEST_API_KEY, hostile.url, budget=budget, **client_kwargs)
    try:
        return ingest(client, store, GOLD, timeframe, start, end, run_id="hostile")
    finally:
        client.close()


def table(store, name: str) -> list[sa.Row]:
    with store.engine.connect() as connection:
        return list(connection.execute(sa.text(f"SELECT * FROM {name} ORDER BY 1")))


def assert_booked_as_reached(store, hostile, report) -> None:
    """Credits booked = attempts that reached the server; nothing left pending."""
    ledger = table(store, "api_calls")
    assert sum(r.credits for r in ledger) == len(hostile.requests) == report.credits
    assert all(r.outcome != "pending" for r in ledger), [r.outcome for r in ledger]


def stored_invalid(store) -> list[sa.Row]:
    with store.engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT * FROM candles WHERE NOT (open > 0 AND high > 0 AND low > 0 AND close > 0 "
                    "AND low <= least(open, close) AND greatest(open, close) <= high) "
                    "OR extract(epoch FROM \"timestamp\")::bigint % CASE timeframe WHEN 'M15' THEN 900 ELSE 3600 END <> 0"
                )
            )
        )


def quarantine_reasons(store) -> list[str]:
    return [r.reason for r in table(store, "candle_quarantine")]


@pytest.mark.parametrize(
    ("timeframe", "stamp"),
    [(M15, "2024-03-13 00:07:13"), (H1, "2024-03-13 05:30:00")],
    ids=["M15-00:07:13", "H1-05:30"],
)
def test_an_off_grid_bar_is_quarantined(hostile, store, timeframe, stamp):
    values = bar_values(WEDNESDAY, timeframe.bar, 8)
    values.insert(3, {**values[3], "datetime": stamp})
    hostile.script = [answer(values)]
    report = run_ingest(hostile, store, timeframe, WEDNESDAY, WEDNESDAY + 8 * timeframe.bar)
    assert report.complete and report.counts.inserted == 8
    assert [r.split(" (")[0] for r in quarantine_reasons(store)] == [OFF_GRID]
    (row,) = table(store, "candle_quarantine")
    assert row.bar_time == datetime.fromisoformat(stamp).replace(tzinfo=UTC) and stamp in row.raw
    assert row.run_id == "hostile" and row.fetched_at is not None
    assert stored_invalid(store) == []
    assert_booked_as_reached(store, hostile, report)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"open": "-2150.1", "low": "-2151"}, NOT_POSITIVE),
        ({"open": "0", "low": "0"}, NOT_POSITIVE),
        ({"close": "NaN"}, NOT_POSITIVE),
        ({"high": "Infinity"}, NOT_POSITIVE),
        ({"high": "2100", "low": "2200"}, HIGH_LOW),
        ({"close": "2999"}, HIGH_LOW),
    ],
    ids=["negative", "zero", "nan", "infinity", "high-below-low", "close-above-high"],
)
def test_invalid_prices_are_quarantined_and_the_rest_stored(hostile, store, change, reason):
    values = h1_day()
    values[5] = {**values[5], **change}
    hostile.script = [answer(values)]
    report = run_ingest(hostile, store)
    assert report.complete and report.counts.inserted == len(values) - 1
    assert quarantine_reasons(store) == [reason]
    assert report.quarantined == 1 and report.quarantine_samples[0].reason == reason
    assert stored_invalid(store) == []
    assert_booked_as_reached(store, hostile, report)
    assert "1 quarantined" in table(store, "api_calls")[0].outcome


def test_json_nan_constants_are_quarantined(hostile, store):
    body = json.dumps({"values": h1_day()}).replace('"2150.50000"', "NaN", 1).encode()
    assert b"NaN" in body
    hostile.script = [raw(body)]
    report = run_ingest(hostile, store)
    assert report.complete and quarantine_reasons(store) == [NOT_POSITIVE]
    assert len(hostile.requests) == 1
    assert_booked_as_reached(store, hostile, report)


def test_conflicting_repeats_are_all_quarantined_identical_ones_kept_once(hostile, store):
    values = h1_day()
    conflicting = {**values[2], "close": "2150.0"}
    identical = dict(values[7])
    hostile.script = [answer([*values, conflicting, identical])]
    report = run_ingest(hostile, store)
    assert report.complete and report.counts.inserted == len(values) - 1
    assert quarantine_reasons(store) == [CONFLICT, CONFLICT]
    times = {r.bar_time for r in table(store, "candle_quarantine")}
    assert times == {datetime.fromisoformat(values[2]["datetime"]).replace(tzinfo=UTC)}
    assert datetime.fromisoformat(values[2]["datetime"]).replace(tzinfo=UTC) not in {
        r.timestamp for r in table(store, "candles")
    }
    assert_booked_as_reached(store, hostile, report)


def test_a_conflicting_repeat_does_not_overwrite_a_stored_bar(hostile, store):
    values = h1_day()
    hostile.script = [answer(values)]
    run_ingest(hostile, store)
    before = table(store, "candles")
    hostile.script = [answer([*values, {**values[0], "close": "2150.0"}])]
    budget = store.credit_budget(BudgetSettings(per_minute=10_000, per_day=100_000), "backfill")
    client = TwelveDataClient(
        TEST_API_KEY, hostile.url, budget=budget, retry=RetryPolicy(first_pause=timedelta(seconds=0.01))
    )
    report = ingest(client, store, GOLD, H1, WEDNESDAY, WEDNESDAY + DAY, force=True)
    assert report.complete and report.counts.updated == 0
    assert [tuple(r[:8]) for r in table(store, "candles")] == [tuple(r[:8]) for r in before]
    assert quarantine_reasons(store) == [CONFLICT, CONFLICT]


def test_an_offset_suffix_is_unreadable_and_not_retried(hostile, store):
    values = [{**v, "datetime": v["datetime"] + "+03:00"} for v in h1_day()]
    hostile.script = [answer(values)]
    report = run_ingest(hostile, store)
    assert report.complete and report.counts.inserted == 0
    reasons = quarantine_reasons(store)
    assert len(reasons) == len(values) and all(r.startswith(UNREADABLE) for r in reasons)
    assert len(hostile.requests) == 1
    assert table(store, "candles") == []
    assert_booked_as_reached(store, hostile, report)


@pytest.mark.parametrize(
    "responder",
    [
        raw(b'{"meta": {"symbol": "XAU/USD"}, "status": "ok"}'),
        raw(b'{"values": "none", "status": "ok"}'),
        raw('{"values": [{"datetime": "2024-03-13 00:00:00", "open": "21\u00e9"}]}'.encode("latin-1")),
        raw(b'{"meta": {"symbol": "XAU/USD"}, "values": [{"datetime": "2024-03-13 00:0'),
    ],
    ids=["no-values", "values-not-a-list", "not-utf8", "truncated-json"],
)
def test_an_unreadable_answer_is_tried_twice_then_fails(hostile, store, responder):
    hostile.script = [responder]
    report = run_ingest(hostile, store)
    assert isinstance(report.error, MalformedAnswerError), report.error
    assert len(hostile.requests) == 2
    assert table(store, "candles") == [] and table(store, "fetch_coverage") == []
    assert_booked_as_reached(store, hostile, report)


@pytest.mark.slow
def test_a_trickled_body_fails_within_the_deadline_as_transient(hostile, store):
    body = json.dumps({"values": h1_day()}).encode()

    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for i in range(len(body)):
            handler.wfile.write(body[i : i + 1])
            handler.wfile.flush()
            time.sleep(0.2)

    hostile.script = [trickle]
    began = time.monotonic()
    report = run_ingest(
        hostile, store, timeout_seconds=1.0, retry=RetryPolicy(max_attempts=2, first_pause=timedelta(seconds=0.01))
    )
    elapsed = time.monotonic() - began
    assert isinstance(report.error, ServiceUnavailableError)
    # The message is the last attempt's: its deadline, or (seen once with the suite on two busy
    # workers) the connection dropped under it; either way each attempt ended within its deadline.
    assert "within 1 s" in str(report.error) or "ProtocolError" in str(report.error), report.error
    assert elapsed < 2 * 1.0 + 1.5, elapsed
    assert len(hostile.requests) == 2
    assert table(store, "candles") == []
    assert_booked_as_reached(store, hostile, report)


def test_trickled_headers_fail_within_the_deadline(hostile, store):
    def slow_headers(handler):
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n":
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.2)

    hostile.script = [slow_headers]
    began = time.monotonic()
    report = run_ingest(
        hostile, store, timeout_seconds=1.0, retry=RetryPolicy(max_attempts=1, first_pause=timedelta(seconds=0.01))
    )
    assert isinstance(report.error, ServiceUnavailableError)
    assert time.monotonic() - began < 2.0
    assert_booked_as_reached(store, hostile, report)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_body_is_cut_at_the_cap(hostile, store, declared):
    cap = 64 * 1024
    # ~10 MB: large enough that what the process allocates anyway during the call (caches a long
    # suite has or has not filled yet: up to ~0.6 MB seen) stays far below half of it.
    filler = b'{"values": [' + b'{"datetime": "2024-03-13 00:00:00", "open": "1"},' * 200_000 + b"{}]}"

    def huge(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declared:
            handler.send_header("Content-Length", str(len(filler)))
        else:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        if declared:
            handler.wfile.write(filler)
        else:
            for i in range(0, len(filler), 8192):
                chunk = filler[i : i + 8192]
                handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            handler.wfile.write(b"0\r\n\r\n")

    hostile.script = [huge]
    # What the first ingest of a process loads once (the trading calendar's years, SQLAlchemy's
    # compiled statements) is not the answer's memory: load it before measuring.
    calendar(GOLD.calendar).expected_slots(WEDNESDAY - 7 * DAY, WEDNESDAY + 7 * DAY, H1.bar)
    tracemalloc.start()
    report = run_ingest(hostile, store, max_response_bytes=cap)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(report.error, MalformedAnswerError) and f"larger than {cap} bytes" in str(report.error)
    assert peak < len(filler) // 2, peak
    assert len(hostile.requests) == 2
    assert table(store, "candles") == []
    assert_booked_as_reached(store, hostile, report)


def test_a_redirect_to_another_host_is_not_followed(hostile, store):
    elsewhere = HostileServer()
    try:
        elsewhere.script = [answer(h1_day())]
        target = elsewhere.url.replace("127.0.0.1", "localhost") + "/time_series"

        def redirect(handler):
            send(handler, 301, b"", {"Location": target})

        hostile.script = [redirect]
        report = run_ingest(hostile, store)
        assert isinstance(report.error, RedirectRefusedError) and "localhost" in str(report.error)
        assert elsewhere.requests == [] and len(hostile.requests) == 1
        assert table(store, "candles") == []
        assert_booked_as_reached(store, hostile, report)
    finally:
        elsewhere.close()


@pytest.mark.parametrize(
    ("message", "unknown"),
    [
        ("**symbol** or **figi** parameter is missing or invalid. Please provide a valid symbol", True),
        ("**symbol** not found: XAU/EUR", True),
        ("Unknown symbol XAU/EUR", True),
        ("Invalid **start_date** for symbol XAU/USD: too far in the past", False),
        ("**interval** is not available for this symbol", False),
        ("Invalid **interval** provided: 15min.", False),
    ],
)
def test_unknown_symbol_is_decided_by_meaning(message, unknown):
    error = classify_error(400, {"code": 400, "message": message, "status": "error"}, WEDNESDAY, "XAU/EUR")
    assert isinstance(error, UnknownSymbolError) == unknown
    assert isinstance(error, InvalidRequestError)


def test_a_wrong_base_url_scheme_is_refused_before_any_call():
    with pytest.raises(InvalidRequestError, match="http:// or https://"):
        TwelveDataClient(TEST_API_KEY, "ftp://api.twelvedata.com")


@pytest.mark.slow
def test_a_run_reports_quarantined_bars_in_metadata_and_an_error_check(hostile, store, dagster_instance):
    import dagster as dg

    from xau_pipeline.defs.candles.asset_factory import build_candle_asset
    from xau_pipeline.defs.candles.partitions import daily_partitions
    from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
    from xau_pipeline.settings import Settings
    from xau_pipeline_tests.conftest import NO_CREDIT_LIMITS

    partitions = daily_partitions("2024-01-01")
    asset = build_candle_asset(GOLD, H1, partitions, Settings(database_url=store.url))  # its checks inside
    values = h1_day()
    values[3] = {**values[3], "low": "-1"}
    hostile.script = [answer(values)]
    resources = {
        "twelvedata": TwelveDataResource(api_key=TEST_API_KEY, base_url=hostile.url, **NO_CREDIT_LIMITS),
        "candle_store": CandleStoreResource(database_url=store.url),
    }
    result = dg.materialize([asset], instance=dagster_instance, resources=resources, partition_key="2024-03-13")
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["bars_quarantined"].value == 1 and NOT_POSITIVE in metadata["quarantined_bars"].value
    assert metadata["dagster/row_count"].value == len(values) - 1
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "quarantine_empty"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["quarantined_bars"].value == 1
    others = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert others["ohlc_valid"] and others["no_gaps"] is False  # the quarantined slot is a gap


@pytest.mark.parametrize(
    "text",
    [
        "2025-01-01T00:00:00",
        "2025-01-01 00:00:00+03:00",
        "2025-01-01 00:00:00.5",
        "2025-1-1 0:0:0",
        "2025-W01-1",
        "2025-02-30",
        "2025-01-01 24:00:00",
        "",
        "now",
    ],
)
def test_a_datetime_not_in_the_asked_shape_is_refused(text):
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_the_two_asked_datetime_shapes_read_as_utc():
    assert parse_datetime("2025-03-09 07:15:00") == datetime(2025, 3, 9, 7, 15, tzinfo=UTC)
    assert parse_datetime("2025-03-09") == datetime(2025, 3, 9, tzinfo=UTC)
