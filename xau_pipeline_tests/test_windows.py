import itertools
from datetime import UTC, datetime, timedelta

import pytest

from xau_pipeline.market.bars import subtract
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.twelvedata.windows import MAX_BARS_PER_CALL, WindowPlanner, merge_gaps

UTC = UTC
CME = calendar("cme_gold")


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


def plan(span, timeframe):
    """The windows a planner gives when every page comes back as expected (not full)."""
    planner = WindowPlanner(span, TIMEFRAMES_BY_NAME[timeframe].bar, CME)
    windows, end = [], span[1]
    while end > span[0]:
        window = planner.window_ending_at(end)
        windows.append(window)
        end = window[0]
    return planner, windows


@pytest.mark.parametrize(
    ("timeframe", "days", "calls"),
    [("M15", 90, 2), ("M15", 366, 5), ("D1", 366, 1), ("H1", 366, 2), ("H4", 366, 1)],
)
def test_windows_stay_within_5000_bars_in_few_calls(timeframe, days, calls):
    """Windows are sized by the trading calendar, newest first, never over 5000 expected bars."""
    bar = TIMEFRAMES_BY_NAME[timeframe].bar
    span = (t(1), t(1) + timedelta(days=days))
    planner, windows = plan(span, timeframe)
    assert len(windows) == planner.expected_calls == calls
    assert windows[0][1] == span[1] and windows[-1][0] == span[0]
    assert all(newer[0] == older[1] for newer, older in itertools.pairwise(windows))
    assert all(CME.count_expected(s, e, bar) <= MAX_BARS_PER_CALL for s, e in windows)
    assert all(CME.count_expected(s, e, bar) == MAX_BARS_PER_CALL for s, e in windows[:-1])


def test_a_window_can_end_anywhere():
    """After a full page the next window ends at that page's oldest bar, which need not be a slot."""
    planner = WindowPlanner((t(1), t(31)), TIMEFRAMES_BY_NAME["H1"].bar, CME)
    assert planner.window_ending_at(t(20, 7, 30)) == (t(1), t(20, 7, 30))


def test_neighbouring_gaps_share_a_call():
    bar = TIMEFRAMES_BY_NAME["H1"].bar
    gaps = [(t(2), t(3)), (t(5), t(6)), (t(8, 12), t(9))]
    assert merge_gaps(gaps, bar, CME) == [(t(2), t(9))]


def test_far_gaps_get_their_own_calls():
    bar = TIMEFRAMES_BY_NAME["M15"].bar
    far = datetime(2024, 6, 3, tzinfo=UTC)  # a Monday
    gaps = [(t(2), t(3)), (far, far + timedelta(days=1))]
    assert merge_gaps(gaps, bar, CME) == gaps


def test_gaps_with_the_market_closed_are_dropped():
    bar = TIMEFRAMES_BY_NAME["M15"].bar
    saturday, monday = (t(6), t(7)), (t(8), t(9))
    assert merge_gaps([saturday, monday], bar, CME) == [monday]
