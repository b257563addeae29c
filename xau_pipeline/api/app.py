"""The FastAPI application: `create_app(database_url, token=None, ...)`.

Read-only: every request reads in its own `BEGIN READ ONLY` transaction with a statement timeout
(queries.py). Stateless: nothing is kept between requests but a connection pool, so any number
of instances can serve the same database.

Errors are one line of JSON, `{"detail": "..."}`: 400 for bad input, 401 for a missing or wrong
bearer token (when one is configured), 503 when the database cannot be used, 500 for anything else
(logged here, with its traceback; the body never carries one).
"""

from __future__ import annotations

import csv
import io
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

import anyio
import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import make_url

from xau_pipeline.api import chart, queries
from xau_pipeline.api.models import (
    CandleResponse,
    ErrorResponse,
    GapReportResponse,
    HealthResponse,
    MissingBar,
    SeriesAge,
    TimeframeName,
    iso_utc,
)
from xau_pipeline.freshness import series_freshness
from xau_pipeline.read import parse_time
from xau_pipeline.store import gaps
from xau_pipeline.store.gap_window import DEFAULT_GAP_WINDOW, GapWindowTooLongError, check_gap_window, gap_window
from xau_pipeline.store.gaps import NEVER_FETCHED, NOT_PUBLISHED, PROVIDER_EMPTY, find_gaps
from xau_pipeline.store.quality import day_cover
from xau_pipeline.symbols import DEFAULT_CALENDAR, Symbol, stored_name
from xau_pipeline.timeframes import TIMEFRAMES, TIMEFRAMES_BY_NAME, Timeframe
from xau_pipeline.trading_calendar import TradingCalendar, calendar
from xau_pipeline.utc import EPOCH, utc_now

log = logging.getLogger("xau_pipeline.api")

DEFAULT_LIMIT = 100
MAX_LIMIT = 5000
DEFAULT_CHART_BARS = 500
DEFAULT_STATEMENT_TIMEOUT_MS = 5000
HEALTH_STATEMENT_TIMEOUT_MS = 2000
EARLIEST = EPOCH
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
# parse_time's forms, spelled out for the OpenAPI schema: years 1970-2199, ASCII digits. (Which
# day a month has, and start <= end, are checked by the server: a schema cannot say them.)
TIME_PATTERN = (
    r"^(19[7-9][0-9]|2[01][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([Tt]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?([Zz]|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?)?$"
)
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9/._-]{0,31}$"
CSV_COLUMNS = ("symbol", "timeframe", "timestamp", "open", "high", "low", "close", "volume", "final")
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad input: one line saying what and why."},
    503: {"model": ErrorResponse, "description": "The candle database is unreachable or too slow."},
}
# The same, spelled out as JSON for the HTML route (FastAPI would document a model in the route's
# own media type, text/html).
_ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
AUTH_ERROR: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "A bearer token is required (the server was started with one)."}
}


class InputError(ValueError):
    """A bad parameter: 400 with its message."""


# ---- parameters ------------------------------------------------------------------------------

SymbolQuery = Annotated[
    str, Query(pattern=SYMBOL_PATTERN, description="Stored symbol name (`XAU/USD` is read as `XAUUSD`).")
]
TimeframePath = Annotated[TimeframeName, Path(description="M15, H1, H4 or D1.")]


def _time_query(description: str) -> Any:
    return Query(
        default=None,
        pattern=TIME_PATTERN,
        description=f"{description} `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]`, UTC unless an offset (`Z`, `+02:00`) is given.",
        examples=["2024-03-01", "2024-03-01T12:30:00Z"],
    )


