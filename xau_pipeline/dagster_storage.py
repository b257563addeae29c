"""Dagster's PostgreSQL storage, with an event log that keeps its connection open between writes.

`dagster_postgres.PostgresEventLogStorage` opens a new connection for every event it stores
(`poolclass=NullPool` in its `__init__`, with no setting to change it), and only the webserver
switches it to a pool (`optimize_for_webserver`). A run worker writes every log line, every check
evaluation and every materialization batch through that event log: a one-year backfill of the
four series writes thousands of per-day check evaluations, each of which paid for a connection
(a TCP handshake, authentication and a PostgreSQL backend started) of its own. Measured here:
19.9 ms per stored evaluation without a pool, 3.7 ms with one (docs/architecture.md, "Per-day
evaluations: what they cost").

Named in dagster.yaml as `storage: custom:` with the same `postgres_url` configuration as
`storage: postgres:`. The runs and schedules storages are Dagster's own, unchanged.
"""

from __future__ import annotations

from typing import Any

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

# One connection held per process; beyond it, threads writing at once (the daemon's) open
# connections that close when returned, as without a pool.
MAX_OVERFLOW = 10
# Reconnect after an hour, before a server or proxy closes an idle connection on its side.
POOL_RECYCLE_SECONDS = 3600
# PostgreSQL's own default (no limit); the webserver sets its own when it optimizes its storage.
NO_STATEMENT_TIMEOUT = 0


class PooledPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` whose event log holds one open connection per process (a pool of one,
    as Dagster's webserver uses) instead of opening one per stored event."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: Any = None,
        token_provider: Any = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self.event_log_storage.optimize_for_webserver(
            statement_timeout=NO_STATEMENT_TIMEOUT, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=MAX_OVERFLOW
        )

    @classmethod  # the parent's builds a DagsterPostgresStorage by name
    def from_config_value(cls, inst_data: Any, config_value: Any) -> PooledPostgresStorage:
        return cls(
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
            token_provider=get_token_provider_from_config(config_value),
        )
