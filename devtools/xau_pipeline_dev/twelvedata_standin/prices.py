"""Deterministic price generation (15-minute base bars) and aggregation for the stand-in.

Times are integer Unix seconds (UTC) internally; a bar is a tuple
``(open_time, open, high, low, close)`` with ``Decimal`` prices quantized to 0.00001.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache

from .sessions import NEW_YORK, in_session

Bar = tuple[int, Decimal, Decimal, Decimal, Decimal]

M15 = 900
DAY = 86400
INTERVAL_SECONDS: dict[str, int] = {"15min": M15, "1h": 3600, "4h": 14400, "1day": DAY}
HISTORY_START = 1262304000  # 2010-01-01 00:00 UTC

_EPOCH = 1704067200  # 2024-01-01 00:00 UTC, where a symbol's price level is given
_YEAR = 365.25 * DAY
_WAVES = (  # (relative amplitude, period in seconds)
    (0.030, 131.0 * DAY),
    (0.012, 17.3 * DAY),
    (0.004, 1.0 * DAY),
    (0.0015, 5.2 * 3600),
)
_NOISE = 0.0003
_EXCURSION = 0.0004
_QUANTUM = Decimal("0.00001")
# Outside CME hours a 24/7 feed's bars move a little around the last session close: XAU/USD's
# Saturday 1h bars spanned 0.25 at 4330 over the day (about 6e-5).
_QUIET = 0.00002


@dataclass(frozen=True)
class Series:
    """What determines one symbol's 15-minute bars (hashable: it keys the caches)."""

    symbol: str
    level: Decimal
    holes: tuple[tuple[int, int], ...] = ()
    revisions: tuple[tuple[int, Decimal], ...] = ()
    weekend_bars: bool = False


def _units(*parts: object, n: int = 1) -> list[float]:
    """``n`` uniform numbers in [0, 1) derived from a hash of ``parts``."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8 * n).digest()
    return [int.from_bytes(digest[8 * i : 8 * i + 8], "big") / 2.0**64 for i in range(n)]


@lru_cache(maxsize=64)
def _waves(symbol: str) -> tuple[tuple[float, float, float], ...]:
    phases = _units(symbol, "phase", n=len(_WAVES))
    return tuple((a, 2 * math.pi / p, 2 * math.pi * u) for (a, p), u in zip(_WAVES, phases))


def _trend(x: float) -> float:
    """Log growth since 2024-01-01 over ``x`` years: ~1300 (2010), 2050 (2024), ~4300 (2026), ~5900 (2030)."""
    return 0.45 * (math.tanh((x - 1.5) / 0.8) - math.tanh(-1.5 / 0.8)) + 0.03 * x


def mid(symbol: str, level: float, t: int) -> float:
    """The symbol's mid price at Unix second ``t``: a closed-form trend, waves and hash noise."""
    x = t - _EPOCH
    waves = sum(a * math.sin(w * x + ph) for a, w, ph in _waves(symbol))
    noise = _NOISE * (2 * _units(symbol, "mid", t)[0] - 1)
    return level * math.exp(_trend(x / _YEAR)) * (1 + waves + noise)


def _q(x: float) -> Decimal:
    return Decimal(f"{x:.5f}")


@lru_cache(maxsize=8192)
def _mid_q(symbol: str, level: Decimal, t: int) -> Decimal:
    return _q(mid(symbol, float(level), t))


def render_price(value: Decimal) -> str:
    """A price as Twelve Data writes it: at most 5 decimals, trailing zeros stripped."""
    text = f"{value.quantize(_QUANTUM):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _slot_bar(series: Series, t: int, until: int | None = None) -> Bar:
    """The bar of slot ``t``; when ``until`` (< t + 15 min) is given, the bar formed so far."""
    o = _mid_q(series.symbol, series.level, t)
    if until is None:
        c = _mid_q(series.symbol, series.level, t + M15)
    else:
        c = _q(mid(series.symbol, float(series.level), until))
    frac = 1.0 if until is None else (until - t) / M15
    up, down = _units(series.symbol, "bar", t, n=2)
    h = max(o, c) + _q(float(o) * _EXCURSION * up * frac)
    low = min(o, c) - _q(float(o) * _EXCURSION * down * frac)
    delta = _revision_map(series.revisions).get(t) if series.revisions else None
    if delta:
        o, h, low, c = o + delta, h + delta, low + delta, c + delta
    return (t, o, h, low, c)


