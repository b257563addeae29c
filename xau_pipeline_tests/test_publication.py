"""Bars under Twelve Data's publication delay: nothing provisional taken as final, nothing late called missing.

The stand-in publishes each bar 100 s after its close here, and serves it before that either not at
all or with provisional values; the clocks of the stand-in and of the client are stopped at chosen
moments around a close (Wednesday 13 March 2024, the 09:45 M15 bar closing at 10:00:00, published
at 10:01:40).
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from xau_pipeline.clock import utc_now
from xau_pipeline.defs.automation.publication_sensor import unsettled
from xau_pipeline.ingest import ingest
from xau_pipeline.market.bar_grid import utc_grid
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.publication import PUBLICATION_WINDOW, REASK_EVERY, SETTLE
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.freshness import FRESH, STALE, WAITING, freshness
from xau_pipeline.store.gaps import NOT_PUBLISHED, PROVIDER_EMPTY
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline.twelvedata.retry_policy import RetryPolicy
from xau_pipeline_tests.conftest import TEST_API_KEY

M15 = TIMEFRAMES_BY_NAME["M15"]
GOLD = Symbol("XAU/USD")
DAY = datetime(2024, 3, 13, tzinfo=UTC)
BAR = DAY + timedelta(hours=9, minutes=45)  # closes 10:00:00
CLOSE = BAR + M15.bar
DELAY = timedelta(seconds=100)


def at(stand_in, moment: datetime) -> TwelveDataClient:
    """A client whose clock, and the stand-in's, read `moment`."""
    stand_in.configure(time_offset_seconds=(moment - utc_now()).total_seconds())
    return TwelveDataClient(
        TEST_API_KEY,
        stand_in.url,
        timeout_seconds=5,
        clock=lambda: moment,
        retry=RetryPolicy(first_pause=timedelta(seconds=0.01)),
    )


def fetch(stand_in, store, moment: datetime):
    report = ingest(at(stand_in, moment), store, GOLD, M15, DAY, DAY + timedelta(days=1))
    assert report.error is None
    return report


def stored(store, slot: datetime):
    with store.engine.connect() as connection:
        return connection.execute(
            sa.text('SELECT close, final FROM candles WHERE timeframe = :tf AND "timestamp" = :t'),
            {"tf": M15.name, "t": slot},
        ).first()


def reason(store, slot: datetime, now: datetime) -> str | None:
    report = store.gaps(GOLD.name, M15, calendar(GOLD.calendar), (DAY, DAY + timedelta(days=1)), now)
    return next((gap.reason for gap in report.gaps if gap.slot == slot), None)


def published(stand_in, before: str):
    stand_in.configure(
        publication_delay_seconds=(DELAY.total_seconds(), DELAY.total_seconds()),
        publication_late_share=0.0,
        before_publication=before,
    )
    assert stand_in.published_at(GOLD.api_symbol, M15.interval, BAR) == CLOSE + DELAY


def test_a_bar_absent_before_its_publication_is_not_published_yet_then_stored_final(stand_in, store):
    published(stand_in, "absent")
    early = CLOSE + timedelta(seconds=40)
    first = fetch(stand_in, store, early)
    assert stored(store, BAR) is None and first.calls == 1
    assert stored(store, BAR - M15.bar).final  # closed 15 min before: published and final
    # Late, not missing: not a provider gap, and asked for again.
    assert reason(store, BAR, early) == NOT_PUBLISHED
    assert store.missing(GOLD.name, M15, BAR, CLOSE) == [(BAR, CLOSE)]
    later = CLOSE + SETTLE + timedelta(seconds=10)
    second = fetch(stand_in, store, later)
    assert second.calls == 1
    close, final = stored(store, BAR)
    truth = stand_in.bars(GOLD.api_symbol, M15.interval, BAR, CLOSE, final=True)[0]
    assert (close, final) == (truth["close"], True)
    assert reason(store, BAR, later) is None
    # Settled: a third fetch pays for nothing.
    assert fetch(stand_in, store, later + timedelta(minutes=1)).calls == 0


