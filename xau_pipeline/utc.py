"""UTC time helpers: every timestamp in the pipeline is UTC-aware, and shown the same way."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def day_start(moment: datetime) -> datetime:
    """00:00 UTC of `moment`'s UTC day."""
    return datetime.combine(moment.astimezone(UTC).date(), time.min, UTC)


def next_utc_midnight(moment: datetime) -> datetime:
    """The next 00:00 UTC after `moment`: when Twelve Data's daily credits reset."""
    return day_start(moment) + timedelta(days=1)


def utc_label(moment: datetime | None) -> str:
    """`2024-01-02 03:45 UTC`, or `-` for no time: how the UI and logs show a bar time."""
    return "-" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def iso_utc(moment: datetime) -> str:
    """`2024-01-02T03:45:00Z`: how the command line and exports write a time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
