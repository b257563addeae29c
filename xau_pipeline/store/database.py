"""Database URLs and engines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
# The database `make run` creates for the candles on its embedded PostgreSQL.
EMBEDDED_CANDLE_DATABASE = "xau"


def normalize_url(url: str) -> str:
    """`url` with the psycopg2 driver made explicit.

    SQLAlchemy 2.1 resolves a bare postgresql:// URL to psycopg (3), which we do not install.
    """
    parsed = make_url(url.strip())
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.drivername != "postgresql+psycopg2":
        raise ValueError(f"XAU_DATABASE_URL must be a PostgreSQL URL, got driver {parsed.drivername!r}")
    return parsed.render_as_string(hide_password=False)


def embedded_data_dir(environ: Mapping[str, str], folder: Path = Path()) -> Path:
    """Where `make run` keeps its embedded PostgreSQL: XAU_PGDATA, else `.pgdata` in `folder` (the
    project's folder, where `make run` and the command line beside it run)."""
    return Path(environ.get("XAU_PGDATA") or folder / ".pgdata")


def configured_database_url(env: Mapping[str, str]) -> str:
    """`XAU_DATABASE_URL`, normalised; else the embedded PostgreSQL that `make run` started from
    this folder (its port is in `.pgdata/port`); else a local PostgreSQL."""
    if (env.get("XAU_DATABASE_URL") or "").strip():
        return normalize_url(env["XAU_DATABASE_URL"])
    port_file = embedded_data_dir(env) / "port"
    if port_file.is_file():
        return f"postgresql+psycopg2://postgres@127.0.0.1:{port_file.read_text().strip()}/{EMBEDDED_CANDLE_DATABASE}"
    return DEFAULT_DATABASE_URL


def safe_url(url: str) -> str:
    """`url` with any password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


@lru_cache(maxsize=8)
def engine_for(url: str) -> sa.Engine:
    """One pooled engine per URL per process."""
    return sa.create_engine(normalize_url(url), pool_pre_ping=True, future=True)


def insert_series_rows(
    connection: sa.Connection, table: sa.Table, symbol: str, timeframe: str, rows: Iterable[Mapping[str, object]]
) -> None:
    """Insert `rows` of one series into `table`, in the caller's transaction (nothing when there are none)."""
    values = [{"symbol": symbol, "timeframe": timeframe, **row} for row in rows]
    if values:
        connection.execute(table.insert(), values)
