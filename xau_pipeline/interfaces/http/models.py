"""Response models: what the HTTP API returns, and what its OpenAPI schema promises.

Prices are exact decimal strings (`format(value, "f")` of the stored NUMERIC), never floats;
timestamps are `YYYY-MM-DDTHH:MM:SSZ` (UTC, the bar's open).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from xau_pipeline.market.timeframes import TIMEFRAMES


def iso_utc(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` of a UTC moment."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decimal_text(value: Decimal) -> str:
    """The exact digits of a stored NUMERIC, never in exponent notation."""
    return format(value, "f")


TimeframeName = Enum("TimeframeName", {tf.name: tf.name for tf in TIMEFRAMES}, type=str)  # type: ignore[misc]
TimeframeName.__doc__ = "A stored timeframe."

UtcTime = Annotated[
    datetime,
    PlainSerializer(iso_utc, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2024-01-02T15:30:00Z"]}),
]
Price = Annotated[
    Decimal,
    PlainSerializer(decimal_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "examples": ["2650.12345"]}),
]


class CandleResponse(BaseModel):
    """One stored bar: its open time (UTC) and exact prices."""

    model_config = ConfigDict(frozen=True)

    symbol: str = Field(examples=["XAUUSD"])
    timeframe: str = Field(examples=["M15"])
    timestamp: UtcTime = Field(description="The bar's open, UTC.")
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Price | None = Field(description="As the provider sent it; null when it sent none.")
    final: bool = Field(
        description="False while the bar may still change: received before Twelve Data's publication delay had passed."
    )


class MissingBar(BaseModel):
    """An expected bar slot with no stored candle, and why."""

    timestamp: UtcTime = Field(description="The missing bar's open, UTC.")
    reason: Literal["never fetched", "provider returned nothing", "not published yet", "grid mismatch"]
    fetches: int = Field(description="How often a window holding this slot was fetched after it closed.")
    last_fetched_at: UtcTime | None = Field(description="When it was last fetched closed, if ever.")


class GapReportResponse(BaseModel):
    """Expected, stored, missing and off-session bars of one series over [start, end)."""

    symbol: str
    timeframe: str
    calendar: str = Field(description="The trading calendar deciding which bars are expected.")
    start: UtcTime
    end: UtcTime = Field(description="Exclusive.")
    expected: int = Field(description="Bar slots overlapping a trading session.")
    stored: int = Field(description="Expected slots holding a stored candle (off-session candles counted apart).")
    missing: int = Field(description="Expected slots with no stored candle.")
    off_session: int = Field(description="Stored candles outside the trading sessions (or off the bar grid).")
    missing_by_reason: dict[str, int]
    phase_minutes: int = Field(description="The bar grid's offset from 00:00 UTC, as the stored bars show it.")
    day_held: str | None = Field(
        default=None,
        description="D1 only: how D1 bars are stored (at 00:00 UTC of Twelve Data's bare date, or at their open) "
        "and which day each holds, read off the H1 bars of the window; null without H1 bars to tell.",
    )
    missing_bars: list[MissingBar]


class SeriesAge(BaseModel):
    """The newest stored bar of one series and how long ago it closed."""

    symbol: str
    timeframe: str
    newest_bar: UtcTime | None = Field(description="Open of the newest stored bar; null when none is stored.")
    age_seconds: float | None = Field(description="Seconds since that bar closed (negative while it is forming).")
    expected_bars: int | None = Field(
        default=None, description="Closed bars the trading calendar expects since XAU_HISTORY_START."
    )
    stored_bars: int | None = Field(default=None, description="How many of them are stored.")
    history_share: float | None = Field(
        default=None, description="stored_bars / expected_bars (0 to 1): how complete the history is."
    )
    state: str | None = Field(
        default=None,
        examples=["fresh", "waiting for publication", "stale", "no bar expected"],
        description="stale: a bar that closed over 10 minutes ago is newer than the newest stored; waiting for "
        "publication: only bars that closed more recently are (Twelve Data publishes 0.3 to 2 min after a close).",
    )
    next_bar_due: UtcTime | None = Field(
        default=None, description="When the next expected bar should be stored: its close plus 2 minutes."
    )


class HealthResponse(BaseModel):
    """Whether the candle database answers; 200 when it does, 503 when not."""

    status: Literal["ok", "unavailable"]
    database: Literal["reachable", "unreachable"]
    detail: str | None = Field(default=None, description="Why the database is unusable, on one line.")
    checked_at: UtcTime
    series: list[SeriesAge]


class ErrorResponse(BaseModel):
    """Every error: one line, never a traceback."""

    detail: str = Field(examples=["limit must be from 1 to 5000, got 0"])