@lru_cache(maxsize=64)
def _revision_map(revisions: tuple[tuple[int, Decimal], ...]) -> dict[int, Decimal]:
    return dict(revisions)


def _utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _in_hole(series: Series, t: int) -> bool:
    return any(a <= t < b for a, b in series.holes)


def _last_session_slot(t: int) -> int:
    """The newest in-session slot opening before ``t``."""
    s = t - M15
    while not in_session(_utc(s)):
        s -= M15
    return s


def _quiet(series: Series, base: Decimal, t: int) -> Decimal:
    return _q(float(base) * (1 + _QUIET * (2 * _units(series.symbol, "quiet", t)[0] - 1)))


def _quiet_bar(series: Series, t: int, session_slot: int, until: int | None = None) -> Bar:
    """An off-session bar: near the last session close, moving a little; when ``until`` (< t + 15 min)
    is given, the bar formed so far."""
    base = _slot_bar(series, session_slot)[4]
    o, c = _quiet(series, base, t), _quiet(series, base, t + M15 if until is None else until)
    frac = 1.0 if until is None else (until - t) / M15
    up, down = _units(series.symbol, "quiet bar", t, n=2)
    h = max(o, c) + _q(float(base) * _QUIET * up * frac / 2)
    low = min(o, c) - _q(float(base) * _QUIET * down * frac / 2)
    return (t, o, h, low, c)


@lru_cache(maxsize=1024)
def _day_bars(series: Series, day_start: int) -> tuple[tuple[int, ...], tuple[Bar, ...]]:
    """All 15-minute bars of one UTC day, ignoring the clock: (open times, bars)."""
    bars: list[Bar] = []
    last_session: int | None = None
    for t in range(day_start, day_start + DAY, M15):
        session = in_session(_utc(t))
        if not _in_hole(series, t):
            if session:
                bars.append(_slot_bar(series, t))
            elif series.weekend_bars:
                if last_session is None:
                    last_session = _last_session_slot(t)
                bars.append(_quiet_bar(series, t, last_session))
        if session:
            last_session = t
    return tuple(b[0] for b in bars), tuple(bars)


def _forming_bar(series: Series, t: int, now: int) -> Bar | None:
    if _in_hole(series, t):
        return None
    if in_session(_utc(t)):
        return _slot_bar(series, t, until=now)
    if series.weekend_bars:
        return _quiet_bar(series, t, _last_session_slot(t), until=now)
    return None


def m15_bars(series: Series, start: int, end: int, now: int) -> list[Bar]:
    """15-minute bars opening in [start, end) and at or before ``now``, the forming one included."""
    start = max(start, HISTORY_START)
    forming = now // M15 * M15
    closed_end = min(end, forming)
    out: list[Bar] = []
    day = start // DAY * DAY
    while day < closed_end:
        opens, bars = _day_bars(series, day)
        lo = bisect_left(opens, start) if day <= start else 0
        hi = bisect_left(opens, closed_end) if closed_end < day + DAY else len(opens)
        out.extend(bars[lo:hi])
        day += DAY
    if start <= forming < end:
        bar = _forming_bar(series, forming, now)
        if bar is not None:
            out.append(bar)
    return out


# Where 4h and 1day bars open: on the UTC grid (``"utc"``: 4h at h4_phase_hours + 4k hours, 1day at
# 00:00 UTC), or counted in New York local time from 17:00 (``"new_york"``: 4h at 17, 21, 01, 05, 09
# and 13 New York time, 1day from 17:00 to 17:00), as many FX and metals feeds do; their UTC times
# move by an hour at each US DST switch. An open in a repeated local hour is the first instant.
ANCHORS = ("utc", "new_york")
# A 1day bar may also open at 00:00 UTC+10 (14:00 UTC), as GBP/USD's did in 2022.
DAY_BOUNDARIES = ("utc", "utc+10", "new_york")
NEW_YORK_ANCHOR_HOUR = 17
UTC_PLUS_10 = 10 * 3600


