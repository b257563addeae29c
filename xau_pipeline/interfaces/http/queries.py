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

from xau_pipeline.store.database import normalize_url
from xau_pipeline.store.tables import candles

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "final")
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
JSON_LINES = """
SELECT concat(c."timestamp", E'\\x01', c.open, E'\\x02', c.high, E'\\x03', c.low, E'\\x04', c.close,
              E'\\x05', c.volume, E'\\x07', c.final)
FROM candles c
WHERE {where} ORDER BY c."timestamp" DESC LIMIT %(limit)s
"""

# The same rows as text columns, for CSV.
TEXT_ROWS = """
SELECT {timestamp} AS "timestamp", c.open::text AS open, c.high::text AS high, c.low::text AS low,
       c.close::text AS close, c.volume::text AS volume, CASE WHEN c.final THEN 'true' ELSE 'false' END AS final
FROM candles c
WHERE {where} ORDER BY c."timestamp" DESC {limit}
"""

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


def candle_query(
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    before: datetime | None,
    limit: int | None,
    newest_first: bool = True,
    final_only: bool = False,
) -> sa.Select:
    """Candles of one series opening in [start, end) and before `before`, newest first, at most `limit`
    (final ones only with `final_only`): the one candle query of the API, the CLI and `load_candles`."""
    conditions = [candles.c.symbol == symbol, candles.c.timeframe == timeframe]
    if final_only:
        conditions.append(candles.c.final)
    if start is not None:
        conditions.append(candles.c.timestamp >= start)
    for bound in (end, before):
        if bound is not None:
            conditions.append(candles.c.timestamp < bound)
    order = candles.c.timestamp.desc() if newest_first else candles.c.timestamp.asc()
    query = sa.select(*(candles.c[name] for name in COLUMNS)).where(*conditions).order_by(order)
    return query if limit is None else query.limit(limit)


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


def _where(
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    before: datetime | None,
    placeholder: str = ":{}",
    final_only: bool = False,
) -> tuple[str, dict[str, object]]:
    clauses = [f"c.symbol = {placeholder.format('symbol')}", f"c.timeframe = {placeholder.format('timeframe')}"]
    if final_only:
        clauses.append("c.final")
    params: dict[str, object] = {"symbol": symbol, "timeframe": timeframe}
    for name, bound, op in (("start", start, ">="), ("end", end, "<"), ("before", before, "<")):
        if bound is not None:
            clauses.append(f'c."timestamp" {op} {placeholder.format(name)}')
            params[name] = bound
    return " AND ".join(clauses), params


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
    where, params = _where(symbol, timeframe, start, end, before, placeholder="%({})s", final_only=final_only)
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    copy = (
        "COPY (" + cursor.mogrify(JSON_LINES.format(where=where), {**params, "limit": limit}).decode() + ") TO STDOUT"
    )
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
) -> sa.TextClause:
    """Candles as text columns (timestamp, open, high, low, close, volume, final), newest first."""
    where, params = _where(symbol, timeframe, start, end, before, final_only=final_only)
    sql = TEXT_ROWS.format(timestamp=TIMESTAMP_TEXT, where=where, limit="" if limit is None else "LIMIT :limit")
    return sa.text(sql).bindparams(**params, **({} if limit is None else {"limit": limit}))


def newest_bars(connection: sa.Connection, series: Sequence[tuple[str, str]]) -> list[tuple[str, str, datetime | None]]:
    """(symbol, timeframe, newest stored bar open or None) for each series, in order."""
    rows = connection.execute(
        NEWEST_BARS, {"symbols": [s for s, _ in series], "timeframes": [t for _, t in series]}
    ).all()
    return [(row.symbol, row.timeframe, row.newest) for row in rows]
