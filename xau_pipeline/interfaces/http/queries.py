"""The API's reads: each in a read-only transaction with a statement timeout.

Nothing here writes, migrates or creates anything: the API works on a database the pipeline (or
`xau-pipeline migrate`) has set up, and a database without the schema is reported, not fixed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg2
import sqlalchemy as sa

from xau_pipeline.store.candle_query import COLUMNS, candle_query
from xau_pipeline.store.database import normalize_url

__all__ = ["COLUMNS", "candle_query"]

CONNECT_TIMEOUT_SECONDS = 5
POOL_SIZE = 8
POOL_OVERFLOW = 8
POOL_TIMEOUT_SECONDS = 10
STREAM_CHUNK_ROWS = 2000

# A bar's open as the API shows it, `YYYY-MM-DDTHH:MM:SSZ`: the UTC time's text under DateStyle ISO
# (set in every read transaction), `YYYY-MM-DD HH:MM:SS`, with a T and a Z. A third cheaper than to_char.
TIMESTAMP_TEXT = """(overlay(left((c."timestamp" AT TIME ZONE 'UTC')::text, 19) placing 'T' from 11) || 'Z')"""

# One page of candles for the JSON array the API returns: COPY of one text line per bar, its
# fields split by the control characters \x01..\x05 (COPY passes them through as they are), then
# turned into JSON by a few whole-buffer byte replacements (json_page). Prices go as numeric's
# text, the stored value's exact digits (what format(Decimal, "f") gives); the open as
# timestamptz's text under TimeZone UTC and DateStyle ISO (set in every read transaction),
# `YYYY-MM-DD HH:MM:SS+00`. No value passes through a Python object: a 5000-bar page costs about
# twice a COPY of the same rows, where Decimal, datetime and Pydantic objects cost ten times and
# a string_agg of the JSON in SQL three. The fields and their order are CandleResponse's, and the
# tests compare the two byte for byte.
JSON_LINE: sa.ColumnElement[str] = sa.literal_column(
    """concat(c."timestamp", E'\\x01', c.open, E'\\x02', c.high, E'\\x03', c.low, E'\\x04', c.close,
              E'\\x05', c.volume, E'\\x07', c.final)"""
)

# The same rows as text columns, for CSV.
TEXT_COLUMNS: tuple[sa.ColumnElement[str], ...] = (
    sa.literal_column(TIMESTAMP_TEXT).label("timestamp"),
    *(sa.literal_column(f"c.{name}::text").label(name) for name in ("open", "high", "low", "close", "volume")),
    sa.literal_column("CASE WHEN c.final THEN 'true' ELSE 'false' END").label("final"),
)

# The newest stored bar of each (symbol, timeframe) asked for: one primary-key probe each.
NEWEST_BARS = sa.text(
    """
    SELECT s.symbol, s.timeframe,
           (SELECT max(c."timestamp") FROM candles c WHERE c.symbol = s.symbol AND c.timeframe = s.timeframe)
               AS newest
    FROM unnest(CAST(:symbols AS text[]), CAST(:timeframes AS text[])) WITH ORDINALITY AS s(symbol, timeframe, n)
    ORDER BY s.n
    """
)


def read_engine(database_url: str) -> sa.Engine:
    """An engine of the API's own: a bounded pool, a connect timeout, a name in pg_stat_activity."""
    return sa.create_engine(
        normalize_url(database_url),
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": "xau-pipeline-api"},
    )


def _begin_read_only(connection: sa.Connection, timeout_ms: int) -> None:
    # psycopg2 opens the transaction implicitly, so this is its first statement, as it must be.
    # One round trip for the four.
    connection.exec_driver_sql(
        f"SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = {int(timeout_ms)}; "
        "SET LOCAL DateStyle = 'ISO'; SET LOCAL TimeZone = 'UTC'"
    )


@contextmanager
def read_only(engine: sa.Engine, timeout_ms: int) -> Iterator[sa.Connection]:
    """A connection inside `BEGIN READ ONLY` with `SET LOCAL statement_timeout`, rolled back after."""
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            _begin_read_only(connection, timeout_ms)
            yield connection
        finally:
            transaction.rollback()