def _time(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = parse_time(value, what)
    except (ValueError, OverflowError) as exc:
        raise InputError(str(exc) if isinstance(exc, ValueError) else f"{what} {value!r} is out of range") from None
    if not EARLIEST <= moment <= LATEST:
        raise InputError(f"{what} {value!r} is out of range: use dates from 1970-01-01 to 2200-01-01")
    return moment


def _window(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    start_at, end_at = _time(start, "start"), _time(end, "end")
    if start_at is not None and end_at is not None and start_at > end_at:
        raise InputError(f"start {iso_utc(start_at)} is after end {iso_utc(end_at)}")
    return start_at, end_at


def _symbol(text: str) -> str:
    return stored_name(text)


# ---- errors ------------------------------------------------------------------------------------


def _one_line(text: str, password: str | None) -> str:
    if password:
        text = text.replace(password, "***")
    return " ".join(text.split())


def _database_problem(exc: BaseException, timeout_ms: int, password: str | None) -> str:
    """Why the database could not answer, on one line, without the URL's password."""
    if isinstance(exc, sa.exc.TimeoutError):
        return "the candle database is busy: no connection free (try again)"
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None)
    if code == "57014":  # query_canceled: the statement timeout
        return f"the query took longer than the statement timeout ({timeout_ms} ms)"
    if code == "42P01":  # undefined_table
        return "the candle database has no schema yet (run: xau-pipeline migrate)"
    if isinstance(exc, sa.exc.OperationalError) and code is None:
        # The driver's reason (host, port, ...) goes to the server's log only.
        first = str(orig or exc).strip().splitlines()[:1]
        log.warning("database unreachable: %s", _one_line(first[0] if first else type(exc).__name__, password))
        return "the candle database is unreachable"
    return f"database error: {type(orig or exc).__name__}"


# What a value failing a parameter's pattern should look like (rather than the pattern itself).
PATTERN_HINTS = {
    "start": "use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM] (UTC unless an offset is given), years 1970-2199",
    "symbol": "use letters, digits and / . _ - (at most 32), e.g. XAUUSD",
}
PATTERN_HINTS["end"] = PATTERN_HINTS["before"] = PATTERN_HINTS["start"]


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "bad request"
    first = errors[0]
    where = str(first.get("loc", ("?",))[-1])
    message = str(first.get("msg", "invalid")).strip()
    message = message[:1].lower() + message[1:]
    if first.get("type") == "string_pattern_mismatch" and where in PATTERN_HINTS:
        message = PATTERN_HINTS[where]
    shown = first.get("input")
    if isinstance(shown, str | int | float) and not isinstance(shown, bool):
        text = f"bad {where} {str(shown)[:60]!r}: {message}"
    else:
        text = f"bad {where}: {message}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return " ".join((text + more).split())


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def history_share(
    connection: sa.Connection, symbol: str, tf_name: str, policy: TradingCalendar, since: datetime, now: datetime
) -> tuple[int, int]:
    """(expected, stored): the closed bars one series' calendar expects since the history start, and how
    many of them are stored (xau_pipeline.catch_up's progress)."""
    tf = TIMEFRAMES_BY_NAME[tf_name]
    grid = gaps.detect_series_grid(connection, symbol, tf.name, tf.bar).grid
    return gaps.stored_share(connection, symbol, tf.name, tf.bar, policy, since, now, grid)


def _share_fields(share: tuple[int, int] | None) -> dict[str, Any]:
    if share is None:
        return {}
    expected, stored = share
    return {
        "expected_bars": expected,
        "stored_bars": stored,
        "history_share": round(stored / expected, 4) if expected else 1.0,
    }


# ---- the app -------------------------------------------------------------------------------------


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
    password = str(password) if password else None
    calendars = {symbol.name: symbol.calendar for symbol in symbols}
    health_series = [(name, tf.name) for name in calendars for tf in TIMEFRAMES]
    since = None if history_start is None else datetime.combine(history_start, time.min, UTC)

    app = FastAPI(
        title="xau_pipeline read API",
        version="1",
        description=(
            "Stored XAU/USD OHLC candles (M15, H1, H4, D1) and their gaps, read-only. Prices are exact "
            "decimal strings; timestamps are bar opens, ISO 8601 UTC (`YYYY-MM-DDTHH:MM:SSZ`). Errors are "
            '`{"detail": "one line"}`.'
        ),
    )
    app.state.engine = engine

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, _validation_message(exc))

    @app.exception_handler(InputError)
    async def bad_input(_request: Request, exc: InputError) -> JSONResponse:
        return _error(400, _one_line(str(exc), None))

    @app.exception_handler(sa.exc.DBAPIError)
    @app.exception_handler(sa.exc.TimeoutError)
    async def database_down(_request: Request, exc: Exception) -> JSONResponse:
        message = _database_problem(exc, statement_timeout_ms, password)
        log.warning("503: %s", message)
        return _error(503, message)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__, exc_info=exc)
        return _error(500, "internal error (logged by the server)")

    guard = _token_guard(token)
    data_dependencies = [Depends(guard)] if guard else []
    data_errors = {**ERRORS, **(AUTH_ERROR if guard else {})}
    timeout = statement_timeout_ms

    def calendar_of(symbol: str) -> tuple[str, TradingCalendar]:
        name = calendars.get(symbol, DEFAULT_CALENDAR)
        return name, calendar(name)

    # ---- candles ----

    @app.get(
        "/candles/{timeframe}",
        response_model=list[CandleResponse],
        responses={
            **data_errors,
            200: {
                "description": 'Candles, newest first. With `Link: <...>; rel="next"` when the page is full.',
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
        },
        dependencies=data_dependencies,
        tags=["candles"],
        summary="Stored candles, newest first",
    )
    def get_candles(
        request: Request,
        timeframe: TimeframePath,
        symbol: SymbolQuery = "XAUUSD",
        start: str | None = _time_query("First bar open to include."),
        end: str | None = _time_query("Bars opening at or after this are left out."),
        before: str | None = _time_query(
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
        start_at, end_at = _window(start, end)
        before_at = _time(before, "before")
        name = _symbol(symbol)
        as_csv = format == "csv" or (format is None and _wants_csv(request.headers.get("accept", "")))
        if as_csv:
            query = queries.text_rows_query(name, tf.name, start_at, end_at, before_at, limit, final_only)
            chunks = queries.stream_rows(engine, timeout, query)
            return StreamingResponse(
                _in_threadpool(_csv_chunks(name, tf.name, chunks)),
                media_type=CSV_MEDIA_TYPE,
                headers={"Content-Disposition": f'inline; filename="{name}_{tf.name}.csv"'},
            )
        page_size = limit or DEFAULT_LIMIT
        with queries.read_only(engine, timeout) as connection:
            page = queries.json_page(connection, name, tf.name, start_at, end_at, before_at, page_size, final_only)
        headers = {}
        if page.count == page_size and page.oldest is not None:
            following = request.url.include_query_params(before=page.oldest, limit=page_size)
            headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
        return Response(page.body, media_type="application/json", headers=headers)

    # ---- gaps ----

    @app.get(
        "/candles/{timeframe}/gaps",
        response_model=GapReportResponse,
        responses=data_errors,
        dependencies=data_dependencies,
        tags=["candles"],
        summary="Expected bars with no stored candle, and why",
    )
    def get_gaps(
        timeframe: TimeframePath,
        symbol: SymbolQuery = "XAUUSD",
        start: str | None = _time_query("Window start (default: 7 days before the end)."),
        end: str | None = _time_query("Window end, exclusive (default: now)."),
    ) -> GapReportResponse:
        tf = TIMEFRAMES_BY_NAME[timeframe.value]
        start_at, end_at = _window(start, end)
        name = _symbol(symbol)
        calendar_name, trading_calendar = calendar_of(name)
        now = clock()
        start_at, end_at = gap_window(start_at, end_at, now)
        _check_span(tf, start_at, end_at)
        with queries.read_only(engine, timeout) as connection:
            report = find_gaps(connection, name, tf.name, tf.bar, trading_calendar, start_at, end_at, now)
            cover = day_cover(connection, name, start_at, end_at) if tf.name == "D1" else None
        held = cover.describe() if cover is not None and cover.compared else None
        return GapReportResponse(
            symbol=name,
            timeframe=tf.name,
            calendar=calendar_name,
            start=start_at,
            end=end_at,
            expected=report.expected,
            stored=report.present,
            missing=report.missing,
            off_session=report.off_session,
            missing_by_reason={
                reason: report.count(reason) for reason in (NEVER_FETCHED, PROVIDER_EMPTY, NOT_PUBLISHED)
            },
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

    # ---- health ----

    @app.get(
        "/health",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "The candle database cannot be used."}},
        tags=["health"],
        summary="Is the database reachable; how old is the newest bar of each series",
    )
    def get_health() -> JSONResponse:
        now = clock()
        try:
            with queries.read_only(engine, min(timeout, HEALTH_STATEMENT_TIMEOUT_MS)) as connection:
                newest = queries.newest_bars(connection, health_series)
                fresh = {
                    (symbol, tf_name): series_freshness(
                        connection, symbol, TIMEFRAMES_BY_NAME[tf_name], calendar_of(symbol)[1], now
                    )
                    for symbol, tf_name in health_series
                }
                shares = {
                    (symbol, tf_name): history_share(connection, symbol, tf_name, calendar_of(symbol)[1], since, now)
                    for symbol, tf_name in health_series
                    if since is not None
                }
        except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
            orig = getattr(exc, "orig", None)
            reachable = getattr(orig, "pgcode", None) is not None
            report = HealthResponse(
                status="unavailable",
                database="reachable" if reachable else "unreachable",
                detail=_database_problem(exc, timeout, password),
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

    # ---- chart ----

    @app.get(
        "/chart/{timeframe}",
        response_class=HTMLResponse,
        responses={
            **{
                status: {"description": spec["description"], "content": _ERROR_JSON}
                for status, spec in data_errors.items()
            },
            200: {"description": "An HTML page with the candlestick chart."},
        },
        dependencies=data_dependencies,
        tags=["chart"],
        summary="Candlestick chart with the missing bars marked",
    )
    def get_chart(
        timeframe: TimeframePath,
        symbol: SymbolQuery = "XAUUSD",
        start: str | None = _time_query("Window start (default: as far back as `limit` bars reach)."),
        end: str | None = _time_query("Window end, exclusive (default: just after the newest bar shown)."),
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description=f"The newest this many bars of the window (max {MAX_LIMIT}).")
        ] = DEFAULT_CHART_BARS,
        final_only: Annotated[bool, Query(description="Only final bars (bars not final yet are drawn apart).")] = False,
    ) -> HTMLResponse:
        tf = TIMEFRAMES_BY_NAME[timeframe.value]
        start_at, end_at = _window(start, end)
        name = _symbol(symbol)
        calendar_name, trading_calendar = calendar_of(name)
        now = clock()
        query = queries.candle_query(name, tf.name, start_at, end_at, None, limit, True, final_only)
        with queries.read_only(engine, timeout) as connection:
            rows = list(reversed(connection.execute(query).all()))
            window = _chart_window(rows, tf, start_at, end_at, limit, now)
            report = None
            if window[0] < window[1]:
                _check_span(tf, *window)
                report = find_gaps(connection, name, tf.name, tf.bar, trading_calendar, *window, now)
        off_session: set[datetime] = set()
        if report is not None and report.off_session:
            expected = set(trading_calendar.expected_slots(*window, tf.bar, report.phase))
            off_session = {row.timestamp for row in rows if row.timestamp not in expected}
        # From a week before the window: the closure the window opens in is left out too.
        closed = chart.closures(trading_calendar.sessions(window[0] - timedelta(days=7), window[1] + tf.bar), tf.bar)
        return HTMLResponse(chart.page(name, tf.name, rows, off_session, report, window, calendar_name, closed))

    @app.get(chart.PLOTLY_JS_ROUTE, include_in_schema=False)
    def plotly_js() -> Response:
        return Response(
            _plotly_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=31536000, immutable"}
        )

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("docs")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi_without_422(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# ---- helpers -------------------------------------------------------------------------------------


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


def _wants_csv(accept: str) -> bool:
    """Whether the Accept header asks for CSV before JSON."""
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if "text/csv" not in types:
        return False
    return "application/json" not in types or types.index("text/csv") < types.index("application/json")


def _check_span(tf: Timeframe, start: datetime, end: datetime) -> None:
    try:
        check_gap_window(tf.name, tf.bar, start, end)
    except GapWindowTooLongError as exc:
        raise InputError(str(exc)) from None


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


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    return get_plotlyjs()


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """The schema with FastAPI's generic 422 replaced by our 400 (bad input is answered 400 here)."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema
