"""The API's request parameters: their types, limits and parsing, and the context routes read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Path, Query, Request

from xau_pipeline.clock import EPOCH
from xau_pipeline.interfaces.dataframes import parse_time
from xau_pipeline.interfaces.http.models import TimeframeName, iso_utc
from xau_pipeline.market.market_hours import TradingCalendar, calendar
from xau_pipeline.market.symbols import DEFAULT_CALENDAR, stored_name
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME, Timeframe
from xau_pipeline.store.gap_window import GapWindowTooLongError, check_gap_window

DEFAULT_STATEMENT_TIMEOUT_MS = 5000
EARLIEST = EPOCH
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
# parse_time's forms, spelled out for the OpenAPI schema: years 1970-2199, ASCII digits. (Which
# day a month has, and start <= end, are checked by the server: a schema cannot say them.)
TIME_PATTERN = (
    r"^(19[7-9][0-9]|2[01][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([Tt]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?([Zz]|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?)?$"
)
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9/._-]{0,31}$"


class InputError(ValueError):
    """A bad parameter: 400 with its message."""


SymbolQuery = Annotated[
    str, Query(pattern=SYMBOL_PATTERN, description="Stored symbol name (`XAU/USD` is read as `XAUUSD`).")
]
TimeframePath = Annotated[TimeframeName, Path(description="M15, H1, H4 or D1.")]


def time_query(description: str) -> Any:
    return Query(
        default=None,
        pattern=TIME_PATTERN,
        description=f"{description} `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]`, UTC unless an offset (`Z`, `+02:00`) is given.",
        examples=["2024-03-01", "2024-03-01T12:30:00Z"],
    )


def parse_moment(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = parse_time(value, what)
    except (ValueError, OverflowError) as exc:
        raise InputError(str(exc) if isinstance(exc, ValueError) else f"{what} {value!r} is out of range") from None
    if not EARLIEST <= moment <= LATEST:
        raise InputError(f"{what} {value!r} is out of range: use dates from 1970-01-01 to 2200-01-01")
    return moment


def parse_window(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    start_at, end_at = parse_moment(start, "start"), parse_moment(end, "end")
    if start_at is not None and end_at is not None and start_at > end_at:
        raise InputError(f"start {iso_utc(start_at)} is after end {iso_utc(end_at)}")
    return start_at, end_at


def check_span(tf: Timeframe, start: datetime, end: datetime) -> None:
    try:
        check_gap_window(tf.name, tf.bar, start, end)
    except GapWindowTooLongError as exc:
        raise InputError(str(exc)) from None


@dataclass(frozen=True)
class ApiContext:
    """What every route reads: the engine, its statement timeout, the clock and the symbols' calendars."""

    engine: sa.Engine
    timeout_ms: int
    password: str | None
    clock: Callable[[], datetime]
    calendars: dict[str, str]
    health_series: list[tuple[str, str]]
    since: datetime | None

    def calendar_of(self, symbol: str) -> tuple[str, TradingCalendar]:
        name = self.calendars.get(symbol, DEFAULT_CALENDAR)
        return name, calendar(name)


def api_context(request: Request) -> ApiContext:
    return request.app.state.api


@dataclass(frozen=True)
class AskedSeries:
    """The series a gaps or chart request asks about: its timeframe, stored symbol name and
    calendar, the moment it was asked, and the API's context."""

    api: ApiContext
    tf: Timeframe
    name: str
    calendar_name: str
    calendar: TradingCalendar
    now: datetime


def asked_series(
    api: Annotated[ApiContext, Depends(api_context)], timeframe: TimeframePath, symbol: SymbolQuery = "XAUUSD"
) -> AskedSeries:
    """A dependency of the routes that read one series."""
    name = stored_name(symbol)
    calendar_name, trading_calendar = api.calendar_of(name)
    return AskedSeries(api, TIMEFRAMES_BY_NAME[timeframe.value], name, calendar_name, trading_calendar, api.clock())


SeriesParameters = Annotated[AskedSeries, Depends(asked_series)]
