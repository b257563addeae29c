"""GET /candles/{timeframe}: stored candles, newest first, as JSON pages or streamed CSV."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Annotated, Literal

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from xau_pipeline.interfaces.http import queries
from xau_pipeline.interfaces.http.models import CandleResponse
from xau_pipeline.interfaces.http.params import (
    ApiContext,
    SymbolQuery,
    TimeframePath,
    api_context,
    parse_moment,
    parse_window,
    time_query,
)
from xau_pipeline.market.symbols import stored_name
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.candle_query import DEFAULT_LIMIT, MAX_LIMIT

log = logging.getLogger("xau_pipeline.interfaces.http")

CSV_COLUMNS = ("symbol", "timeframe", "timestamp", "open", "high", "low", "close", "volume", "final")
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"

router = APIRouter(tags=["candles"])


@router.get(
    "/candles/{timeframe}",
    response_model=list[CandleResponse],
    responses={
        200: {
            "description": 'Candles, newest first. With `Link: <...>; rel="next"` when the page is full.',
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
    },
    summary="Stored candles, newest first",
)
def get_candles(
    request: Request,
    api: Annotated[ApiContext, Depends(api_context)],
    timeframe: TimeframePath,
    symbol: SymbolQuery = "XAUUSD",
    start: str | None = time_query("First bar open to include."),
    end: str | None = time_query("Bars opening at or after this are left out."),
    before: str | None = time_query(
        "Paging cursor: only bars opening before this. Pass the oldest `timestamp` of a page to get the next one."
    ),
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_LIMIT,
            description=f"At most this many candles (default {DEFAULT_LIMIT}, max {MAX_LIMIT}). "
            "CSV without a limit streams every candle of the window.",
        ),
    ] = None,
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="`csv` for CSV; also chosen by `Accept: text/csv`. Default JSON."),
    ] = None,
    final_only: Annotated[
        bool,
        Query(description="Only final bars: leave out those received before their publication could be trusted."),
    ] = False,
) -> Response:
    tf = TIMEFRAMES_BY_NAME[timeframe.value]
    start_at, end_at = parse_window(start, end)
    before_at = parse_moment(before, "before")
    name = stored_name(symbol)
    as_csv = format == "csv" or (format is None and _wants_csv(request.headers.get("accept", "")))
    if as_csv:
        query = queries.text_rows_query(name, tf.name, start_at, end_at, before_at, limit, final_only)
        chunks = queries.stream_rows(api.engine, api.timeout_ms, query)
        return StreamingResponse(
            _in_threadpool(_csv_chunks(name, tf.name, chunks)),
            media_type=CSV_MEDIA_TYPE,
            headers={"Content-Disposition": f'inline; filename="{name}_{tf.name}.csv"'},
        )
    page_size = limit or DEFAULT_LIMIT
    with queries.read_only(api.engine, api.timeout_ms) as connection:
        page = queries.json_page(connection, name, tf.name, start_at, end_at, before_at, page_size, final_only)
    headers = {}
    if page.count == page_size and page.oldest is not None:
        following = request.url.include_query_params(before=page.oldest, limit=page_size)
        headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return Response(page.body, media_type="application/json", headers=headers)


def _wants_csv(accept: str) -> bool:
    """Whether the Accept header asks for CSV before JSON."""
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if "text/csv" not in types:
        return False
    return "application/json" not in types or types.index("text/csv") < types.index("application/json")


def _csv_chunks(symbol: str, timeframe: str, chunks: Iterator[Sequence[sa.Row]]) -> Iterator[str]:
    """The CSV text, one piece per chunk of rows (header first)."""
    try:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        yield buffer.getvalue()
        for rows in chunks:
            buffer.seek(0)
            buffer.truncate()
            writer.writerows((symbol, timeframe, *row) for row in rows)
            yield buffer.getvalue()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def _in_threadpool(chunks: Iterator[str]) -> AsyncIterator[str]:
    """Iterate a blocking generator off the event loop, and close it (its transaction and connection)
    however the response ends, a client that goes away included."""
    done = object()
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, done)
            if chunk is done:
                break
            yield chunk  # type: ignore[misc]
    except Exception:
        log.exception("CSV stream aborted")
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(getattr(chunks, "close", lambda: None))
