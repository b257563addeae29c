"""Database URLs and engines."""

from __future__ import annotations

import os
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


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


def database_url() -> str:
    """`XAU_DATABASE_URL`, normalised; a local PostgreSQL by default."""
    return normalize_url(os.environ.get("XAU_DATABASE_URL") or DEFAULT_DATABASE_URL)


def safe_url(url: str) -> str:
    """`url` with any password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


@lru_cache(maxsize=8)
def engine_for(url: str) -> sa.Engine:
    """One pooled engine per URL per process."""
    return sa.create_engine(normalize_url(url), pool_pre_ping=True, future=True)
