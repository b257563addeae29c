"""Shared fixtures: a PostgreSQL database of this test run's own, and one Twelve Data stand-in."""

from __future__ import annotations

import os
import secrets

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.database import engine_for, normalize_url

TEST_API_KEY = "td-test-key-5f3a9c1e"
DEFAULT_TEST_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def database_url():
    """A database created for this test run and dropped after it."""
    server = make_url(normalize_url(os.environ.get("XAU_TEST_DATABASE_URL") or DEFAULT_TEST_SERVER))
    name = f"xau_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    yield url
    engine_for(url).dispose()
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def session_store(database_url) -> CandleStore:
    return CandleStore(database_url)


@pytest.fixture
def store(session_store) -> CandleStore:
    """The run's candle store, emptied before each test."""
    with session_store.engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE candles, fetch_coverage, api_calls"))
    return session_store


@pytest.fixture(scope="session")
def session_stand_in():
    from xau_pipeline.twelvedata_standin import StandIn, StandInConfig

    with StandIn(StandInConfig(api_key=TEST_API_KEY, credits_per_minute=None, credits_per_day=None)) as server:
        yield server


@pytest.fixture
def stand_in(session_stand_in):
    """The shared stand-in, reset to no limits and no faults for each test."""
    from xau_pipeline.twelvedata_standin import StandInConfig

    defaults = StandInConfig()
    session_stand_in.configure(
        credits_per_minute=None,
        credits_per_day=None,
        error_status=defaults.error_status,
        end_inclusive=defaults.end_inclusive,
        weekend_bars=defaults.weekend_bars,
        holes=[],
        revisions={},
        time_offset_seconds=0.0,
        delay_seconds=0.0,
        h4_phase_hours=defaults.h4_phase_hours,
    )
    session_stand_in.reset()
    return session_stand_in
