"""The gap machinery over real XAU/USD bars: the calendar, the gap query and `xau-pipeline gaps`.

The files are Dukascopy's XAU/USD M15 (2024-01..2026-03), H1 and D1 (2022..2026) in
../shared/realdata/ (beside the repository; its README says where they come from). Over each whole
file, every expected slot must hold a bar except the two real holes that README documents, and no
bar may lie outside the `cme_gold` sessions. Both feeds' anchoring fits the UTC grid (H1 on the hour,
D1 at 00:00 UTC), so no zone-anchored grid is needed here.

Where ../shared/realdata is absent (a clone without shared/ beside it), these tests skip.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from xau_pipeline.interfaces.cli import main
from xau_pipeline.market.bar_grid import new_york_close_grid, utc_grid
from xau_pipeline.market.bars import Bar
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.gaps import GRID_MISMATCH, NEVER_FETCHED, NOT_PUBLISHED, PROVIDER_EMPTY, find_gaps
from xau_pipeline.store.upsert import upsert_bars
from xau_pipeline_dev.testing import bar_phase

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
SYMBOL = "XAUUSD"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REALDATA.is_dir(), reason=f"real-data tests need {REALDATA} (shared/ beside the clone)"),
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@dataclass(frozen=True)
class RealFile:
    timeframe: str
    bar: timedelta
    name: str
    bars: int  # as the README's table says
    holes: tuple[datetime, ...]  # expected slots the feed really left empty (the README's list)


FILES = [
    RealFile(
        "M15",
        timedelta(minutes=15),
        "dukascopy_xauusd_m15_utc.csv",
        51_491,
        (
            # The Sunday open hour of 2024-01-07 (the H1 file has it).
            *(utc(2024, 1, 7, 23, minute) for minute in (0, 15, 30, 45)),
            # The three bars after the reopen on 2024-10-09 23:00 UTC.
            *(utc(2024, 10, 9, 23, minute) for minute in (15, 30, 45)),
        ),
    ),
    RealFile("H1", timedelta(hours=1), "dukascopy_xauusd_h1_utc.csv", 25_230, ()),
    RealFile("D1", timedelta(days=1), "dukascopy_xauusd_d1_utc.csv", 1_327, ()),
]
IDS = [f.timeframe for f in FILES]

COPY_CANDLES = """
COPY candles (symbol, timeframe, "timestamp", open, high, low, close, fetched_at, updated_at)
FROM STDIN WITH (FORMAT csv)
"""


def _load(store, real: RealFile) -> list[datetime]:
    """COPY the file into `candles` as (SYMBOL, its timeframe); returns its bar opens, ascending."""
    path = REALDATA / real.name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    header, *lines = path.read_text().splitlines()
    assert header == "timestamp_utc,open,high,low,close"
    stamp = datetime.now(UTC).isoformat()
    rows = io.StringIO("".join(f"{SYMBOL},{real.timeframe},{line},{stamp},{stamp}\n" for line in lines))
    with store.engine.begin() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        cursor.copy_expert(COPY_CANDLES, rows)
        cursor.close()
    opens = [datetime.fromisoformat(line.split(",", 1)[0]) for line in lines]
    assert len(opens) == real.bars and opens == sorted(opens)
    return opens


def _describe(slots) -> str:
    return ", ".join(f"{s:%Y-%m-%d %H:%M %a}" for s in slots[:30]) + (" ..." if len(slots) > 30 else "")


@pytest.mark.parametrize("real", FILES, ids=IDS)
def test_calendar_and_gap_query_over_real_bars(store, real):
    """find_gaps over the whole file finds exactly the documented holes and no off-session bar;
    the calendar's own slot list agrees bar by bar."""
    opens = _load(store, real)
    start, end = opens[0], opens[-1] + real.bar
    cme = calendar("cme_gold")
    with store.engine.connect() as connection:
        report = find_gaps(connection, SYMBOL, real.timeframe, real.bar, cme, start, end, datetime.now(UTC))
    assert report.phase == timedelta(0)

    expected = set(cme.expected_slots(start, end, real.bar, report.phase))
    off_session = sorted(set(opens) - expected)
    missing = sorted(expected - set(opens))
    assert not off_session, f"{len(off_session)} real bars off-session: {_describe(off_session)}"
    assert missing == list(real.holes), f"{len(missing)} expected slots without a bar: {_describe(missing)}"

    assert [gap.slot for gap in report.gaps] == list(real.holes)
    assert {gap.reason for gap in report.gaps} <= {NEVER_FETCHED}
    assert (report.expected, report.stored, report.off_session) == (len(opens) + len(real.holes), len(opens), 0)