def test_a_provisional_bar_is_stored_not_final_then_corrected_and_made_final(stand_in, store):
    published(stand_in, "provisional")
    early = CLOSE + timedelta(seconds=40)
    first = fetch(stand_in, store, early)
    provisional_close, final = stored(store, BAR)
    truth = stand_in.bars(GOLD.api_symbol, M15.interval, BAR, CLOSE, final=True)[0]
    assert final is False and provisional_close != truth["close"]
    assert first.provisional == 1
    assert store.missing(GOLD.name, M15, BAR, CLOSE) == [(BAR, CLOSE)]  # asked for again
    second = fetch(stand_in, store, CLOSE + SETTLE + timedelta(seconds=10))
    assert stored(store, BAR) == (truth["close"], True)
    assert second.counts.updated == 1 and second.provisional == 0


def test_a_final_bar_is_never_made_provisional_again(stand_in, store):
    published(stand_in, "absent")
    fetch(stand_in, store, CLOSE + SETTLE + timedelta(seconds=10))
    assert stored(store, BAR).final
    # Asked again by force 110 s after its close: in time for its publication, too soon to be final.
    soon = CLOSE + timedelta(seconds=110)
    report = ingest(at(stand_in, soon), store, GOLD, M15, DAY, DAY + timedelta(days=1), force=True)
    assert report.error is None and report.provisional >= 1
    assert stored(store, BAR).final


def test_a_bar_that_never_comes_is_a_provider_gap_only_after_the_publication_window(stand_in, store):
    published(stand_in, "absent")
    stand_in.configure(holes=[(BAR, CLOSE)])
    after_settle = CLOSE + SETTLE + timedelta(seconds=10)
    fetch(stand_in, store, after_settle)
    assert reason(store, BAR, after_settle) == NOT_PUBLISHED
    past_window = CLOSE + PUBLICATION_WINDOW + timedelta(seconds=10)
    last = fetch(stand_in, store, past_window)
    assert last.calls == 1
    assert reason(store, BAR, past_window) == PROVIDER_EMPTY
    assert fetch(stand_in, store, past_window + timedelta(minutes=5)).calls == 0


def test_the_publication_sensor_asks_again_only_when_due(stand_in, store):
    published(stand_in, "absent")
    asked = CLOSE + timedelta(seconds=90)
    fetch(stand_in, store, asked)  # before its publication: absent
    grid = utc_grid(M15.bar)
    (pending,) = unsettled(store, GOLD, M15, CLOSE + SETTLE + timedelta(seconds=5), grid)
    assert (pending.slot, pending.last_asked, pending.due) == (BAR, asked, False)
    due_at = asked + REASK_EVERY
    (pending,) = unsettled(store, GOLD, M15, due_at, grid)
    assert pending.due
    fetch(stand_in, store, due_at)  # published by then
    assert unsettled(store, GOLD, M15, due_at + timedelta(seconds=30), grid) == []


@pytest.mark.parametrize(
    ("newest_stored", "now", "state"),
    [
        (BAR, CLOSE + timedelta(minutes=5), FRESH),
        (BAR - M15.bar, CLOSE + timedelta(minutes=5), WAITING),  # 09:45 closed 5 min ago: late, not stale
        (BAR - M15.bar, CLOSE + PUBLICATION_WINDOW + timedelta(seconds=1), STALE),
        (None, CLOSE, STALE),
    ],
)
def test_fresh_tells_waiting_for_publication_from_stale(newest_stored, now, state):
    found = freshness(calendar(GOLD.calendar), utc_grid(M15.bar), newest_stored, now)
    assert found.state == state and found.ok == (state != STALE)
    # The next bar: the one forming at `now`, fetched SETTLE after its close.
    forming = utc_grid(M15.bar).slot_of(now)
    assert found.next_due == forming[1] + SETTLE


