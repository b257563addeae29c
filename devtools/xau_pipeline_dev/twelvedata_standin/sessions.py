"""Market hours of the Twelve Data stand-in (spot gold, CME Globex metals hours)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


def in_session(slot_open_utc: datetime) -> bool:
    """Whether the 15-minute slot opening at this UTC instant lies in a trading session.

    Holidays (Good Friday, Christmas, New Year's Day, early closes) are ignored.
    """
    local = slot_open_utc.astimezone(NEW_YORK)
    weekday, hour = local.weekday(), local.hour
    # CME Globex metals: Sunday 18:00 -> Friday 17:00 New York time,
    # with a daily break 17:00-18:00 New York Monday-Thursday.
    if weekday == 5:  # Saturday
        return False
    if weekday == 6:  # Sunday
        return hour >= 18
    if weekday == 4:  # Friday
        return hour < 17
    return hour != 17
