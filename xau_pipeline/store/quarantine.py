"""Bars kept out of `candles`, with their raw values, the reason and when they were fetched."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from xau_pipeline.market.quarantine_rule import Rejected
from xau_pipeline.store.database import insert_series_rows
from xau_pipeline.store.tables import candle_quarantine


def record_rejected(
    connection: sa.Connection,
    symbol: str,
    timeframe: str,
    rejected: Sequence[Rejected],
    fetched_at: datetime,
    run_id: str | None,
) -> None:
    """Quarantine `rejected` bars, in the caller's transaction."""
    rows = (
        {"bar_time": r.open_time, "raw": r.raw, "reason": r.reason, "fetched_at": fetched_at, "run_id": run_id}
        for r in rejected
    )
    insert_series_rows(connection, candle_quarantine, symbol, timeframe, rows)


def quarantined(
    connection: sa.Connection, symbol: str, timeframe: str, start: datetime, end: datetime, limit: int
) -> tuple[int, list[sa.Row]]:
    """How many quarantined bars of a series open in [start, end) (or, unreadable, were fetched then),
    and the newest `limit` of them."""
    q = candle_quarantine.c
    where = sa.and_(
        q.symbol == symbol,
        q.timeframe == timeframe,
        sa.or_(
            sa.and_(q.bar_time >= start, q.bar_time < end),
            sa.and_(q.bar_time.is_(None), q.fetched_at >= start, q.fetched_at < end),
        ),
    )
    count = connection.execute(sa.select(sa.func.count()).where(where)).scalar_one()
    rows = connection.execute(
        sa.select(q.bar_time, q.reason, q.raw, q.fetched_at).where(where).order_by(q.id.desc()).limit(limit)
    )
    return int(count), list(rows)