@pytest.mark.parametrize("real", FILES, ids=IDS)
def test_gaps_command_over_real_bars(store, real, monkeypatch, capsys):
    """`xau-pipeline gaps` over the whole file prints the same counts and lists only the holes."""
    opens = _load(store, real)
    start, end = opens[0], opens[-1] + real.bar
    monkeypatch.setenv("XAU_DATABASE_URL", store.url)
    monkeypatch.delenv("XAU_SYMBOLS", raising=False)  # XAUUSD on its default calendar, cme_gold
    iso = "%Y-%m-%dT%H:%M:%SZ"

    assert main(["gaps", real.timeframe, "--start", f"{start:{iso}}", "--end", f"{end:{iso}}"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{SYMBOL} {real.timeframe} from {start:{iso}} to {end:{iso}} (calendar cme_gold)"
    fields = dict(line.split(":", 1) for line in out[1:6])
    holes = len(real.holes)
    assert int(fields["expected"]) == len(opens) + holes
    assert int(fields["stored"]) == len(opens)
    reasons = f"{NEVER_FETCHED} {holes}, {PROVIDER_EMPTY} 0, {NOT_PUBLISHED} 0"
    assert fields["missing"].strip() == f"{holes} ({reasons})"
    assert int(fields["off-session"]) == 0
    assert fields["phase"].strip() == "+00:00 from 00:00 UTC"
    assert out[6] == f"grid:        {utc_grid(real.bar).describe()}"
    assert out[7:] == [f"{slot:{iso}}  {NEVER_FETCHED}" for slot in real.holes]


def _aggregate_h1(grid) -> list[Bar]:
    """The real H1 bars grouped into `grid`'s slots, as a feed on that grid builds its H4 or D1 bars."""
    _header, *lines = (REALDATA / "dukascopy_xauusd_h1_utc.csv").read_text().splitlines()
    out: dict[datetime, Bar] = {}
    for line in lines:
        stamp, *prices = line.split(",")
        o, h, low, c = (Decimal(p) for p in prices)
        slot = grid.slot_of(datetime.fromisoformat(stamp))[0]
        prev = out.get(slot)
        out[slot] = (
            Bar(slot, o, h, low, c) if prev is None else Bar(slot, prev.open, max(prev.high, h), min(prev.low, low), c)
        )
    return [out[t] for t in sorted(out)]


@pytest.mark.parametrize(
    ("timeframe", "anchor", "bars", "fixed_phase_missing", "fixed_phase_off_session"),
    [
        ("H4", "UTC", 6823, 0, 0),
        ("H4", "America/New_York", 6600, 2491, 2409),
        ("D1", "UTC", 1328, 0, 0),
        ("D1", "America/New_York", 1101, 481, 402),
    ],
)
def test_real_bars_on_either_grid_have_no_false_gap(
    store, timeframe, anchor, bars, fixed_phase_missing, fixed_phase_off_session
):
    """Real H1 bars 2022-2026 grouped into H4 and D1 on the UTC grid and on the 17:00 New York grid
    (what feeds anchored there send): the detected grid finds nothing missing and nothing off-session
    across every DST switch; the fixed UTC phase finds phantom gaps, each a grid mismatch, none fetched."""
    if not (REALDATA / "dukascopy_xauusd_h1_utc.csv").is_file():
        pytest.skip("the real H1 file is absent")
    tf = TIMEFRAMES_BY_NAME[timeframe]
    grid = utc_grid(tf.bar) if anchor == "UTC" else new_york_close_grid(tf.bar)
    series = _aggregate_h1(grid)
    assert len(series) == bars
    with store.engine.begin() as connection:
        upsert_bars(connection, SYMBOL, timeframe, series)
    cme, now = calendar("cme_gold"), datetime.now(UTC)
    start, end = series[0].open_time, series[-1].open_time
    detected = store.grid(SYMBOL, tf)
    assert detected.grid == grid
    after = store.gaps(SYMBOL, tf, cme, (start, end), now, grid=detected.grid)
    assert (after.missing, after.off_session, after.stored) == (0, 0, bars - 1)
    before = store.gaps(SYMBOL, tf, cme, (start, end), now, phase=bar_phase(store, SYMBOL, tf))
    assert (before.missing, before.off_session, before.count(GRID_MISMATCH)) == (
        fixed_phase_missing,
        fixed_phase_off_session,
        fixed_phase_missing,
    )