def _anchored(interval: str, anchor: str) -> bool:
    if anchor not in DAY_BOUNDARIES or (anchor not in ANCHORS and interval != "1day"):
        raise ValueError(f"anchor must be one of {ANCHORS} ({DAY_BOUNDARIES} for 1day), not {anchor!r}")
    return anchor == "new_york" and interval in ("4h", "1day")


def _new_york_open(t: int, length: int) -> int:
    """The open of the New York 17:00-anchored bar of ``length`` seconds holding ``t``."""
    local = datetime.fromtimestamp(t, NEW_YORK).replace(tzinfo=None)
    base = datetime.combine(local.date(), time(NEW_YORK_ANCHOR_HOUR))
    if local < base:
        base -= timedelta(days=1)
    step = timedelta(seconds=length)
    opened = base + (local - base) // step * step
    return int(opened.replace(tzinfo=NEW_YORK).timestamp())


def _new_york_next_open(open_t: int, length: int) -> int:
    local = datetime.fromtimestamp(open_t, NEW_YORK).replace(tzinfo=None)
    return int((local + timedelta(seconds=length)).replace(tzinfo=NEW_YORK).timestamp())


def bar_open(interval: str, t: int, h4_phase_hours: int = 0, anchor: str = "utc") -> int:
    """Open time of the ``interval`` bar containing ``t`` (4h bars open at phase + 4k hours UTC,
    or on the New York 17:00 grid with ``anchor="new_york"``)."""
    length = INTERVAL_SECONDS[interval]
    if _anchored(interval, anchor):
        return _new_york_open(t, length)
    phase = h4_phase_hours * 3600 if interval == "4h" else 0
    if anchor == "utc+10":
        phase = DAY - UTC_PLUS_10
    return (t - phase) // length * length + phase


def next_bar_open(interval: str, open_t: int, h4_phase_hours: int = 0, anchor: str = "utc") -> int:
    """The open of the bar after the one opening at ``open_t`` (its close)."""
    length = INTERVAL_SECONDS[interval]
    if _anchored(interval, anchor):
        return _new_york_next_open(open_t, length)
    return open_t + length


def aggregate(m15: list[Bar], interval: str, h4_phase_hours: int = 0, anchor: str = "utc") -> list[Bar]:
    """Group ascending 15-minute bars into ``interval`` bars (first open, max, min, last close)."""
    if interval == "15min":
        return list(m15)
    out: list[Bar] = []
    key = None
    o = h = low = c = Decimal(0)
    for t, bo, bh, bl, bc in m15:
        k = bar_open(interval, t, h4_phase_hours, anchor)
        if k != key:
            if key is not None:
                out.append((key, o, h, low, c))
            key, o, h, low = k, bo, bh, bl
        else:
            h = bh if bh > h else h
            low = bl if bl < low else low
        c = bc
    if key is not None:
        out.append((key, o, h, low, c))
    return out


@lru_cache(maxsize=65536)
def _day_aggregate(series: Series, day_start: int) -> Bar | None:
    """The 1day bar of a UTC day, from all its 15-minute bars (clock ignored)."""
    bars = aggregate(list(_day_bars(series, day_start)[1]), "1day")
    return bars[0] if bars else None


def series_bars(
    series: Series, interval: str, start: int, end: int, now: int, h4_phase_hours: int = 0, anchor: str = "utc"
) -> list[Bar]:
    """``interval`` bars opening in [start, end) and at or before ``now``, ascending.

    The bar containing ``now`` is included, built from the data up to ``now``.
    """
    end = min(end, now + 1)
    if start >= end:
        return []
    first = bar_open(interval, start, h4_phase_hours, anchor)
    if first < start:
        first = next_bar_open(interval, first, h4_phase_hours, anchor)
    last = bar_open(interval, end - 1, h4_phase_hours, anchor)
    if last < first:
        return []
    if interval == "1day" and anchor == "utc":
        days = range(max(first, HISTORY_START), min(last + DAY, now - DAY + 1), DAY)
        out = [bar for bar in (_day_aggregate(series, d) for d in days) if bar is not None]
        forming = now // DAY * DAY
        if first <= forming <= last:
            out.extend(aggregate(m15_bars(series, forming, forming + DAY, now), interval))
        return out
    stop = next_bar_open(interval, last, h4_phase_hours, anchor)
    return aggregate(m15_bars(series, first, stop, now), interval, h4_phase_hours, anchor)


