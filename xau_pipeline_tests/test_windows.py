from datetime import datetime, timedelta, timezone

import pytest

from xau_pipeline.market_calendar import expected_slots
from xau_pipeline.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.twelvedata.windows import MAX_BARS_PER_CALL, plan_requests, subtract

UTC = timezone.utc


def t(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("covered", "missing"),
    [
        ([], [(t(1), t(10))]),
        ([(t(1), t(10))], []),
        ([(t(3), t(5))], [(t(1), t(3)), (t(5), t(10))]),
        ([(t(4), t(6)), (t(2), t(3)), (t(5), t(7))], [(t(1), t(2)), (t(3), t(4)), (t(7), t(10))]),
        ([(t(9), t(12)), (datetime(2023, 12, 1, tzinfo=UTC), t(2))], [(t(2), t(9))]),
    ],
)
def test_subtract(covered, missing):
    """Overlapping, unordered and out-of-window coverage all reduce the window correctly."""
    assert subtract((t(1), t(10)), covered) == missing


@pytest.mark.parametrize(
    ("timeframe", "days", "calls"),
    [("M15", 90, 2), ("D1", 366, 1), ("H1", 366, 2), ("H4", 366, 1)],
)
def test_plan_stays_within_5000_bars_in_few_calls(timeframe, days, calls):
    """Windows are sized by the bars the market can hold, never more than 5000, in the fewest calls."""
    tf = TIMEFRAMES_BY_NAME[timeframe]
    start = t(1)
    plan = plan_requests([(start, start + timedelta(days=days))], tf.bar)
    assert len(plan) == calls
    assert plan[0][0] == start and plan[-1][1] == start + timedelta(days=days)
    assert all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
    assert all(expected_slots(s, e, tf.bar) <= MAX_BARS_PER_CALL for s, e in plan)


def test_neighbouring_gaps_share_a_call():
    tf = TIMEFRAMES_BY_NAME["H1"]
    gaps = [(t(2), t(3)), (t(5), t(6)), (t(8, 12), t(9))]
    assert plan_requests(gaps, tf.bar) == [(t(2), t(9))]


def test_far_gaps_get_their_own_calls():
    tf = TIMEFRAMES_BY_NAME["M15"]
    far = datetime(2024, 6, 1, tzinfo=UTC)
    gaps = [(t(2), t(3)), (far, far + timedelta(days=1))]
    assert plan_requests(gaps, tf.bar) == gaps


def test_weekends_are_not_counted():
    tf = TIMEFRAMES_BY_NAME["M15"]
    saturday = datetime(2024, 1, 6, tzinfo=UTC)
    assert expected_slots(saturday, saturday + timedelta(days=1), tf.bar) == 0
    # Sunday: 22:00-24:00 UTC may trade (the summer open).
    assert expected_slots(saturday + timedelta(days=1), saturday + timedelta(days=2), tf.bar) == 8
    monday = saturday + timedelta(days=2)
    assert expected_slots(monday, monday + timedelta(days=1), tf.bar) == 96
