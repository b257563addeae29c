"""Instants as int64 microseconds since the epoch, the slots of a grid between two instants, and session arrays merged: the arithmetic under the trading calendars."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from xau_pipeline.clock import EPOCH

MICROSECOND = timedelta(microseconds=1)


def to_us(value: datetime, what: str) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value!r}")
    return (value - EPOCH) // MICROSECOND


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


def bar_micros(bar: timedelta) -> int:
    if not isinstance(bar, timedelta):
        raise TypeError(f"bar must be a timedelta, got {type(bar).__name__}")
    bar_us = bar // MICROSECOND
    if bar_us <= 0:
        raise ValueError(f"bar must be positive, got {bar!r}")
    return bar_us


def phase_micros(phase: timedelta, bar_us: int) -> int:
    """The grid's offset from the epoch, reduced into [0, bar)."""
    if not isinstance(phase, timedelta):
        raise TypeError(f"phase must be a timedelta, got {type(phase).__name__}")
    return (phase // MICROSECOND) % bar_us


def first_k_at_or_after(t_us: int, phase_us: int, bar_us: int) -> int:
    """The smallest k with phase + k * bar >= t."""
    return -((phase_us - t_us) // bar_us)


def grid_k_range(start: datetime, end: datetime, bar: timedelta, phase: timedelta) -> tuple[int, int, int, int]:
    """(k_lo, k_hi_exclusive, phase_us, bar_us) of the grid slots opening in [start, end)."""
    start_us = to_us(start, "start")
    end_us = to_us(end, "end")
    bar_us = bar_micros(bar)
    phase_us = phase_micros(phase, bar_us)
    k_lo = first_k_at_or_after(start_us, phase_us, bar_us)
    k_hi = first_k_at_or_after(end_us, phase_us, bar_us)
    return k_lo, max(k_lo, k_hi), phase_us, bar_us


EMPTY = np.empty(0, dtype=np.int64)


def merge_sessions(opens: np.ndarray, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (by open) sessions with overlapping or touching ones merged; empty ones dropped."""
    keep = closes > opens
    if not keep.all():
        opens, closes = opens[keep], closes[keep]
    if len(opens) <= 1:
        return opens, closes
    # Sessions are sorted by open; one starts a new group when it opens after every earlier close.
    running_close = np.maximum.accumulate(closes)
    new_group = np.empty(len(opens), dtype=bool)
    new_group[0] = True
    new_group[1:] = opens[1:] > running_close[:-1]
    if new_group.all():
        return opens, closes
    starts = np.flatnonzero(new_group)
    return opens[starts], np.maximum.reduceat(closes, starts)
