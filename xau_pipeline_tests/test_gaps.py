from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from xau_pipeline.market.bars import Bar, FetchedWindow
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.gaps import NEVER_FETCHED, NOT_PUBLISHED, PROVIDER_EMPTY, find_gaps
from xau_pipeline.store.series_grid import detect_phase
from xau_pipeline.store.upsert import upsert_bars

UTC = UTC
CME = calendar("cme_gold")
M15, H4 = TIMEFRAMES_BY_NAME["M15"], TIMEFRAMES_BY_NAME["H4"]
WEEK = (datetime(2024, 3, 10, tzinfo=UTC), datetime(2024, 3, 17, tzinfo=UTC))
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def bar(t: datetime) -> Bar:
    return Bar(t, Decimal("2150.5"), Decimal("2151"), Decimal("2150"), Decimal("2150.75"))


def store_bars(store, timeframe, times):
    with store.engine.begin() as connection:
        upsert_bars(connection, "XAUUSD", timeframe.name, [bar(t) for t in sorted(times)])


def gaps(store, timeframe=M15, window=WEEK, now=NOW, phase=None):
    with store.engine.connect() as connection:
        return find_gaps(connection, "XAUUSD", timeframe.name, timeframe.bar, CME, *window, now, phase)


def test_a_complete_week_has_no_gaps(store):
    slots = CME.expected_slots(*WEEK, M15.bar)
    store_bars(store, M15, slots)
    report = gaps(store)
    assert (report.expected, report.stored, report.missing, report.off_session) == (len(slots), len(slots), 0, 0)
    assert report.expected == 92 * 5  # five 23-hour trade dates: Sun 22:00 to Fri 21:00 UTC in US summer time


def test_one_deleted_bar_is_exactly_the_gap(store):
    slots = CME.expected_slots(*WEEK, M15.bar)
    deleted = slots[123]
    store_bars(store, M15, [s for s in slots if s != deleted])
    report = gaps(store)
    assert [(g.slot, g.reason) for g in report.gaps] == [(deleted, NEVER_FETCHED)]


def test_a_wholly_missing_day_is_found_even_with_nothing_around_it(store):
    """The expected series comes from the calendar over the window, not from the rows that exist."""
    report = gaps(store, window=(datetime(2024, 3, 13, tzinfo=UTC), datetime(2024, 3, 14, tzinfo=UTC)))
    assert report.missing == report.expected == 92


def test_weekend_bars_are_off_session_not_gaps(store):
    slots = CME.expected_slots(*WEEK, M15.bar)
    saturday = datetime(2024, 3, 16, 12, tzinfo=UTC)
    store_bars(store, M15, [*slots, saturday])
    report = gaps(store)
    assert (report.missing, report.off_session, report.stored) == (0, 1, len(slots) + 1)


def test_gaps_are_classified(store):
    day = (datetime(2024, 3, 13, tzinfo=UTC), datetime(2024, 3, 14, tzinfo=UTC))
    slots = CME.expected_slots(*day, M15.bar)
    fetched_empty = slots[10]
    # Fetched up to 12:00 (closed), nothing for slot 10; never fetched after 12:00; "now" is 15:07.
    store.write(
        "XAUUSD",
        M15,
        [bar(s) for s in slots if s != fetched_empty and s < day[0] + timedelta(hours=12)],
        [FetchedWindow(day[0], day[0] + timedelta(hours=12), NOW, 47)],
    )
    now = day[0] + timedelta(hours=15, minutes=7)
    report = gaps(store, window=(day[0], now), now=now)
    reasons = {g.slot: g.reason for g in report.gaps}
    assert reasons[fetched_empty] == PROVIDER_EMPTY
    assert reasons[day[0] + timedelta(hours=13)] == NEVER_FETCHED
    # Closed 7 minutes before "now", within the publication window: late, not missing.
    assert reasons[day[0] + timedelta(hours=14, minutes=45)] == NOT_PUBLISHED
    # Still forming: neither expected nor missing.
    assert day[0] + timedelta(hours=15) not in reasons
    assert report.expected == len([s for s in slots if s < day[0] + timedelta(hours=15)])
    assert report.count(NOT_PUBLISHED) == 1 and report.count(PROVIDER_EMPTY) == 1


def test_the_4h_phase_is_read_off_the_stored_bars(store):
    """Twelve Data's 4h phase is undocumented: with bars at 01:00, 05:00, ... the grid follows them."""
    phased = CME.expected_slots(*WEEK, H4.bar, phase=timedelta(hours=1))
    store_bars(store, H4, phased)
    with store.engine.connect() as connection:
        assert detect_phase(connection, "XAUUSD", "H4", H4.bar) == timedelta(hours=1)
    report = gaps(store, timeframe=H4)
    assert (report.missing, report.expected, report.phase) == (0, len(phased), timedelta(hours=1))
    with store.engine.begin() as connection:
        connection.execute(sa.text('DELETE FROM candles WHERE "timestamp" = :t'), {"t": phased[3]})
    assert [g.slot for g in gaps(store, timeframe=H4).gaps] == [phased[3]]