def newest_bars(
    series: Series,
    interval: str,
    start: int | None,
    end: int,
    now: int,
    count: int,
    h4_phase_hours: int = 0,
    anchor: str = "utc",
) -> list[Bar]:
    """At most ``count`` bars opening in [start, end), the newest ones, ascending."""
    floor = HISTORY_START if start is None else max(start, HISTORY_START)
    span = count * INTERVAL_SECONDS[interval] * 2 + 4 * DAY
    while True:
        lo = max(min(end, now + 1) - span, floor)
        bars = series_bars(series, interval, lo, end, now, h4_phase_hours, anchor)
        if len(bars) >= count or lo <= floor:
            return bars[-count:]
        span *= 2


@dataclass(frozen=True)
class Publication:
    """When closed bars become published, and what is served for them before.

    A bar is published ``delay`` seconds after its close, drawn per (symbol, interval, open) from
    ``late`` for a ``late_share`` of the bars and from ``typical`` for the rest. Before that it is
    left out of answers, or with ``provisional`` served with the values the feed had ``delay``
    seconds earlier (as if its last ticks were not in yet).
    """

    typical: tuple[float, float] = (0.0, 0.0)
    late_share: float = 0.0
    late: tuple[float, float] = (0.0, 0.0)
    seed: int = 0
    provisional: bool = False

    @property
    def longest(self) -> float:
        """The longest delay any bar can get."""
        return max(self.typical[1], self.late[1] if self.late_share > 0 else 0.0)

    def delay(self, symbol: str, interval: str, open_t: int) -> float:
        """Seconds from the close of the ``interval`` bar opening at ``open_t`` to its publication."""
        if self.longest <= 0:
            return 0.0
        which, u = _units("publication", self.seed, symbol, interval, open_t, n=2)
        lo, hi = self.late if which < self.late_share else self.typical
        return round(lo + (hi - lo) * u, 3)


def publish(
    series: Series,
    interval: str,
    rows: list[Bar],
    now: float,
    publication: Publication,
    h4_phase_hours: int = 0,
    anchor: str = "utc",
    *,
    final: bool = False,
) -> list[tuple[Bar, bool]]:
    """``rows`` (ascending, as ``series_bars`` built them at ``floor(now)``) as served at ``now``,
    each with whether it is published: a closed bar not yet published is left out, or replaced by
    its provisional values (with ``final``: kept as it is); the forming bar is kept (not published)."""
    settled = now - publication.longest  # every bar closed by then is published
    newest: list[tuple[Bar, bool]] = []
    kept = len(rows)
    while kept > 0:
        bar = rows[kept - 1]
        t = bar[0]
        close = next_bar_open(interval, t, h4_phase_hours, anchor)
        if close <= settled:
            break
        kept -= 1
        if close > now:
            newest.append((bar, False))
            continue
        delay = publication.delay(series.symbol, interval, t)
        published = close + delay <= now
        if published or final:
            newest.append((bar, published))
        elif publication.provisional:
            as_of = math.floor(now - delay)
            early = provisional_bar(series, interval, t, close, as_of, h4_phase_hours, anchor)
            if early is not None:
                newest.append((early, False))
    return [(bar, True) for bar in rows[:kept]] + newest[::-1]


def provisional_bar(
    series: Series, interval: str, t: int, close: int, as_of: int, h4_phase_hours: int = 0, anchor: str = "utc"
) -> Bar | None:
    """The bar opening at ``t`` (closing at ``close``) as formed at ``as_of`` (kept within the bar)."""
    as_of = min(max(as_of, t), close - 1)
    for bar in series_bars(series, interval, t, t + 1, as_of, h4_phase_hours, anchor):
        if bar[0] == t:
            return bar
    return None
