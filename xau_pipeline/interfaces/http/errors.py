"""Errors as one line of JSON, `{"detail": "..."}`: 400 bad input, 401 no or wrong token, 503 the
database cannot be used, 500 anything else (logged with its traceback; the body never carries one)."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from xau_pipeline.interfaces.http.models import ErrorResponse
from xau_pipeline.interfaces.http.params import InputError

log = logging.getLogger("xau_pipeline.interfaces.http")

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


def html_errors(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """The same error responses, documented as JSON for a route whose own media type is HTML."""
    return {status: {"description": spec["description"], "content": _ERROR_JSON} for status, spec in responses.items()}


def install_error_handlers(app: FastAPI, timeout_ms: int, password: str | None) -> None:
    """Every failure answered as one line of JSON."""

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, _validation_message(exc))

    @app.exception_handler(InputError)
    async def bad_input(_request: Request, exc: InputError) -> JSONResponse:
        return _error(400, _one_line(str(exc), None))

    @app.exception_handler(sa.exc.DBAPIError)
    @app.exception_handler(sa.exc.TimeoutError)
    async def database_down(_request: Request, exc: Exception) -> JSONResponse:
        message = _database_problem(exc, timeout_ms, password)
        log.warning("503: %s", message)
        return _error(503, message)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__, exc_info=exc)
        return _error(500, "internal error (logged by the server)")


def openapi_without_422(app: FastAPI) -> dict[str, Any]:
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