def stream_rows(engine: sa.Engine, timeout_ms: int, query: sa.Executable) -> Iterator[Sequence[sa.Row]]:
    """Chunks of rows from a server-side cursor, in one read-only transaction held until exhausted or closed.

    The query runs (and fails, if it does) before this returns; the rows are fetched as the
    caller iterates, STREAM_CHUNK_ROWS at a time, so memory stays bounded however long the range.
    """
    connection = engine.connect()
    try:
        transaction = connection.begin()
        _begin_read_only(connection, timeout_ms)
        result = connection.execution_options(stream_results=True, yield_per=STREAM_CHUNK_ROWS).execute(query)
    except BaseException:
        connection.close()
        raise

    def chunks() -> Iterator[Sequence[sa.Row]]:
        try:
            yield from result.partitions(STREAM_CHUNK_ROWS)
        finally:
            result.close()
            transaction.rollback()
            connection.close()

    return chunks()


@dataclass(frozen=True)
class JsonPage:
    """A page of candles rendered as JSON: how many, and the oldest one's open (the next page's cursor)."""

    body: bytes
    count: int
    oldest: str | None


def json_page(
    connection: sa.Connection,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    before: datetime | None,
    limit: int,
    final_only: bool = False,
) -> JsonPage:
    """The newest `limit` candles of [start, end) opening before `before`, as a JSON array, newest first
    (final ones only with `final_only`)."""
    query = candle_query(symbol, timeframe, start, end, before, limit, final_only=final_only, columns=(JSON_LINE,))
    compiled = query.compile(dialect=connection.dialect)
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    copy = "COPY (" + cursor.mogrify(compiled.string, compiled.params).decode() + ") TO STDOUT"
    buffer = io.BytesIO()
    try:
        cursor.copy_expert(copy, buffer)
    except psycopg2.Error as exc:  # as SQLAlchemy would have raised it: the API's handlers expect that
        raise sa.exc.DBAPIError.instance(copy, None, exc, psycopg2.Error) from None
    finally:
        cursor.close()
    lines = buffer.getvalue()
    count = lines.count(b"\n")
    if not count:
        return JsonPage(b"[]", 0, None)
    last = lines[lines.rfind(b"\n", 0, len(lines) - 1) + 1 :]
    oldest = last[: last.index(b"\x01")]
    prefix = ('{"symbol":' + json.dumps(symbol) + ',"timeframe":' + json.dumps(timeframe) + ',"timestamp":"').encode()
    # `2024-01-02 15:30:00+00\x01<open>\x02<high>\x03<low>\x04<close>\x05<volume or nothing>\x07<t|f>\n` per
    # bar: the only space is the timestamp's, the only "+00" its offset; \x06 ends a bar until the last step.
    body = lines.replace(b" ", b"T").replace(b"+00\x01", b'Z","open":"')
    body = body.replace(b"\x02", b'","high":"').replace(b"\x03", b'","low":"').replace(b"\x04", b'","close":"')
    body = body.replace(b"\x05\x07", b'","volume":null,"final":').replace(b"\x05", b'","volume":"')
    body = body.replace(b"\x07", b'","final":').replace(b"t\n", b"true}\x06").replace(b"f\n", b"false}\x06")
    body = b"[" + prefix + body[:-1].replace(b"\x06", b"," + prefix) + b"]"
    return JsonPage(body, count, oldest.replace(b" ", b"T").replace(b"+00", b"Z").decode())


def text_rows_query(
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    before: datetime | None,
    limit: int | None,
    final_only: bool = False,
) -> sa.Select:
    """Candles as text columns (timestamp, open, high, low, close, volume, final), newest first."""
    return candle_query(symbol, timeframe, start, end, before, limit, final_only=final_only, columns=TEXT_COLUMNS)


def newest_bars(connection: sa.Connection, series: Sequence[tuple[str, str]]) -> list[tuple[str, str, datetime | None]]:
    """(symbol, timeframe, newest stored bar open or None) for each series, in order."""
    rows = connection.execute(
        NEWEST_BARS, {"symbols": [s for s, _ in series], "timeframes": [t for _, t in series]}
    ).all()
    return [(row.symbol, row.timeframe, row.newest) for row in rows]
