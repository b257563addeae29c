"""Bar grids (xau_pipeline.market.bar_grid): zoned slots across DST switches, and detection from stored bar opens."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest

from xau_pipeline.market.bar_grid import BarGrid, new_york_close_grid, utc_grid
from xau_pipeline.market.grid_detection import MixedGrid, detect_day_cover, detect_grid, dst_switches
from xau_pipeline.market.market_hours import calendar

UTC = UTC
H1, H4, D1, M15 = timedelta(hours=1), timedelta(hours=4), timedelta(days=1), timedelta(minutes=15)
CME = calendar("cme_gold")
NY_H4, NY_D1 = new_york_close_grid(H4), new_york_close_grid(D1)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hours(slots) -> list[int]:
    return [o.hour for o, _ in slots]


def test_new_york_h4_opens_at_17_21_01_05_09_13_new_york_time_in_both_seasons():
    assert hours(NY_H4.slots(at(2024, 1, 10), at(2024, 1, 11))) == [2, 6, 10, 14, 18, 22]
    assert hours(NY_H4.slots(at(2024, 7, 10), at(2024, 7, 11))) == [1, 5, 9, 13, 17, 21]
    assert not NY_H4.is_utc
    assert NY_H4.describe() == "4h anchored America/New_York 17:00"


def test_new_york_h4_across_the_march_and_november_switches():
    """The 01:00 New York bar of the switch Sunday lasts 3 hours in March and 5 in November."""
    march = NY_H4.slots(at(2024, 3, 10, 2), at(2024, 3, 10, 14))
    assert [(o.hour, (c - o) // H1) for o, c in march] == [(2, 4), (6, 3), (9, 4), (13, 4)]
    november = NY_H4.slots(at(2024, 11, 3, 1), at(2024, 11, 3, 15))
    assert [(o.hour, (c - o) // H1) for o, c in november] == [(1, 4), (5, 5), (10, 4), (14, 4)]


def test_new_york_d1_opens_at_17_new_york_and_the_sunday_bar_is_expected():
    slots = CME.expected_slot_bounds(at(2024, 3, 3), at(2024, 3, 17), NY_D1)
    # Winter: Sunday 22:00 UTC (17:00 EST); after the 10 March switch, 21:00 UTC. The bar opening
    # Thursday evening is Friday's session; none opens Friday or Saturday evening.
    assert [o for o, _ in slots] == [
        *(at(2024, 3, d, 22) for d in (3, 4, 5, 6, 7)),
        *(at(2024, 3, d, 21) for d in (10, 11, 12, 13, 14)),
    ]
    assert all(c - o == D1 for o, c in slots)


def test_utc_grids_keep_the_fast_path_and_bars_within_an_hour_are_utc_in_every_zone():
    assert utc_grid(H4, timedelta(hours=2)).phase == timedelta(hours=2)
    assert BarGrid(H1, "America/New_York", time(17)).is_utc
    assert BarGrid(M15, "America/New_York", time(17)).phase == timedelta(0)
    grid = utc_grid(H4, timedelta(hours=1))
    assert CME.expected_slots(at(2024, 3, 11), at(2024, 3, 16), H4, grid=grid) == CME.expected_slots(
        at(2024, 3, 11), at(2024, 3, 16), H4, timedelta(hours=1)
    )


@pytest.mark.parametrize("grid", [NY_H4, NY_D1, utc_grid(H4), utc_grid(D1)])
def test_contains_slot_of_and_slot_closing_at_agree_with_slots(grid):
    slots = grid.slots(at(2024, 10, 27), at(2024, 11, 10))
    for o, c in slots:
        assert grid.contains(o) and not grid.contains(o + timedelta(minutes=15))
        assert grid.slot_of(o + timedelta(minutes=15)) == (o, c)
        assert grid.slot_closing_at(c) == o
        assert grid.slot_closing_at(c - timedelta(minutes=1)) is None


def test_count_expected_with_a_zoned_grid_is_the_length_of_the_slot_list():
    for grid in (NY_H4, NY_D1):
        start, end = at(2024, 10, 20), at(2024, 11, 17)
        assert CME.count_expected(start, end, grid.bar, grid=grid) == len(
            CME.expected_slots(start, end, grid.bar, grid=grid)
        )


def test_dst_switches_are_the_us_ones():
    assert dst_switches(at(2024, 1, 1), at(2025, 1, 1)) == [at(2024, 3, 10, 7), at(2024, 11, 3, 6)]


@pytest.mark.parametrize("bar", [H4, D1])
def test_detect_new_york_anchored_bars_across_both_switches(bar):
    opens = [o for o, _ in CME.expected_slot_bounds(at(2024, 1, 1), at(2025, 1, 1), new_york_close_grid(bar))]
    detection = detect_grid(opens, bar)
    assert detection.grid == new_york_close_grid(bar)
    assert len(detection.stretches) == 3 and all(s.grid == detection.grid for s in detection.stretches)


@pytest.mark.parametrize(("bar", "phase"), [(H4, timedelta(0)), (H4, timedelta(hours=1)), (D1, timedelta(0))])
def test_detect_utc_anchored_bars(bar, phase):
    opens = CME.expected_slots(at(2024, 1, 1), at(2025, 1, 1), bar, phase)
    assert detect_grid(opens, bar).grid == utc_grid(bar, phase)


def test_winter_only_h4_bars_at_22_utc_fit_both_and_stay_utc():
    """In winter the New York 17:00 H4 grid is the UTC grid at phase 2h: nothing tells them apart."""
    opens = CME.expected_slots(at(2024, 1, 8), at(2024, 3, 1), H4, timedelta(hours=2))
    detection = detect_grid(opens, H4)
    assert detection.grid == utc_grid(H4, timedelta(hours=2))
    (stretch,) = detection.stretches
    assert dict(stretch.fits) == {"4h anchored UTC 02:00": len(opens), "4h anchored America/New_York 17:00": len(opens)}


def test_a_feed_changing_grid_at_a_switch_gets_each_stretch_its_own():
    utc = CME.expected_slots(at(2024, 1, 1), at(2024, 3, 10), H4)
    new_york = [o for o, _ in CME.expected_slot_bounds(at(2024, 3, 10), at(2024, 12, 1), NY_H4)]
    detection = detect_grid(utc + new_york, H4)
    assert isinstance(detection.grid, MixedGrid)
    assert [s.grid for s in detection.grid.stretches] == [utc_grid(H4), NY_H4]
    slots = CME.expected_slots(at(2024, 1, 1), at(2024, 12, 1), H4, grid=detection.grid)
    assert slots == utc + new_york


def test_hourly_and_shorter_bars_are_detected_by_their_utc_phase():
    opens = CME.expected_slots(at(2024, 3, 4), at(2024, 3, 16), H1)
    assert detect_grid(opens, H1).grid == utc_grid(H1)
    assert detect_grid([], H4).grid == utc_grid(H4)


def _hours_and_days(first_day, days, boundary_hour, closed_hour):
    """H1 bars of `days` days (none at `closed_hour`, a daily break) and the D1 bars of days from `boundary_hour`."""
    hours = []
    for i in range(days * 24 + 24):
        t = first_day - timedelta(hours=12) + timedelta(hours=i)
        if t.hour != closed_hour:
            p = Decimal(1000 + i)
            hours.append((t, (p, p + 2, p - 1, p + 1)))
    d1 = []
    for d in range(days):
        lo = first_day + timedelta(days=d, hours=boundary_hour - 24)
        part = [p for t, p in hours if lo <= t < lo + timedelta(days=1)]
        d1.append((lo, (part[0][0], max(p[1] for p in part), min(p[2] for p in part), part[-1][3])))
    return hours, d1


def test_the_day_a_d1_bar_holds_is_read_off_its_h1_bars_whether_stored_at_its_open_or_its_date():
    first = datetime(2024, 1, 9, tzinfo=UTC)
    hours, d1 = _hours_and_days(first, 5, boundary_hour=14, closed_hour=3)
    at_open = detect_day_cover(d1, hours)
    assert (at_open.grid, at_open.dated, at_open.matched, at_open.compared) == (
        BarGrid(timedelta(days=1), "UTC", time(14)),
        False,
        5,
        5,
    )
    dated = [(open_ + timedelta(hours=10), prices) for open_, prices in d1]  # stored at 00:00 UTC of its date
    cover = detect_day_cover(dated, hours)
    assert (cover.grid, cover.dated, cover.matched) == (BarGrid(timedelta(days=1), "UTC", time(14)), True, 5)
    assert cover.slot_of_bar(dated[0][0]) == (d1[0][0], d1[0][0] + timedelta(days=1))
    assert "stored at 00:00 UTC of the date Twelve Data gives them" in cover.describe()
    # The break hour before the boundary: 13:00 and 14:00 both fit; the stored opens decide.
    hours, d1 = _hours_and_days(first, 5, boundary_hour=14, closed_hour=13)
    assert detect_day_cover(d1, hours).grid == BarGrid(timedelta(days=1), "UTC", time(14))
    scrambled = [(t, (o, h + 50, lo, c)) for t, (o, h, lo, c) in d1]
    assert detect_day_cover(scrambled, hours).grid is None
