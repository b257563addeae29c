"""GET /chart/{timeframe}: an HTML candlestick chart with the missing bars marked, and its script."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from xau_pipeline.interfaces.http import chart, queries
from xau_pipeline.interfaces.http.params import (
    SeriesParameters,
    check_span,
    parse_window,
    time_query,
)
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.store.candle_query import MAX_LIMIT
from xau_pipeline.store.gap_window import DEFAULT_GAP_WINDOW
from xau_pipeline.store.gaps import find_gaps

DEFAULT_CHART_BARS = 500

router = APIRouter(tags=["chart"])
# The chart's script: open to all, like the docs (no token).
script_router = APIRouter()


@router.get(
    "/chart/{timeframe}",
    response_class=HTMLResponse,
    responses={
        200: {"description": "An HTML page with the candlestick chart."},
    },
    summary="Candlestick chart with the missing bars marked",
)
def get_chart(
    asked: SeriesParameters,
    start: str | None = time_query("Window start (default: as far back as `limit` bars reach)."),
    end: str | None = time_query("Window end, exclusive (default: just after the newest bar shown)."),
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"The newest this many bars of the window (max {MAX_LIMIT}).")
    ] = DEFAULT_CHART_BARS,
    final_only: Annotated[bool, Query(description="Only final bars (bars not final yet are drawn apart).")] = False,
) -> HTMLResponse:
    api = asked.api
    tf, name, trading_calendar, now = asked.tf, asked.name, asked.calendar, asked.now
    start_at, end_at = parse_window(start, end)
    query = queries.candle_query(name, tf.name, start_at, end_at, None, limit, True, final_only)
    with queries.read_only(api.engine, api.timeout_ms) as connection:
        rows = list(reversed(connection.execute(query).all()))
        window = _chart_window(rows, tf, start_at, end_at, limit, now)
        report = None
        if window[0] < window[1]:
            check_span(tf, *window)
            report = find_gaps(connection, name, tf.name, tf.bar, trading_calendar, *window, now)
    off_session: set[datetime] = set()
    if report is not None and report.off_session:
        expected = set(trading_calendar.expected_slots(*window, tf.bar, report.phase))
        off_session = {row.timestamp for row in rows if row.timestamp not in expected}
    # From a week before the window: the closure the window opens in is left out too.
    closed = chart.closures(trading_calendar.sessions(window[0] - timedelta(days=7), window[1] + tf.bar), tf.bar)
    return HTMLResponse(chart.page(name, tf.name, rows, off_session, report, window, asked.calendar_name, closed))


@script_router.get(chart.PLOTLY_JS_ROUTE, include_in_schema=False)
def plotly_js() -> Response:
    return Response(
        _plotly_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=31536000, immutable"}
    )


def _chart_window(
    rows: Sequence[sa.Row], tf: Timeframe, start: datetime | None, end: datetime | None, limit: int, now: datetime
) -> tuple[datetime, datetime]:
    """The span the chart checks for gaps: the bars shown (from `start` when it is not cut off by
    `limit`, to `end` when given); with no bars, [start, end) or the last 7 days."""
    if rows:
        first = rows[0].timestamp if start is None or len(rows) == limit else start
        last = end if end is not None else rows[-1].timestamp + tf.bar
    else:
        last = end if end is not None else now
        first = start if start is not None else last - DEFAULT_GAP_WINDOW
    return first, max(first, last)


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    return get_plotlyjs()
