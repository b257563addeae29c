"""GET /candles/{timeframe}/gaps: the expected bars with no stored candle in a window, and why."""

from __future__ import annotations

from fastapi import APIRouter

from xau_pipeline.interfaces.http import queries
from xau_pipeline.interfaces.http.models import GapReportResponse, MissingBar
from xau_pipeline.interfaces.http.params import (
    SeriesParameters,
    check_span,
    parse_window,
    time_query,
)
from xau_pipeline.store.gap_window import gap_window
from xau_pipeline.store.gaps import NEVER_FETCHED, NOT_PUBLISHED, PROVIDER_EMPTY, find_gaps
from xau_pipeline.store.quality import day_cover

router = APIRouter(tags=["candles"])


@router.get(
    "/candles/{timeframe}/gaps",
    response_model=GapReportResponse,
    summary="Expected bars with no stored candle, and why",
)
def get_gaps(
    asked: SeriesParameters,
    start: str | None = time_query("Window start (default: 7 days before the end)."),
    end: str | None = time_query("Window end, exclusive (default: now)."),
) -> GapReportResponse:
    api = asked.api
    tf, name, trading_calendar, now = asked.tf, asked.name, asked.calendar, asked.now
    start_at, end_at = gap_window(*parse_window(start, end), now)
    check_span(tf, start_at, end_at)
    with queries.read_only(api.engine, api.timeout_ms) as connection:
        report = find_gaps(connection, name, tf.name, tf.bar, trading_calendar, start_at, end_at, now)
        cover = day_cover(connection, name, start_at, end_at) if tf.name == "D1" else None
    held = cover.describe() if cover is not None and cover.compared else None
    return GapReportResponse(
        symbol=name,
        timeframe=tf.name,
        calendar=asked.calendar_name,
        start=start_at,
        end=end_at,
        expected=report.expected,
        stored=report.present,
        missing=report.missing,
        off_session=report.off_session,
        missing_by_reason={reason: report.count(reason) for reason in (NEVER_FETCHED, PROVIDER_EMPTY, NOT_PUBLISHED)},
        phase_minutes=int(report.phase.total_seconds()) // 60,
        day_held=held,
        missing_bars=[
            MissingBar(
                timestamp=gap.slot,
                reason=gap.reason,  # type: ignore[arg-type]
                fetches=gap.fetches,
                last_fetched_at=gap.last_fetched_at,
            )
            for gap in report.gaps
        ],
    )
