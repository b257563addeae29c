from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from xau_pipeline.market.bars import Bar
from xau_pipeline.store import upsert
from xau_pipeline.store.upsert import upsert_bars

UTC = UTC
T0 = datetime(2024, 1, 2, tzinfo=UTC)
STEP = timedelta(minutes=15)


def bars(n: int, base: str = "2050.12345") -> list[Bar]:
    price = Decimal(base)
    return [Bar(T0 + i * STEP, price + i, price + i + 1, price + i - 1, price + i + Decimal("0.5")) for i in range(n)]


def write(store, rows, now=None):
    with store.engine.begin() as connection:
        return upsert_bars(connection, "XAUUSD", "M15", rows, now)


def stored(store):
    with store.engine.connect() as connection:
        return list(connection.execute(sa.text('SELECT * FROM candles ORDER BY "timestamp"')).mappings())


def test_new_rows_are_inserted_exactly(store):
    rows = bars(20)
    counts = write(store, rows)
    assert (counts.inserted, counts.updated, counts.unchanged) == (20, 0, 0)
    got = stored(store)
    assert [(r["timestamp"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in got] == [
        (b.open_time, b.open, b.high, b.low, b.close, None) for b in rows
    ]
    assert str(got[0]["open"]) == "2050.12345"


def test_same_rows_again_touch_nothing(store):
    write(store, bars(20), now=T0)
    before = stored(store)
    counts = write(store, bars(20), now=T0 + timedelta(days=1))
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 20)
    assert stored(store) == before


def test_equal_value_written_with_other_digits_is_unchanged(store):
    write(store, bars(1, "2050.10"))
    counts = write(store, bars(1, "2050.1"))
    assert counts.unchanged == 1


def test_revised_bar_is_updated(store):
    write(store, bars(5), now=T0)
    revised = bars(5)
    revised[2] = Bar(revised[2].open_time, Decimal("1"), Decimal("3"), Decimal("0.5"), Decimal("2.00001"), Decimal("7"))
    counts = write(store, revised, now=T0 + timedelta(days=1))
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 4)
    got = stored(store)
    assert (got[2]["close"], got[2]["volume"], got[2]["updated_at"]) == (
        Decimal("2.00001"),
        Decimal("7"),
        T0 + timedelta(days=1),
    )
    assert {r["updated_at"] for i, r in enumerate(got) if i != 2} == {T0}


def test_mixed_batch_counts_each_kind(store):
    write(store, bars(10)[:6])
    mixed = bars(10)
    mixed[0] = Bar(mixed[0].open_time, Decimal("9"), Decimal("9"), Decimal("9"), Decimal("9"))
    counts = write(store, mixed)
    assert (counts.inserted, counts.updated, counts.unchanged) == (4, 1, 5)
    assert len(stored(store)) == 10


def test_a_racing_writer_falls_back_to_on_conflict(store, monkeypatch):
    """If rows appear between the diff and the COPY, they are merged, not duplicated or lost."""
    write(store, bars(10)[:4])
    monkeypatch.setattr(upsert, "_stored_values", lambda *args: {})
    counts = write(store, bars(10))
    assert (counts.inserted, counts.updated, counts.unchanged) == (6, 0, 4)
    assert len(stored(store)) == 10


def test_a_failed_transaction_leaves_nothing(store):
    with pytest.raises(RuntimeError), store.engine.begin() as connection:
        upsert_bars(connection, "XAUUSD", "M15", bars(50))
        raise RuntimeError("the write after the upsert failed")
    assert stored(store) == []
