"""GET /health: is the database reachable; per series its newest bar, state and next bar due."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from xau_pipeline.interfaces.http import queries
from xau_pipeline.interfaces.http.errors import _database_problem
from xau_pipeline.interfaces.http.models import HealthResponse, SeriesAge
from xau_pipeline.interfaces.http.params import ApiContext, api_context
from xau_pipeline.market.market_hours import TradingCalendar
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store import gaps, series_grid
from xau_pipeline.store.freshness import series_freshness

HEALTH_STATEMENT_TIMEOUT_MS = 2000

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "The candle database cannot be used."}},
    summary="Is the database reachable; how old is the newest bar of each series",
)
def get_health(api: Annotated[ApiContext, Depends(api_context)]) -> JSONResponse:
    now = api.clock()
    try:
        with queries.read_only(api.engine, min(api.timeout_ms, HEALTH_STATEMENT_TIMEOUT_MS)) as connection:
            newest = queries.newest_bars(connection, api.health_series)
            fresh = {
                (symbol, tf_name): series_freshness(
                    connection, symbol, TIMEFRAMES_BY_NAME[tf_name], api.calendar_of(symbol)[1], now
                )
                for symbol, tf_name in api.health_series
            }
            shares = {
                (symbol, tf_name): history_share(
                    connection, symbol, tf_name, api.calendar_of(symbol)[1], api.since, now
                )
                for symbol, tf_name in api.health_series
                if api.since is not None
            }
    except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
        orig = getattr(exc, "orig", None)
        reachable = getattr(orig, "pgcode", None) is not None
        report = HealthResponse(
            status="unavailable",
            database="reachable" if reachable else "unreachable",
            detail=_database_problem(exc, api.timeout_ms, api.password),
            checked_at=now,
            series=[],
        )
        return JSONResponse(report.model_dump(mode="json"), status_code=503)
    report = HealthResponse(
        status="ok",
        database="reachable",
        checked_at=now,
        series=[
            SeriesAge(
                symbol=symbol,
                timeframe=tf_name,
                newest_bar=stamp,
                age_seconds=None
                if stamp is None
                else round((now - (stamp + TIMEFRAMES_BY_NAME[tf_name].bar)).total_seconds(), 3),
                **_share_fields(shares.get((symbol, tf_name))),
                state=fresh[(symbol, tf_name)].state,
                next_bar_due=fresh[(symbol, tf_name)].next_due,
            )
            for symbol, tf_name, stamp in newest
        ],
    )
    return JSONResponse(report.model_dump(mode="json"))


def history_share(
    connection: sa.Connection, symbol: str, tf_name: str, policy: TradingCalendar, since: datetime, now: datetime
) -> tuple[int, int]:
    """(expected, stored): the closed bars one series' calendar expects since the history start, and how
    many of them are stored (xau_pipeline.defs.automation.catch_up_sensor's progress)."""
    tf = TIMEFRAMES_BY_NAME[tf_name]
    grid = series_grid.detect_series_grid(connection, symbol, tf.name, tf.bar).grid
    return gaps.stored_share(connection, grid, symbol, tf.name, tf.bar, policy, since, now)


def _share_fields(share: tuple[int, int] | None) -> dict[str, Any]:
    if share is None:
        return {}
    expected, stored = share
    return {
        "expected_bars": expected,
        "stored_bars": stored,
        "history_share": round(stored / expected, 4) if expected else 1.0,
    }
