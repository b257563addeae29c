"""Serving the API with uvicorn: `xau-pipeline serve`, `make run` and the tests all go through here.

The server binds to loopback (127.0.0.1:8000) unless XAU_API_HOST / XAU_API_PORT say otherwise.
Bound to any other address it refuses to start without a bearer token (XAU_API_TOKEN); a token,
once set, is required on every data route wherever the server is bound.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import date

import uvicorn

from xau_pipeline.interfaces.http.app import DEFAULT_STATEMENT_TIMEOUT_MS, create_app
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.settings import Settings

DEFAULT_SYMBOLS = Settings(database_url="").symbols

STARTUP_TIMEOUT_SECONDS = 20.0


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """The token rule: anything but loopback needs a token. Raises ValueError."""
    if not is_loopback(host) and not token:
        raise ValueError(
            f"refusing to serve on {host} without a bearer token: set XAU_API_TOKEN "
            "(clients then send `Authorization: Bearer <token>`), or bind to 127.0.0.1"
        )


def server_config(
    database_url: str,
    host: str,
    port: int,
    token: str | None,
    statement_timeout_ms: int,
    log_level: str,
    symbols: Sequence[Symbol],
    history_start: date | None = None,
) -> uvicorn.Config:
    check_bind(host, token)
    app = create_app(
        database_url, token, statement_timeout_ms=statement_timeout_ms, symbols=symbols, history_start=history_start
    )
    # proxy_headers: behind a reverse proxy on this machine, log the client's address, not the proxy's.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, proxy_headers=True, server_header=False)


def serve(
    database_url: str,
    host: str,
    port: int,
    token: str | None = None,
    *,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    log_level: str = "info",
    symbols: Sequence[Symbol] = DEFAULT_SYMBOLS,
    history_start: date | None = None,
) -> None:
    """Run the API until interrupted (Ctrl-C or SIGTERM). Raises ValueError for a refused bind."""
    server = uvicorn.Server(
        server_config(database_url, host, port, token, statement_timeout_ms, log_level, symbols, history_start)
    )
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn has shut down gracefully, then re-raises the Ctrl-C
        pass
