"""False gaps on real gold bars, per grid: a fixed UTC phase (before) against the detected grid (after).

The real Dukascopy H1 bars (../shared/realdata, 2022-2026) are aggregated into H4 and D1 bars on
two grids, UTC (00/04/08... and 00:00) and 17:00 New York (moving with US DST), as feeds build them.
Each series is stored in a database of its own and its gap report taken over the whole span on the
fixed UTC phase (the dominant one, what the gap query used before grids) and on the detected grid.
Goals: on the detected grid, missing = the real H1 holes only, off-session 0; phantom gaps (grid
mismatch) never fetched. Usage: python bench/grid_fidelity.py
"""

from __future__ import annotations

import csv
import os
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from xau_pipeline.market.bar_grid import BarGrid, new_york_close_grid, utc_grid
from xau_pipeline.market.bars import Bar
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.gaps import GRID_MISMATCH
from xau_pipeline.store.upsert import upsert_bars
from xau_pipeline_dev.testing import bar_phase, temporary_database

SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def read_h1() -> list[Bar]:
    with open(REALDATA / "dukascopy_xauusd_h1_utc.csv", newline="") as f:
        return [
            Bar(
                datetime.fromisoformat(r["timestamp_utc"]).astimezone(UTC),
                *(Decimal(r[k]) for k in ("open", "high", "low", "close")),
            )
            for r in csv.DictReader(f)
        ]


def aggregate(h1: list[Bar], grid: BarGrid) -> list[Bar]:
    out: dict[datetime, Bar] = {}
    for b in h1:
        slot = grid.slot_of(b.open_time)[0]
        prev = out.get(slot)
        if prev is None:
            out[slot] = Bar(slot, b.open, b.high, b.low, b.close)
        else:
            out[slot] = Bar(slot, prev.open, max(prev.high, b.high), min(prev.low, b.low), b.close)
    return [out[t] for t in sorted(out)]


def main() -> None:
    if not (REALDATA / "dukascopy_xauusd_h1_utc.csv").is_file():
        print(f"skipped: the real H1 bars are not at {REALDATA}")
        return
    h1 = read_h1()
    cme = calendar("cme_gold")
    start, end = h1[0].open_time, h1[-1].open_time - timedelta(days=1)
    now = datetime.now(UTC)
    print(f"real H1 bars: {len(h1):,}, {start:%Y-%m-%d} to {end:%Y-%m-%d}")
    print(
        f"{'series':<22}{'bars':>7}  {'fixed UTC phase: missing / off-session / phantom':>48}  {'detected grid: missing / off-session':>38}  grid"
    )
    for name in ("H4", "D1"):
        tf = TIMEFRAMES_BY_NAME[name]
        for label, grid in (("UTC", utc_grid(tf.bar)), ("New York 17:00", new_york_close_grid(tf.bar))):
            bars = aggregate(h1, grid)
            with temporary_database(SERVER, "xau_bench_grid") as url:
                store = CandleStore(url)
                store.migrate()
                with store.engine.begin() as connection:
                    upsert_bars(connection, "XAUUSD", name, bars)
                phase = bar_phase(store, "XAUUSD", tf)
                before = store.gaps("XAUUSD", tf, cme, (start, end), now, phase=phase)
                began = time.perf_counter()
                detected = store.grid("XAUUSD", tf)
                detected_ms = (time.perf_counter() - began) * 1000
                began = time.perf_counter()
                after = store.gaps("XAUUSD", tf, cme, (start, end), now, grid=detected.grid)
                report_ms = (time.perf_counter() - began) * 1000
            closed_before = before.missing  # a bar still forming is neither expected nor missing
            print(
                f"{name + ' ' + label:<22}{len(bars):>7}  "
                f"{closed_before:>24} / {before.off_session:>5} / {before.count(GRID_MISMATCH):>5}        "
                f"{after.missing:>24} / {after.off_session:>5}        {detected.grid.describe()}"
                f" (detected in {detected_ms:.0f} ms, report over the whole span {report_ms:.0f} ms)"
            )


if __name__ == "__main__":
    main()
