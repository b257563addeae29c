"""The one query that reads candles back: one series, a half-open window, newest or oldest first.

The API (its JSON, CSV and chart forms), the CLI, `load_candles` and the store's checks all read
through `candle_query`; they differ only in the columns they select.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from xau_pipeline.store.tables import candles

# How many candles a read returns unless asked (the API, the CLI), and the most one read returns.
DEFAULT_LIMIT = 100
MAX_LIMIT = 5000
COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "final")
OHLC = ("timestamp", "open", "high", "low", "close")
# The candles table as `c`, so that column expressions written in SQL (the API's text forms) can name it.
CANDLES = candles.alias("c")


def candle_query(
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    before: datetime | None = None,
    limit: int | None = None,
    newest_first: bool = True,
    final_only: bool = False,
    columns: Sequence[str | sa.ColumnElement] = COLUMNS,
) -> sa.Select:
    """Candles of one series opening in [start, end) and before `before`, newest first (or oldest
    first), at most `limit`, final ones only with `final_only`; `columns` are names of CANDLES'
    columns or expressions over it."""
    conditions = [CANDLES.c.symbol == symbol, CANDLES.c.timeframe == timeframe]
    if final_only:
        conditions.append(CANDLES.c.final)
    if start is not None:
        conditions.append(CANDLES.c.timestamp >= start)
    for bound in (end, before):
        if bound is not None:
            conditions.append(CANDLES.c.timestamp < bound)
    order = CANDLES.c.timestamp.desc() if newest_first else CANDLES.c.timestamp.asc()
    selected = [CANDLES.c[column] if isinstance(column, str) else column for column in columns]
    query = sa.select(*selected).where(*conditions).order_by(order)
    return query if limit is None else query.limit(limit)
