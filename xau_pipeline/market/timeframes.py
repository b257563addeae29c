"""The timeframes we keep: one table feeding every per-timeframe factory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from xau_pipeline.market.publication import SETTLE

# The schedules tick this many minutes after a close: when Twelve Data has usually published the bar.
_AFTER = int(SETTLE.total_seconds() // 60)


@dataclass(frozen=True)
class Timeframe:
    """A candle timeframe: our name, Twelve Data's interval, bar length and close-aligned schedule."""

    name: str
    interval: str
    bar: timedelta
    # Two minutes (publication.SETTLE) after each bar closes, UTC. H4 and D1 close where the series'
    # grid says (21:00 or 22:00 UTC on the 17:00 New York grid): their schedules tick hourly and ask
    # the grid (schedules.py).
    schedule_cron: str

    @property
    def key_suffix(self) -> str:
        return f"candles_{self.name.lower()}"


TIMEFRAMES: tuple[Timeframe, ...] = (
    Timeframe("M15", "15min", timedelta(minutes=15), ",".join(str(m + _AFTER) for m in (0, 15, 30, 45)) + " * * * *"),
    Timeframe("H1", "1h", timedelta(hours=1), f"{_AFTER} * * * *"),
    Timeframe("H4", "4h", timedelta(hours=4), f"{_AFTER} * * * *"),
    Timeframe("D1", "1day", timedelta(days=1), f"{_AFTER} * * * *"),
)

TIMEFRAMES_BY_NAME: dict[str, Timeframe] = {tf.name: tf for tf in TIMEFRAMES}


def timeframe(name: str) -> Timeframe:
    """The timeframe called `name` (case-insensitive), or a ValueError listing the valid ones."""
    try:
        return TIMEFRAMES_BY_NAME[name.upper()]
    except KeyError:
        valid = ", ".join(TIMEFRAMES_BY_NAME)
        raise ValueError(f"unknown timeframe {name!r}: expected one of {valid}") from None
