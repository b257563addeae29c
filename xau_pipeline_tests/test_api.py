"""The read-only HTTP API over a real socket (uvicorn in a thread) and this run's PostgreSQL.

Candles are backfilled through the pipeline (the Twelve Data stand-in, `ingest`), one provider
hole planted; a few hand-made bars check exact digits and volumes.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest
import requests
import sqlalchemy as sa
from pydantic import TypeAdapter

from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import PARTITION_RANGE_END_TAG as ASSET_PARTITION_RANGE_END_TAG
from xau_pipeline.defs.candles.partitions import PARTITION_RANGE_START_TAG as ASSET_PARTITION_RANGE_START_TAG
from xau_pipeline.defs.candles.partitions import daily_partitions
from xau_pipeline.ingest import ingest
from xau_pipeline.interfaces import cli
from xau_pipeline.interfaces.http import queries
from xau_pipeline.interfaces.http.errors import _database_problem
from xau_pipeline.interfaces.http.models import CandleResponse
from xau_pipeline.interfaces.http.server import check_bind, is_loopback
from xau_pipeline.market.bars import Bar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.read_api_links import chart_url
from xau_pipeline.settings import Settings
from xau_pipeline.store.candle_query import MAX_LIMIT
from xau_pipeline.store.gaps import NEVER_FETCHED, PROVIDER_EMPTY
from xau_pipeline.store.upsert import upsert_bars
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline_dev.testing import serving_in_thread
from xau_pipeline_tests.conftest import TEST_API_KEY

UTC = UTC
GOLD = Symbol("XAU/USD")
M15, H1, H4 = (TIMEFRAMES_BY_NAME[name] for name in ("M15", "H1", "H4"))
FIRST_DAY = datetime(2024, 2, 5, tzinfo=UTC)  # a Monday
LAST_DAY = datetime(2024, 2, 10, tzinfo=UTC)  # Saturday: the week's bars all open before it
HOLE = (datetime(2024, 2, 7, 10, tzinfo=UTC), datetime(2024, 2, 7, 11, tzinfo=UTC))
CANDLES = TypeAdapter(list[CandleResponse])
UNREACHABLE = "postgresql://xau:hunter2@127.0.0.1:1/nowhere"


@pytest.fixture(scope="module")
def api(database_url, session_store):
    with serving_in_thread(database_url) as url:
        yield url


@pytest.fixture
def backfilled(store, stand_in):
    """A week of M15 and H1 from the stand-in through `ingest`, with a one-hour provider hole."""
    stand_in.configure(holes=[HOLE])
    client = TwelveDataClient(TEST_API_KEY, stand_in.url)
    for tf in (M15, H1):
        report = ingest(client, store, GOLD, tf, FIRST_DAY, LAST_DAY)
        assert report.complete
    return store


def stored(store, timeframe="M15", start=None, end=None) -> list[sa.Row]:
    """The stored rows, newest first, as the database has them (Decimal prices)."""
    query = sa.text(
        "SELECT \"timestamp\", open, high, low, close, volume, final FROM candles WHERE symbol = 'XAUUSD' "
        'AND timeframe = :tf AND "timestamp" >= :start AND "timestamp" < :end ORDER BY "timestamp" DESC'
    )
    with store.engine.connect() as connection:
        return list(
            connection.execute(
                query,
                {
                    "tf": timeframe,
                    "start": start or datetime(1970, 1, 1, tzinfo=UTC),
                    "end": end or datetime(2200, 1, 1, tzinfo=UTC),
                },
            )
        )


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def get(api, path, **kwargs) -> requests.Response:
    return requests.get(api + path, timeout=30, **kwargs)


def assert_equal_to_rows(items: list[dict], rows: list[sa.Row], timeframe="M15") -> None:
    assert len(items) == len(rows)
    for item, row in zip(items, rows, strict=True):
        assert item["symbol"] == "XAUUSD" and item["timeframe"] == timeframe
        assert item["timestamp"] == iso(row.timestamp)
        for name in ("open", "high", "low", "close"):
            assert Decimal(item[name]) == getattr(row, name)
            assert item[name] == format(getattr(row, name), "f")  # the stored digits, trailing zeros too
        assert item["volume"] == (None if row.volume is None else format(row.volume, "f"))
        assert item["final"] in (row.final, "true" if row.final else "false")


# ---- GET /candles/{timeframe} --------------------------------------------------------------------


def test_candles_are_the_stored_rows_newest_first(api, backfilled):
    rows = stored(backfilled)
    assert len(rows) > 400
    response = get(api, "/candles/M15", params={"limit": MAX_LIMIT})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    items = response.json(parse_float=Decimal)
    assert_equal_to_rows(items, rows)
    stamps = [item["timestamp"] for item in items]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps)
    assert "link" not in response.headers  # not a full page: nothing older
    # The body PostgreSQL renders is exactly what the CandleResponse model serialises.
    assert CANDLES.dump_json(CANDLES.validate_json(response.content)) == response.content
    h1 = get(api, "/candles/H1", params={"limit": 10}).json()
    assert_equal_to_rows(h1, stored(backfilled, "H1")[:10], "H1")


def test_exact_digits_volumes_and_symbol_spelling(api, store):
    t0 = datetime(2024, 3, 4, tzinfo=UTC)
    prices = ["2050.12345", "1999.10", "2001", "0.00001", "2100.500000"]
    bars = [
        Bar(t0 + i * H4.bar, Decimal(p), Decimal(p) + 1, Decimal(p), Decimal(p), Decimal("12.50") if i % 2 else None)
        for i, p in enumerate(prices)
    ]
    with store.engine.begin() as connection:
        upsert_bars(connection, "XAUUSD", "H4", bars)
    response = get(api, "/candles/H4", params={"symbol": "XAU/USD"})
    assert CANDLES.dump_json(CANDLES.validate_json(response.content)) == response.content
    items = response.json()
    assert [item["close"] for item in items] == prices[::-1]
    assert [item["volume"] for item in items] == [None, "12.50", None, "12.50", None]
    assert_equal_to_rows(items, stored(store, "H4"), "H4")
    assert items[0]["timestamp"] == "2024-03-04T16:00:00Z"
    assert get(api, "/candles/H4", params={"symbol": "XAGUSD"}).json() == []


def test_provisional_bars_are_marked_and_can_be_left_out(api, store):
    t0 = datetime(2024, 3, 4, 10, tzinfo=UTC)
    bars = [Bar(t0 + i * M15.bar, *(Decimal("2050.5"),) * 4) for i in range(4)]
    with store.engine.begin() as connection:
        # Received 2 minutes after the second bar's close: the newest two are not final yet.
        upsert_bars(connection, "XAUUSD", "M15", bars, final_before=t0 + 2 * M15.bar)
    items = get(api, "/candles/M15").json()
    assert [item["final"] for item in items] == [False, False, True, True]
    assert (
        CANDLES.dump_json(CANDLES.validate_json(get(api, "/candles/M15").content)) == get(api, "/candles/M15").content
    )
    finals = get(api, "/candles/M15", params={"final_only": "true"}).json()
    assert [item["timestamp"] for item in finals] == [iso(t0 + M15.bar), iso(t0)]
    text = get(api, "/candles/M15", params={"final_only": "true", "format": "csv"}).text
    assert [line.split(",")[-1] for line in text.splitlines()] == ["final", "true", "true"]


def test_limit_window_and_default_page(api, backfilled):
    rows = stored(backfilled)
    default = get(api, "/candles/M15")
    assert len(default.json()) == 100
    assert_equal_to_rows(default.json(), rows[:100])
    assert_equal_to_rows(get(api, "/candles/M15", params={"limit": 7}).json(), rows[:7])
    start, end = datetime(2024, 2, 6, 9, tzinfo=UTC), datetime(2024, 2, 6, 12, 30, tzinfo=UTC)
    window = get(api, "/candles/M15", params={"start": "2024-02-06T09:00", "end": "2024-02-06T14:30+02:00"}).json()
    assert_equal_to_rows(window, stored(backfilled, start=start, end=end))
    assert len(window) == 14  # half-open: 09:00 .. 12:15


def test_cursor_paging_has_no_overlaps_or_holes(api, backfilled):
    rows = stored(backfilled)
    seen: list[dict] = []
    pages = 0
    path = "/candles/M15?limit=37&start=2024-02-06&end=2024-02-09"
    while path:
        response = get(api, path)
        assert response.status_code == 200
        page = response.json()
        seen += page
        pages += 1
        link = response.headers.get("link")
        if link:
            assert len(page) == 37
            path = re.fullmatch(r'<(.+)>; rel="next"', link).group(1)
            assert f"before={page[-1]['timestamp'].replace(':', '%3A')}" in path
        else:
            path = None
    window = stored(backfilled, start=datetime(2024, 2, 6, tzinfo=UTC), end=datetime(2024, 2, 9, tzinfo=UTC))
    assert len(window) > 3 * 37  # several full pages to follow, not one empty page
    assert pages == len(window) // 37 + 1  # the last page is the first one not full
    assert_equal_to_rows(seen, window)
    # The cursor by hand, as a client would page back with it.
    first = get(api, "/candles/M15", params={"limit": 50}).json()
    second = get(api, "/candles/M15", params={"limit": 50, "before": first[-1]["timestamp"]}).json()
    assert len(first) == len(second) == 50
    assert_equal_to_rows(first + second, rows[:100])


def test_csv_equals_json(api, backfilled):
    def parse(text: str) -> list[dict]:
        reader = csv.DictReader(io.StringIO(text))
        assert reader.fieldnames == [
            "symbol", "timeframe", "timestamp", "open", "high", "low", "close", "volume", "final"
        ]  # fmt: skip
        return [{**row, "volume": row["volume"] or None, "final": row["final"] == "true"} for row in reader]

    params = {"limit": 250, "start": "2024-02-06"}
    as_json = get(api, "/candles/M15", params=params).json()
    assert len(as_json) == 250  # a full page to compare, not two empty answers
    by_param = get(api, "/candles/M15", params={**params, "format": "csv"})
    by_accept = get(api, "/candles/M15", params=params, headers={"Accept": "text/csv"})
    for response in (by_param, by_accept):
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert parse(response.text) == as_json
    # Without a limit, CSV streams the whole window: every row, as the JSON pages give them.
    everything = get(api, "/candles/M15", params={"format": "csv"})
    rows = stored(backfilled)
    assert len(rows) > params["limit"]  # more than a page: the stream goes past it
    assert_equal_to_rows(parse(everything.text), rows)
    assert get(api, "/candles/M15", params={"format": "csv", "start": "2030-01-01"}).text.count("\n") == 1


def test_a_csv_stream_cut_short_leaves_no_transaction_open(api, backfilled, database_url):
    with requests.get(api + "/candles/M15", params={"format": "csv"}, stream=True, timeout=30) as response:
        next(response.iter_content(64))
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        deadline = time.monotonic() + 10
        while True:
            with engine.connect() as connection:
                open_ = connection.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'xau-pipeline-api' "
                        "AND state LIKE 'idle in transaction%'"
                    )
                ).scalar_one()
            if open_ == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert open_ == 0
    finally:
        engine.dispose()


def test_csv_rows_are_fetched_from_a_server_side_cursor_a_chunk_at_a_time(backfilled, database_url, monkeypatch):
    """What keeps a long CSV stream in bounded memory: FETCH FORWARD <chunk>, never the whole range."""
    monkeypatch.setattr(queries, "STREAM_CHUNK_ROWS", 100)
    engine = queries.read_engine(database_url)
    watcher = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        chunks = queries.stream_rows(engine, 5000, queries.text_rows_query("XAUUSD", "M15", None, None, None, None))
        try:
            sizes = [len(next(chunks))]
            with watcher.connect() as connection:
                (last_query,) = connection.execute(
                    sa.text(
                        "SELECT query FROM pg_stat_activity WHERE application_name = 'xau-pipeline-api' "
                        "AND state = 'idle in transaction'"  # the stream's connection, between two fetches
                    )
                ).scalars()
            fetched = re.match(r"FETCH FORWARD (\d+) FROM", last_query)  # not FETCH FORWARD ALL
            assert fetched and int(fetched.group(1)) <= 100, last_query
            sizes += [len(chunk) for chunk in chunks]
            assert max(sizes) == 100 and sum(sizes) == len(stored(backfilled))
        finally:
            chunks.close()
    finally:
        engine.dispose()
        watcher.dispose()


# ---- GET /candles/{timeframe}/gaps ----------------------------------------------------------------


def test_gaps_name_the_planted_hole_and_agree_with_the_no_gaps_check(api, backfilled, resources, dagster_instance):
    report = get(api, "/candles/M15/gaps", params={"start": "2024-02-07", "end": "2024-02-08"}).json()
    slots = [HOLE[0] + k * M15.bar for k in range(4)]
    assert [(bar["timestamp"], bar["reason"]) for bar in report["missing_bars"]] == [
        (iso(slot), PROVIDER_EMPTY) for slot in slots
    ]
    assert all(bar["fetches"] >= 1 and bar["last_fetched_at"] for bar in report["missing_bars"])
    assert (report["calendar"], report["start"], report["end"]) == (
        "cme_gold",
        "2024-02-07T00:00:00Z",
        "2024-02-08T00:00:00Z",
    )
    assert report["missing_by_reason"] == {NEVER_FETCHED: 0, PROVIDER_EMPTY: 4, "not published yet": 0}

    partitions = daily_partitions("2024-01-01")
    asset = build_candle_asset(GOLD, M15, partitions)  # its checks inside, runnable alone
    result = dg.materialize(
        [asset],
        instance=dagster_instance,
        resources=resources,
        selection=dg.AssetSelection.all_asset_checks(),
        tags={ASSET_PARTITION_RANGE_START_TAG: "2024-02-07", ASSET_PARTITION_RANGE_END_TAG: "2024-02-07"},
    )
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_gaps"]
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    assert not evaluation.passed
    assert (report["expected"], report["stored"], report["missing"], report["off_session"]) == (
        metadata["expected"],
        metadata["present"],
        metadata["missing"],
        metadata["off_session_bars"],
    )
    for reason, count in report["missing_by_reason"].items():
        assert metadata[reason] == count
    for bar in report["missing_bars"]:
        assert (
            f"| {bar['timestamp'][:10]} {bar['timestamp'][11:16]} UTC | {bar['reason']} |" in metadata["missing_bars"]
        )


def test_gaps_default_to_the_last_seven_days_and_tell_never_fetched(api, backfilled):
    report = get(api, "/candles/M15/gaps").json()
    start, end = (datetime.fromisoformat(report[k].replace("Z", "+00:00")) for k in ("start", "end"))
    assert end - start == timedelta(days=7) and abs((datetime.now(UTC) - end).total_seconds()) < 60
    monday = get(api, "/candles/M15/gaps", params={"start": "2024-02-12", "end": "2024-02-13"}).json()
    assert monday["stored"] == 0 and monday["missing"] == monday["expected"] > 80
    assert {bar["reason"] for bar in monday["missing_bars"]} == {NEVER_FETCHED}
    week = get(api, "/candles/H1/gaps", params={"start": "2024-02-05", "end": "2024-02-10"}).json()
    assert [bar["timestamp"] for bar in week["missing_bars"]] == ["2024-02-07T10:00:00Z"]


# ---- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/candles/M5", "bad timeframe 'M5'"),
        ("/candles/M15/gaps", None),
        ("/candles/M15?limit=0", "bad limit '0'"),
        ("/candles/M15?limit=5001", "bad limit '5001'"),
        ("/candles/M15?limit=ten", "bad limit 'ten'"),
        ("/candles/M15?start=2024-02-30", "start '2024-02-30' is not a valid date"),
        ("/candles/M15?start=yesterday", "bad start 'yesterday'"),
        ("/candles/M15?end=2024-01-01T25:00", "bad end '2024-01-01T25:00': use YYYY-MM-DD or YYYY-MM-DDTHH:MM"),
        ("/candles/M15?before=1969-12-31", "bad before '1969-12-31': use YYYY-MM-DD"),
        ("/candles/M15?start=2199-12-31T23:00-05:00", "start '2199-12-31T23:00-05:00' is out of range"),
        (
            "/candles/M15?start=2024-02-02&end=2024-02-01",
            "start 2024-02-02T00:00:00Z is after end 2024-02-01T00:00:00Z",
        ),
        ("/candles/M15/gaps?start=2024-02-02&end=2024-02-01", "is after end"),
        ("/candles/M15/gaps?start=2000-01-01&end=2024-01-01", "longer than 3660 days, the most M15 gaps"),
        ("/candles/H1/gaps?start=1980-01-01&end=2024-01-01", "longer than 14640 days, the most H1 gaps"),
        ("/candles/D1/gaps?start=1970-01-01&end=2199-12-31", "longer than 14640 days, the most D1 gaps"),
        ("/candles/D1/gaps?start=1990-01-01&end=2026-01-01", None),
        ("/candles/M15?format=xml", "bad format 'xml'"),
        ("/candles/M15?symbol=XAU%00USD", "bad symbol 'XAU\\x00USD': use letters, digits"),
        ("/chart/W1", "bad timeframe 'W1'"),
        ("/chart/M15?limit=0", "bad limit '0'"),
    ],
)
def test_bad_input_is_a_400_with_one_clear_line(api, store, path, fragment):
    response = get(api, path)
    if fragment is None:  # good requests among them
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400, response.text
    body = response.json()
    assert list(body) == ["detail"] and fragment in body["detail"], body
    assert "\n" not in body["detail"] and "Traceback" not in response.text


@pytest.mark.parametrize(("name", "days"), [("M15", 3660), ("H1", 14640), ("D1", 14640)])
def test_api_and_cli_take_the_same_longest_gap_window(api, store, capsys, monkeypatch, name, days):
    """One limit: the API and `xau-pipeline gaps` take the same longest window, and refuse one bar
    more with the same line."""
    monkeypatch.setenv("XAU_DATABASE_URL", store.url)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    for end, refused in (
        (start + timedelta(days=days), False),
        (start + timedelta(days=days) + TIMEFRAMES_BY_NAME[name].bar, True),
    ):
        response = get(api, f"/candles/{name}/gaps", params={"start": iso(start), "end": iso(end)})
        status = cli.main(["gaps", name, "--start", iso(start), "--end", iso(end)])
        _, err = capsys.readouterr()
        if not refused:
            assert (response.status_code, status) == (200, 0), (response.text, err)
            continue
        assert (response.status_code, status) == (400, cli.EXIT_USAGE)
        assert f"is longer than {days} days, the most {name} gaps" in err
        assert err == f"error: {response.json()['detail']}\n"


def test_a_symbol_is_stored_under_one_name_whoever_asks(api, store, capsys, monkeypatch):
    """`xau/usd`, `XAU/USD` and `XAUUSD` name one stored series in the API, the CLI and load_candles."""
    from xau_pipeline.interfaces.dataframes import load_candles
    from xau_pipeline.market.symbols import Symbol, stored_name

    assert stored_name("xau/usd") == Symbol("XAU/USD").name == "XAUUSD"
    bar = Bar(datetime(2024, 1, 2, tzinfo=UTC), Decimal("2050"), Decimal("2051"), Decimal("2049"), Decimal("2050.5"))
    with store.engine.begin() as connection:
        upsert_bars(connection, "XAUUSD", "M15", [bar])
    monkeypatch.setenv("XAU_DATABASE_URL", store.url)
    for asked in ("xau/usd", "XAU/USD", "XAUUSD"):
        items = get(api, "/candles/M15", params={"symbol": asked}).json()
        assert [(item["symbol"], item["timestamp"]) for item in items] == [("XAUUSD", "2024-01-02T00:00:00Z")]
        assert len(load_candles("M15", symbol=asked, store=store)) == 1
        assert cli.main(["candles", "M15", "--symbol", asked, "--format", "csv"]) == 0
        out, _ = capsys.readouterr()
        assert "2024-01-02T00:00:00Z" in out


def test_database_down_is_503_without_secrets(session_store):
    with serving_in_thread(UNREACHABLE) as url:
        for path in ("/candles/M15", "/candles/M15?format=csv", "/candles/M15/gaps", "/chart/M15", "/health"):
            response = get(url, path)
            assert response.status_code == 503, (path, response.text)
            assert "hunter2" not in response.text and "Traceback" not in response.text
            detail = response.json()["detail"]
            assert detail.startswith("the candle database is unreachable") and "\n" not in detail, detail
        health = get(url, "/health").json()
        assert (health["status"], health["database"], health["series"]) == ("unavailable", "unreachable", [])
        assert get(url, "/openapi.json").status_code == 200  # what needs no database still answers


def test_a_database_without_the_schema_is_reported_not_migrated(database_url):
    from xau_pipeline_dev.testing import temporary_database

    server = database_url.rsplit("/", 1)[0] + "/postgres"
    with temporary_database(server, "xau_test_empty") as empty, serving_in_thread(empty) as url:
        health = get(url, "/health")
        assert health.status_code == 503
        assert health.json()["database"] == "reachable" and "xau-pipeline migrate" in health.json()["detail"]
        response = get(url, "/candles/M15")
        assert response.status_code == 503 and "no schema yet" in response.json()["detail"]
        engine = sa.create_engine(empty, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                assert not sa.inspect(connection).get_table_names()  # the API created nothing
        finally:
            engine.dispose()


def test_a_read_over_the_statement_timeout_is_a_503(database_url, session_store):
    """A writer holding the candles table locked makes every read wait past the timeout."""
    locker = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with locker.connect() as connection, serving_in_thread(database_url, statement_timeout_ms=300) as url:
            connection.exec_driver_sql("LOCK TABLE candles IN ACCESS EXCLUSIVE MODE")
            for path in ("/candles/M15", "/candles/M15?format=csv", "/candles/M15/gaps", "/chart/M15"):
                response = get(url, path)
                assert response.status_code == 503, (path, response.text)
                assert response.json() == {"detail": "the query took longer than the statement timeout (300 ms)"}
            connection.rollback()
    finally:
        locker.dispose()


def test_reads_are_read_only_with_a_statement_timeout(database_url, session_store):
    engine = queries.read_engine(database_url)
    try:
        with queries.read_only(engine, 1234) as connection:
            assert connection.exec_driver_sql("SHOW transaction_read_only").scalar_one() == "on"
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar_one() == "1234ms"
            with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
                connection.exec_driver_sql("DELETE FROM candles")
        with pytest.raises(sa.exc.OperationalError) as caught, queries.read_only(engine, 50) as connection:
            connection.exec_driver_sql("SELECT pg_sleep(2)")
        assert _database_problem(caught.value, 50, None) == "the query took longer than the statement timeout (50 ms)"
        with queries.read_only(engine, 1000) as connection:  # the session is not left read-only
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar_one() == "1s"
    finally:
        engine.dispose()


# ---- health, docs, token ----------------------------------------------------------------------------


def test_health_reports_each_series_newest_bar_and_its_age(api, backfilled):
    response = get(api, "/health")
    assert response.status_code == 200
    health = response.json()
    assert (health["status"], health["database"]) == ("ok", "reachable")
    by_tf = {item["timeframe"]: item for item in health["series"] if item["symbol"] == "XAUUSD"}
    assert set(by_tf) == {"M15", "H1", "H4", "D1"}
    newest = stored(backfilled)[0].timestamp
    assert by_tf["M15"]["newest_bar"] == iso(newest)
    age = (datetime.now(UTC) - (newest + M15.bar)).total_seconds()
    assert abs(by_tf["M15"]["age_seconds"] - age) < 60
    assert by_tf["D1"] == {
        "symbol": "XAUUSD",
        "timeframe": "D1",
        "newest_bar": None,
        "age_seconds": None,
        # no XAU_HISTORY_START given to this app: no history share (test_catch_up checks it)
        "expected_bars": None,
        "stored_bars": None,
        "history_share": None,
        "state": "stale",
        "next_bar_due": by_tf["D1"]["next_bar_due"],
    }
    assert by_tf["M15"]["state"] == "stale"  # the week stored is long past
    due = datetime.fromisoformat(by_tf["M15"]["next_bar_due"].replace("Z", "+00:00"))
    assert timedelta(0) < due - datetime.now(UTC) <= timedelta(days=3)


def test_openapi_and_docs(api, store):
    schema = get(api, "/openapi.json").json()
    assert {"/candles/{timeframe}", "/candles/{timeframe}/gaps", "/health", "/chart/{timeframe}"} <= set(
        schema["paths"]
    )
    operation = schema["paths"]["/candles/{timeframe}"]["get"]
    assert {"200", "400", "503"} <= set(operation["responses"]) and "422" not in operation["responses"]
    assert "CandleResponse" in schema["components"]["schemas"]
    assert "swagger" in get(api, "/docs").text.lower()


def test_the_token_rule(database_url, session_store, monkeypatch):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.org")
    check_bind("127.0.0.1", None)
    with pytest.raises(ValueError, match="without a bearer token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ValueError, match="XAU_API_TOKEN"), serving_in_thread(database_url, host="0.0.0.0"):
        pass
    # The command refuses too, before binding anything (exit status 2).
    monkeypatch.delenv("XAU_API_TOKEN", raising=False)
    monkeypatch.setenv("XAU_DATABASE_URL", database_url)
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "0"]) == cli.EXIT_USAGE

    token = "t0ken-for-the-test"
    with serving_in_thread(database_url, host="0.0.0.0", token=token) as url:
        for path in ("/candles/M15", "/candles/M15/gaps", "/chart/M15"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
                response = get(url, path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert token not in response.text and response.headers["www-authenticate"] == "Bearer"
            assert get(url, path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert get(url, "/health").status_code == 200  # load balancers ask without a token
        assert get(url, "/openapi.json").json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_chart_urls_are_in_the_asset_metadata():
    settings = Settings.from_env({"XAU_API_HOST": "0.0.0.0", "XAU_API_PORT": "8123"})
    assert chart_url(settings.read_api_url, "XAUUSD", "H1") == "http://127.0.0.1:8123/chart/H1?symbol=XAUUSD"
    asset = build_candle_asset(GOLD, H1, daily_partitions("2024-01-01"), settings)
    spec = asset.specs_by_key[asset.key]
    assert spec.metadata["chart"].url == "http://127.0.0.1:8123/chart/H1?symbol=XAUUSD"
    assert "http://127.0.0.1:8123/chart/H1?symbol=XAUUSD" in spec.description


@pytest.mark.slow
@pytest.mark.process
def test_xau_pipeline_serve_serves_until_interrupted(database_url, session_store):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XAU_DATABASE_URL": database_url, "XAU_API_PORT": str(port)}
    env.pop("XAU_API_HOST", None)
    env.pop("XAU_API_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "xau_pipeline.interfaces.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        process.send_signal(2)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}" in output
