"""The FastAPI application: `create_app(database_url, token=None, ...)`, its routers under routers/.

Read-only: every request reads in its own `BEGIN READ ONLY` transaction with a statement timeout
(queries.py). Stateless: nothing is kept between requests but a connection pool, so any number
of instances can serve the same database. Errors: errors.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import make_url

from xau_pipeline.clock import utc_now
from xau_pipeline.interfaces.http import queries
from xau_pipeline.interfaces.http.errors import (
    AUTH_ERROR,
    ERRORS,
    html_errors,
    install_error_handlers,
    openapi_without_422,
)
from xau_pipeline.interfaces.http.params import DEFAULT_STATEMENT_TIMEOUT_MS, ApiContext
from xau_pipeline.interfaces.http.routers import candles, chart, gaps, health
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES

__all__ = ["DEFAULT_STATEMENT_TIMEOUT_MS", "create_app"]

DESCRIPTION = (
    "Stored XAU/USD OHLC candles (M15, H1, H4, D1) and their gaps, read-only. Prices are exact "
    "decimal strings; timestamps are bar opens, ISO 8601 UTC (`YYYY-MM-DDTHH:MM:SSZ`). Errors are "
    '`{"detail": "one line"}`.'
)


def create_app(
    database_url: str,
    token: str | None = None,
    *,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    clock: Callable[[], datetime] = utc_now,
    symbols: Sequence[Symbol] = (Symbol("XAU/USD"),),
    history_start: date | None = None,
) -> FastAPI:
    """The read-only API over the candle database at `database_url`.

    With `token`, every data route (candles, gaps, chart) requires `Authorization: Bearer <token>`;
    /health, the docs and the chart's script stay open. `symbols` (settings.symbols) give each
    stored symbol its calendar and the series /health reports; with `history_start`, /health also
    tells each series' stored share of the bars expected since then.
    """
    engine = queries.read_engine(database_url)
    password = make_url(engine.url).password
    calendars = {symbol.name: symbol.calendar for symbol in symbols}
    app = FastAPI(
        title="xau_pipeline read API",
        version="1",
        description=DESCRIPTION,
    )
    app.state.api = ApiContext(
        engine=engine,
        timeout_ms=statement_timeout_ms,
        password=str(password) if password else None,
        clock=clock,
        calendars=calendars,
        health_series=[(name, tf.name) for name in calendars for tf in TIMEFRAMES],
        since=None if history_start is None else datetime.combine(history_start, time.min, UTC),
    )
    install_error_handlers(app, statement_timeout_ms, app.state.api.password)

    guard = _token_guard(token)
    data: dict[str, Any] = {
        "dependencies": [Depends(guard)] if guard else [],
        "responses": {**ERRORS, **(AUTH_ERROR if guard else {})},
    }
    app.include_router(candles.router, **data)
    app.include_router(gaps.router, **data)
    app.include_router(health.router)
    app.include_router(chart.router, dependencies=data["dependencies"], responses=html_errors(data["responses"]))
    app.include_router(chart.script_router)

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("docs")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_without_422(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _token_guard(token: str | None) -> Callable[..., None] | None:
    if not token:
        return None
    expected = token.encode()
    bearer = HTTPBearer(auto_error=False, description="XAU_API_TOKEN, required when the server is not on loopback.")

    # A default, not Annotated[...]: annotations are strings here, and `bearer` is a local name.
    def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected):
            raise HTTPException(
                status_code=401,
                detail="a valid bearer token is required: Authorization: Bearer <XAU_API_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_token
