from datetime import timedelta

import pytest
import sqlalchemy as sa

from xau_pipeline.defs.resources import CandleStoreResource
from xau_pipeline.market.bars import FetchedWindow
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.candle_store import CandleStore, SchemaNotCurrentError, StoreUnavailableError
from xau_pipeline.store.migrate import head_revision
from xau_pipeline_dev.testing import temporary_database
from xau_pipeline_tests.test_upsert import T0, bars

H1 = TIMEFRAMES_BY_NAME["H1"]
M15 = TIMEFRAMES_BY_NAME["M15"]
DAY = timedelta(days=1)


def test_fetched_closed_window_is_no_longer_missing(store):
    window = FetchedWindow(T0, T0 + DAY, fetched_at=T0 + 2 * DAY, bars=0)
    store.write("XAUUSD", H1, [], [window])
    assert store.missing("XAUUSD", H1, T0 - DAY, T0 + 2 * DAY) == [(T0 - DAY, T0), (T0 + DAY, T0 + 2 * DAY)]
    assert store.missing("XAUUSD", M15, T0, T0 + DAY) == [(T0, T0 + DAY)]
    assert store.missing("XAGUSD", H1, T0, T0 + DAY) == [(T0, T0 + DAY)]


def test_bars_still_forming_when_fetched_stay_missing(store):
    """Fetched at 10:30, an H1 window covers only bars that had closed: those opening before 09:30."""
    fetched_at = T0 + timedelta(hours=10, minutes=30)
    store.write("XAUUSD", H1, [], [FetchedWindow(T0, T0 + DAY, fetched_at, 0)])
    assert store.missing("XAUUSD", H1, T0, T0 + DAY) == [(fetched_at - H1.bar, T0 + DAY)]


def test_write_is_all_or_nothing(store):
    broken = FetchedWindow(T0, T0 + DAY, T0 + 2 * DAY, bars=None)  # violates NOT NULL after the upsert ran
    with pytest.raises(sa.exc.IntegrityError):
        store.write("XAUUSD", M15, bars(30), [broken])
    assert store.summary("XAUUSD", M15, T0, T0 + DAY)[0] == 0
    assert store.missing("XAUUSD", M15, T0, T0 + DAY) == [(T0, T0 + DAY)]


def test_summary_and_newest(store):
    rows = bars(8)
    store.write("XAUUSD", M15, rows, [])
    assert store.summary("XAUUSD", M15, T0, T0 + DAY) == (8, rows[0].open_time, rows[-1].open_time)
    newest = store.newest("XAUUSD", M15, T0, T0 + DAY, limit=3)
    assert [r.timestamp for r in newest] == [b.open_time for b in reversed(rows[-3:])]


def test_unreachable_database_is_a_clear_error():
    store = CandleStore("postgresql://xau:hunter2@127.0.0.1:1/nowhere")  # opening connects to nothing
    for attempt in (store.migrate, lambda: store.summary("XAUUSD", M15, T0, T0 + DAY)):
        with pytest.raises(StoreUnavailableError, match="cannot reach the candle database") as info:
            attempt()
        assert "hunter2" not in str(info.value)


def test_opening_a_store_does_not_migrate_and_an_unmigrated_one_says_so(database_url):
    with temporary_database(database_url, "xau_unmigrated") as url:
        store = CandleStore(url)
        assert store.schema_revision() is None
        with pytest.raises(SchemaNotCurrentError, match="run `xau-pipeline migrate`"):
            CandleStoreResource(database_url=url).store()
        assert store.schema_revision() is None  # still nothing: no migration as a side effect
        assert store.migrate() == head_revision()
        CandleStoreResource(database_url=url).store().require_current_schema()
