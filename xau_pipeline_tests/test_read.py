from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from xau_pipeline.interfaces.dataframes import load_candles, newest_candles, parse_time
from xau_pipeline.market.bars import Bar
from xau_pipeline.store.upsert import upsert_bars

UTC = UTC
T0 = datetime(2024, 1, 2, tzinfo=UTC)
M15 = timedelta(minutes=15)
PRICES = ["2050.12345", "1999.10", "2001", "0.00001", "2100.5"]


def m15_bars(n: int, base: str = "2050.12345") -> list[Bar]:
    price = Decimal(base)
    return [
        Bar(
            T0 + i * M15,
            price + i,
            price + i + 1,
            price + i - 1,
            price + i + Decimal("0.5"),
            Decimal("12.50") if i % 2 else None,
        )
        for i in range(n)
    ]


def insert(store, bars, symbol="XAUUSD", timeframe="M15"):
    with store.engine.begin() as connection:
        upsert_bars(connection, symbol, timeframe, bars)


def test_frame_has_exact_decimals_utc_timestamps_ascending(store):
    bars = [
        Bar(T0 + i * M15, Decimal(p), Decimal(p), Decimal(p), Decimal(p), Decimal("3.10") if i else None)
        for i, p in enumerate(PRICES)
    ]
    insert(store, bars)
    df = load_candles("m15", database_url=store.url)
    assert list(df.columns) == ["timestamp", "open", "high", "low", "close", "volume", "final"]
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"
    assert list(df["timestamp"]) == [pd.Timestamp(b.open_time) for b in bars]
    assert df["final"].dtype == bool and df["final"].all()
    for column in ("open", "high", "low", "close", "volume"):
        assert df[column].dtype == object
    assert [str(v) for v in df["close"]] == PRICES
    assert all(type(v) is Decimal for v in df["open"])
    assert df["volume"].iloc[0] is None and str(df["volume"].iloc[1]) == "3.10"


def test_window_is_half_open_and_accepts_strings_offsets_and_naive_datetimes(store):
    insert(store, m15_bars(8))
    df = load_candles("M15", "2024-01-02T00:30", datetime(2024, 1, 2, 1, 15), database_url=store.url)
    assert list(df["timestamp"]) == [pd.Timestamp(T0 + k * M15) for k in (2, 3, 4)]
    df = load_candles("M15", "2024-01-02T02:30+02:00", "2024-01-02T00:45:00Z", database_url=store.url)
    assert list(df["timestamp"]) == [pd.Timestamp(T0 + 2 * M15)]
    assert len(load_candles("M15", end="2024-01-02", database_url=store.url)) == 0
    assert len(load_candles("M15", start="2024-01-02", database_url=store.url)) == 8


def test_series_are_kept_apart_and_url_comes_from_the_environment(store, monkeypatch):
    insert(store, m15_bars(4))
    insert(store, m15_bars(2, "25.5"), symbol="XAGUSD")
    insert(store, m15_bars(3), timeframe="H1")
    monkeypatch.setenv("XAU_DATABASE_URL", store.url)
    assert len(load_candles("M15")) == 4
    assert len(load_candles("H1")) == 3
    silver = load_candles("M15", symbol="xag/usd")
    assert [str(v) for v in silver["open"]] == ["25.5", "26.5"]


def test_limit_keeps_the_oldest_and_newest_candles_are_newest_first(store):
    insert(store, m15_bars(10))
    assert list(load_candles("M15", limit=3, database_url=store.url)["timestamp"]) == [
        pd.Timestamp(T0 + k * M15) for k in (0, 1, 2)
    ]
    newest = newest_candles("M15", end=T0 + 9 * M15, limit=3, database_url=store.url)
    assert list(newest["timestamp"]) == [pd.Timestamp(T0 + k * M15) for k in (8, 7, 6)]


def test_provisional_bars_are_marked_and_can_be_left_out(store):
    with store.engine.begin() as connection:
        upsert_bars(connection, "XAUUSD", "M15", m15_bars(4), final_before=T0 + 2 * M15)
    df = load_candles("M15", database_url=store.url)
    assert list(df["final"]) == [True, True, False, False]
    finals = load_candles("M15", database_url=store.url, final_only=True)
    assert list(finals["timestamp"]) == [pd.Timestamp(T0), pd.Timestamp(T0 + M15)]
    assert list(newest_candles("M15", database_url=store.url, final_only=True, limit=1)["timestamp"]) == [
        pd.Timestamp(T0 + M15)
    ]


def test_empty_result_keeps_the_columns_and_types(store):
    df = load_candles("D1", database_url=store.url)
    assert df.empty and list(df.columns) == ["timestamp", "open", "high", "low", "close", "volume", "final"]
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"timeframe": "M5"}, "unknown timeframe 'M5'"),
        ({"timeframe": "H1", "start": "2024-13-01"}, "not a valid date"),
        ({"timeframe": "H1", "start": "yesterday"}, "not a date"),
        ({"timeframe": "H1", "start": "2024-02-01", "end": "2024-01-01"}, "is after end"),
        ({"timeframe": "H1", "limit": 0}, "limit must be a positive integer"),
    ],
)
def test_bad_arguments_raise_value_error_before_connecting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_candles(**kwargs, database_url="postgresql://xau:hunter2@127.0.0.1:1/nowhere")


def test_parse_time_formats():
    assert parse_time("2024-03-05") == datetime(2024, 3, 5, tzinfo=UTC)
    assert parse_time("2024-03-05T07:08:09") == datetime(2024, 3, 5, 7, 8, 9, tzinfo=UTC)
    assert parse_time("2024-03-05T07:08-05:00") == datetime(2024, 3, 5, 12, 8, tzinfo=UTC)
    assert parse_time("2024-03-05T07:08Z") == datetime(2024, 3, 5, 7, 8, tzinfo=UTC)
    for bad in ("2024-3-5", "05/03/2024", "2024-03-05 07:08", "2024-03-05T7", ""):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_every_form_of_the_candle_read_selects_the_same_bars(store):
    """One read query: load_candles, the API's JSON page and CSV rows, and CandleStore.newest pick
    the same bars of a window (final ones only where asked), in their order."""
    import json

    from xau_pipeline.interfaces.http import queries
    from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME

    bars = m15_bars(10)
    with store.engine.begin() as connection:  # the last four not final yet
        upsert_bars(connection, "XAUUSD", "M15", bars, final_before=T0 + 6 * M15)
    start, end, before = T0 + M15, T0 + 9 * M15, T0 + 8 * M15
    for final_only, expected in ((False, range(1, 8)), (True, range(1, 6))):
        newest_first = [T0 + i * M15 for i in reversed(expected)]
        frame = load_candles("M15", start, before, database_url=store.url, final_only=final_only)
        assert list(frame["timestamp"]) == [pd.Timestamp(t) for t in reversed(newest_first)]
        with queries.read_only(store.engine, 5000) as connection:
            page = queries.json_page(connection, "XAUUSD", "M15", start, end, before, 100, final_only)
            text = connection.execute(queries.text_rows_query("XAUUSD", "M15", start, end, before, None, final_only))
            csv_times = [row.timestamp for row in text]
        assert [parse_time(item["timestamp"]) for item in json.loads(page.body)] == newest_first
        assert [parse_time(t) for t in csv_times] == newest_first
    newest = store.newest("XAUUSD", TIMEFRAMES_BY_NAME["M15"], start, before, limit=3)
    assert [row.timestamp for row in newest] == [T0 + i * M15 for i in (7, 6, 5)]