def test_the_publication_sensor_requests_a_live_run_for_a_late_bar(
    stand_in, store, resources, monkeypatch, dagster_instance
):
    import dagster as dg

    from xau_pipeline.defs.automation import publication_sensor
    from xau_pipeline.defs.candles.asset_factory import build_candle_asset, kind_of_work
    from xau_pipeline.defs.candles.partitions import daily_partitions
    from xau_pipeline.market.publication import LIVE_TAG

    published(stand_in, "absent")
    asked = CLOSE + timedelta(seconds=90)
    fetch(stand_in, store, asked)  # the schedule's call came before the publication
    partitions = daily_partitions("2024-03-11")
    asset = build_candle_asset(GOLD, M15, partitions)
    sensor = publication_sensor.build_publication_sensor(M15, {GOLD: asset}, partitions)
    defs = dg.Definitions(assets=[asset], sensors=[sensor], resources=resources)

    def tick(at: datetime):
        monkeypatch.setattr(publication_sensor, "utc_now", lambda: at)
        with dg.build_sensor_context(
            instance=dagster_instance, repository_def=defs.get_repository_def(), resources=defs.resources
        ) as context:
            return sensor.evaluate_tick(context)

    early = tick(asked + REASK_EVERY - timedelta(seconds=5))
    assert not early.run_requests and "1 bar(s) not final yet" in early.skip_message
    (request,) = tick(asked + REASK_EVERY).run_requests
    assert request.partition_key == "2024-03-13" and request.asset_selection == [asset.key]
    assert request.tags[LIVE_TAG] == "xauusd/candles_m15"
    assert kind_of_work(request.tags | {"dagster/sensor_name": sensor.name}) == "schedule"


def test_the_chart_draws_provisional_bars_apart_marks_the_last_price_and_leaves_out_closures():
    from types import SimpleNamespace

    from xau_pipeline.interfaces.http import chart

    price = Decimal("2050.5")
    rows = [
        SimpleNamespace(timestamp=BAR - M15.bar, open=price, high=price, low=price, close=price, final=True),
        SimpleNamespace(timestamp=BAR, open=price, high=price, low=price, close=price + 1, final=False),
    ]
    friday_close, sunday_open = datetime(2024, 3, 15, 21, tzinfo=UTC), datetime(2024, 3, 17, 22, tzinfo=UTC)
    sessions = [(datetime(2024, 3, 14, 22, tzinfo=UTC), friday_close), (sunday_open, datetime(2024, 3, 18, tzinfo=UTC))]
    closures = chart.closures(sessions, M15.bar)
    assert closures == [(friday_close, sunday_open)]
    fig = chart.figure("XAUUSD", "M15", rows, set(), None, closures)
    assert [trace.name for trace in fig.data] == ["bars (1)", "not final yet (1)"]
    (line,) = fig.layout.shapes
    assert line.y0 == float(price + 1)
    assert fig.layout.annotations[0].text == "last 2051.5 (not final yet)"
    assert fig.layout.xaxis.rangebreaks[0].bounds == ("2024-03-15T21:00:00Z", "2024-03-17T22:00:00Z")


def test_a_bar_taken_as_final_but_served_provisional_is_corrected_by_the_next_live_call(stand_in, store):
    # Published 5 minutes after its close: the schedule's call 2 minutes after it gets provisional values.
    stand_in.configure(
        publication_delay_seconds=(300.0, 300.0), publication_late_share=0.0, before_publication="provisional"
    )
    first = fetch(stand_in, store, CLOSE + SETTLE + timedelta(seconds=5))
    assert first.calls == 1
    truth = stand_in.bars(GOLD.api_symbol, M15.interval, BAR, CLOSE, final=True)[0]
    taken_close, final = stored(store, BAR)
    assert final and taken_close != truth["close"]  # what a time rule cannot tell
    # The next bar's call, 15 minutes on, asks for the bar before it too: one call, corrected.
    second = fetch(stand_in, store, CLOSE + M15.bar + SETTLE + timedelta(seconds=5))
    assert second.calls == 1 and second.counts.updated >= 1
    assert stored(store, BAR) == (truth["close"], True)


def test_an_outage_is_not_re_asked_every_40_seconds(stand_in, store):
    """The bar before is missing too: the feed is down, not late; the repair sensor's backoff handles it."""
    published(stand_in, "absent")
    stand_in.configure(holes=[(BAR - M15.bar, CLOSE)])
    asked = CLOSE + timedelta(seconds=90)
    fetch(stand_in, store, asked)
    (pending,) = unsettled(store, GOLD, M15, asked + REASK_EVERY, utc_grid(M15.bar))
    assert pending.slot == BAR and not pending.due
