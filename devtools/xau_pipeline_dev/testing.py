"""What the tests and the benchmarks share: a database of their own, the read API on a real socket."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta

import sqlalchemy as sa
import uvicorn
from sqlalchemy.engine import make_url

from xau_pipeline.interfaces.http.app import DEFAULT_STATEMENT_TIMEOUT_MS
from xau_pipeline.interfaces.http.server import DEFAULT_SYMBOLS, STARTUP_TIMEOUT_SECONDS, server_config
from xau_pipeline.market.slot_arithmetic import from_us, grid_k_range
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.database import engine_for, normalize_url
from xau_pipeline.store.series_grid import detect_phase


@contextmanager
def temporary_database(server_url: str, prefix: str) -> Iterator[str]:
    """A database created on `server_url` for the duration of the block (tests, benchmarks), then dropped."""
    server = make_url(normalize_url(server_url))
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = server.set(database=name).render_as_string(hide_password=False)
        try:
            yield url
        finally:
            engine_for(url).dispose()
            with admin.connect() as connection:
                # WITH (FORCE) ends sessions a crashed run left behind (PostgreSQL 13+).
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def serving_in_thread(
    database_url: str,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    *,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    log_level: str = "warning",
    symbols: Sequence[Symbol] = DEFAULT_SYMBOLS,
    history_start: date | None = None,
) -> Iterator[str]:
    """The API on a real socket in a background thread (port 0: a free one); yields its base URL."""
    config = server_config(database_url, host, port, token, statement_timeout_ms, log_level, symbols, history_start)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="xau-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the API did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    try:
        yield f"http://{shown}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        api = getattr(getattr(config.app, "state", None), "api", None)
        if api is not None:
            api.engine.dispose()


def bar_phase(store: CandleStore, symbol: str, timeframe: Timeframe) -> timedelta:
    """The series' bar grid offset from the UTC epoch grid, as its stored bars show it."""
    with store.engine.connect() as connection:
        return detect_phase(connection, symbol, timeframe.name, timeframe.bar)


def slot_grid(start: datetime, end: datetime, bar: timedelta, phase: timedelta = timedelta(0)) -> list[datetime]:
    """Every slot open t = epoch + phase + k * bar with start <= t < end, UTC-aware, ascending."""
    k_lo, k_hi, phase_us, bar_us = grid_k_range(start, end, bar, phase)
    return [from_us(phase_us + k * bar_us) for k in range(k_lo, k_hi)]
