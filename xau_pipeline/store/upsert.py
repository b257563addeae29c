"""Write candles: only new rows are inserted, only differing rows are updated, all in the caller's transaction.

The fast path diffs the incoming bars against what is stored (read with COPY TO), COPYs the
new rows straight into `candles` and sends only the changed ones through
`INSERT ... ON CONFLICT DO UPDATE ... WHERE ... IS DISTINCT FROM`. A per-series advisory lock
keeps concurrent writers of the same series from racing between the diff and the COPY; a writer
outside this module that still races makes the COPY fail, and those rows then take the
ON CONFLICT path inside a savepoint, so the result is the same.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg2.errors
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from xau_pipeline.clock import utc_now
from xau_pipeline.market.bars import Bar
from xau_pipeline.store.tables import candles

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
KEY_COLUMNS = ("symbol", "timeframe", "timestamp")
# Ten columns a row: 1000 rows stay far below PostgreSQL's 65535 bind parameters a statement.
UPSERT_BATCH = 1000
COPY_NULL = r"\N"
MAX_TIME = datetime.max.replace(tzinfo=UTC)

# Transaction-scoped: released at commit or rollback.
LOCK_SERIES = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:series, 0))")

SELECT_STORED = """
COPY (
    SELECT floor(extract(epoch FROM "timestamp"))::bigint, open, high, low, close, volume, final
    FROM candles
    WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s
      AND "timestamp" BETWEEN %(first)s AND %(last)s
) TO STDOUT
"""

COPY_INTO_CANDLES = """
COPY candles (symbol, timeframe, "timestamp", open, high, low, close, volume, fetched_at, updated_at, final)
FROM STDIN
"""


@dataclass(frozen=True)
class UpsertCounts:
    """What a write did to `candles`."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated


def _text(value: Decimal | None) -> str:
    # Fixed-point text is what PostgreSQL prints back for NUMERIC, so equal text means equal value.
    return COPY_NULL if value is None else format(value, "f")


def _values_text(bar: Bar) -> tuple[str, ...]:
    return tuple(_text(getattr(bar, column)) for column in PRICE_COLUMNS)


def _same_values(stored: tuple[str, ...], bar: Bar) -> bool:
    for text, value in zip(stored, (getattr(bar, c) for c in PRICE_COLUMNS)):
        if (text == COPY_NULL) != (value is None):
            return False
        if value is not None and Decimal(text) != value:
            return False
    return True


def _stored_values(
    cursor, symbol: str, timeframe: str, first: datetime, last: datetime
) -> dict[int, tuple[tuple[str, ...], bool]]:
    buffer = io.StringIO()
    query = cursor.mogrify(SELECT_STORED, {"symbol": symbol, "timeframe": timeframe, "first": first, "last": last})
    cursor.copy_expert(query.decode(), buffer)
    stored = {}
    for line in buffer.getvalue().splitlines():
        epoch, *values, final = line.split("\t")
        stored[int(epoch)] = (tuple(values), final == "t")
    return stored


def _copy_rows(cursor, symbol: str, timeframe: str, bars: Sequence[Bar], now: datetime, final_before: datetime) -> None:
    stamp = now.isoformat()
    buffer = io.StringIO()
    buffer.writelines(
        f"{symbol}\t{timeframe}\t{bar.open_time.isoformat()}\t{chr(9).join(_values_text(bar))}\t{stamp}\t{stamp}"
        f"\t{'t' if bar.open_time < final_before else 'f'}\n"
        for bar in bars
    )
    buffer.seek(0)
    cursor.copy_expert(COPY_INTO_CANDLES, buffer)


def upsert_statement(rows: list[dict]):
    """INSERT ... ON CONFLICT DO UPDATE that touches a stored row only when a value differs, or when a
    provisional row is confirmed final (a final row with the same values is never made provisional)."""
    statement = pg_insert(candles).values(rows)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={c: excluded[c] for c in (*PRICE_COLUMNS, "fetched_at", "updated_at", "final")},
        where=sa.or_(
            *(candles.c[c].is_distinct_from(excluded[c]) for c in PRICE_COLUMNS),
            sa.and_(sa.not_(candles.c.final), excluded.final),
        ),
    ).returning(sa.literal_column("xmax = 0").label("inserted"))


def _upsert_rows(
    connection: sa.Connection, symbol: str, timeframe: str, bars: Sequence[Bar], now: datetime, final_before: datetime
) -> tuple[int, int]:
    inserted = updated = 0
    for offset in range(0, len(bars), UPSERT_BATCH):
        rows = [
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "timestamp": bar.open_time,
                **{c: getattr(bar, c) for c in PRICE_COLUMNS},
                "fetched_at": now,
                "updated_at": now,
                "final": bar.open_time < final_before,
            }
            for bar in bars[offset : offset + UPSERT_BATCH]
        ]
        for (was_inserted,) in connection.execute(upsert_statement(rows)):
            inserted += was_inserted
            updated += not was_inserted
    return inserted, updated


def upsert_bars(
    connection: sa.Connection,
    symbol: str,
    timeframe: str,
    bars: Sequence[Bar],
    now: datetime | None = None,
    final_before: datetime | None = None,
) -> UpsertCounts:
    """Store `bars` (ascending, unique open times) for one series within the caller's transaction.

    Bars opening before `final_before` are stored final, the others provisional (None: all final).
    A provisional row confirmed final, or any row whose values change, counts as updated.
    """
    if not bars:
        return UpsertCounts()
    now = now or utc_now()
    final_before = final_before or MAX_TIME
    connection.execute(LOCK_SERIES, {"series": f"{symbol}/{timeframe}"})
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None, "a connection checked out of the pool has a DBAPI connection"
    cursor = dbapi_connection.cursor()
    try:
        stored = _stored_values(cursor, symbol, timeframe, bars[0].open_time, bars[-1].open_time)
        new_rows: list[Bar] = []
        changed: list[Bar] = []
        for bar in bars:
            row = stored.get(math.floor(bar.open_time.timestamp()))
            if row is None:
                new_rows.append(bar)
                continue
            values, final = row
            differs = values != _values_text(bar) and not _same_values(values, bar)
            if differs or (not final and bar.open_time < final_before):
                changed.append(bar)
        inserted = updated = 0
        if new_rows:
            try:
                with connection.begin_nested():
                    _copy_rows(cursor, symbol, timeframe, new_rows, now, final_before)
                inserted = len(new_rows)
            except psycopg2.errors.UniqueViolation:
                # Another writer stored some of these rows meanwhile: merge them instead.
                inserted, updated = _upsert_rows(connection, symbol, timeframe, new_rows, now, final_before)
        if changed:
            more_inserted, more_updated = _upsert_rows(connection, symbol, timeframe, changed, now, final_before)
            inserted += more_inserted
            updated += more_updated
    finally:
        cursor.close()
    return UpsertCounts(inserted, updated, len(bars) - inserted - updated)
