"""Reading stored candles back: pandas DataFrames with exact Decimal prices.

    from xau_pipeline.interfaces.dataframes import load_candles
    df = load_candles("H1", "2024-01-01", "2024-02-01")

Prices come back as `decimal.Decimal` (dtype object), exactly the digits stored; timestamps are
the bars' open times, tz-aware UTC. Windows are half-open: start <= timestamp < end.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

import pandas as pd
import sqlalchemy as sa

from xau_pipeline.market.symbols import stored_name
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.market.timeframes import timeframe as lookup_timeframe
from xau_pipeline.settings import Settings
from xau_pipeline.store.candle_query import COLUMNS, candle_query
from xau_pipeline.store.candle_store import CandleStore

UTC = UTC
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")

TimeLike = datetime | date | str | None

_TIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?)?", re.IGNORECASE)


def parse_time(value: datetime | date | str, what: str = "time") -> datetime:
    """A UTC datetime from `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM]` or a (date)time.

    Naive values are taken as UTC; an explicit offset is converted to UTC.
    """
    if isinstance(value, str):
        text = value.strip()
        if not _TIME_TEXT.fullmatch(text):
            raise ValueError(f"{what} {value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (UTC)")
        try:
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "zZ" else text)
        except ValueError as exc:
            raise ValueError(f"{what} {text!r} is not a valid date: {exc}") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time.min)
    elif not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, a date or a string, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _window(start: TimeLike, end: TimeLike) -> tuple[datetime | None, datetime | None]:
    start_at = None if start is None else parse_time(start, "start")
    end_at = None if end is None else parse_time(end, "end")
    if start_at is not None and end_at is not None and start_at > end_at:
        raise ValueError(f"start {start_at:%Y-%m-%dT%H:%M:%SZ} is after end {end_at:%Y-%m-%dT%H:%M:%SZ}")
    return start_at, end_at


def _series_query(
    timeframe: str | Timeframe,
    start: TimeLike,
    end: TimeLike,
    symbol: str,
    limit: int | None,
    newest_first: bool,
    final_only: bool = False,
):
    tf = timeframe if isinstance(timeframe, Timeframe) else lookup_timeframe(timeframe)
    start_at, end_at = _window(start, end)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    return candle_query(stored_name(symbol), tf.name, start_at, end_at, None, limit, newest_first, final_only)


def _frame(rows: list[sa.Row]) -> pd.DataFrame:
    data: dict[str, pd.Series] = {
        "timestamp": pd.Series(pd.DatetimeIndex([row.timestamp for row in rows], dtype="datetime64[us, UTC]"))
    }
    for name in PRICE_COLUMNS:
        data[name] = pd.Series([getattr(row, name) for row in rows], dtype=object)
    data["final"] = pd.Series([row.final for row in rows], dtype=bool)
    return pd.DataFrame(data, columns=list(COLUMNS))


def _fetch(query: sa.Select, database_url: str | None, store: CandleStore | None) -> pd.DataFrame:
    if store is None:
        store = CandleStore(database_url or Settings.from_env().database_url)
        store.require_current_schema()
    return _frame(store.read(query))


def load_candles(
    timeframe: str | Timeframe,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    symbol: str = "XAUUSD",
    database_url: str | None = None,
    limit: int | None = None,
    store: CandleStore | None = None,
    final_only: bool = False,
    newest_first: bool = False,
) -> pd.DataFrame:
    """Stored candles opening in [start, end), oldest first (at most `limit`, the oldest ones; final
    ones only with `final_only`; the newest ones, newest first, with `newest_first`).

    Columns: timestamp (UTC), open, high, low, close, volume (Decimal or None), final (False while
    the bar may still change: received before Twelve Data's publication delay had passed). `database_url`
    defaults to XAU_DATABASE_URL (or pass an open `store`). Raises ValueError for a bad timeframe,
    date or limit, StoreUnavailableError when the database cannot be reached and SchemaNotCurrentError
    before `xau-pipeline migrate` has run.
    """
    query = _series_query(timeframe, start, end, symbol, limit, newest_first, final_only)
    return _fetch(query, database_url, store)


def newest_candles(
    timeframe: str | Timeframe, start: TimeLike = None, end: TimeLike = None, *, limit: int | None = 100, **options: Any
) -> pd.DataFrame:
    """The newest `limit` candles opening in [start, end), newest first; the other keywords and the
    columns as `load_candles`."""
    return load_candles(timeframe, start, end, limit=limit, newest_first=True, **options)


__all__ = ["COLUMNS", "load_candles", "newest_candles", "parse_time"]
