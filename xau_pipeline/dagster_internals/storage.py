"""The instance storage dagster.yaml names (`storage: custom:`, the same configuration as
`storage: postgres:`): dagster-postgres's storage with the pooled event log of event_log.py.

It fails soft. Dagster builds it from its configuration (`from_config_value`), in the webserver,
the daemon and each run worker; where an internal the pooled event log needs is missing
(registry.STORAGE_INTERNALS), it logs one warning line and returns dagster-postgres's own
`DagsterPostgresStorage`, exactly what `storage: postgres:` builds: a connection per stored event,
each check evaluation stored alone, nothing else changed (the same tables, so a later version with
the internals back reads everything). A changed signature found only when called (the batch's
insert) makes Dagster store that batch one event at a time (`handle_new_event`'s fallback), the
batch's transaction having left nothing behind. What it cannot survive is dagster-postgres's public
names themselves (`DagsterPostgresStorage`, its three storages) moving: then `storage: postgres:`
could not load either.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dagster_postgres import DagsterPostgresStorage, PostgresRunStorage, PostgresScheduleStorage

from xau_pipeline.dagster_internals.registry import (
    PG_CONFIG,
    PG_TOKEN,
    SEE,
    STORAGE_INTERNALS,
    missing,
    resolve,
    warning_line,
)

if TYPE_CHECKING:  # types only: nothing private is imported when the code location loads
    from dagster._serdes.config_class import ConfigurableClassData
    from dagster_postgres.auth import PgTokenProvider

LOG = logging.getLogger(__name__)


class PooledPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` whose event log is `PooledPostgresEventLogStorage`."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
    ) -> None:
        from xau_pipeline.dagster_internals.event_log import PooledPostgresEventLogStorage

        # The parent's __init__ builds dagster-postgres's own event log (a connection per event);
        # the three storages are built here instead, kept under names of this class's own.
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._pooled_inst_data = inst_data
        self._runs = PostgresRunStorage(postgres_url, should_autocreate_tables, token_provider=token_provider)
        self._event_log = PooledPostgresEventLogStorage(postgres_url, should_autocreate_tables, token_provider)
        self._schedules = PostgresScheduleStorage(postgres_url, should_autocreate_tables, token_provider=token_provider)
        super(DagsterPostgresStorage, self).__init__()

    # What the parent's properties return, from this class's own attributes.
    inst_data = property(lambda self: self._pooled_inst_data)
    event_log_storage = property(lambda self: self._event_log)
    run_storage = property(lambda self: self._runs)
    schedule_storage = property(lambda self: self._schedules)

    # The parent's builds a DagsterPostgresStorage by name; this one may too (the fallback).
    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> DagsterPostgresStorage:  # type: ignore[override]
        """The pooled storage, or where its internals are missing dagster-postgres's own (one warning line)."""
        absent = missing(STORAGE_INTERNALS)
        if not absent:
            try:
                return cls(
                    postgres_url=resolve(PG_CONFIG)(config_value),
                    should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                    inst_data=inst_data,
                    token_provider=resolve(PG_TOKEN)(config_value),
                )
            except (ImportError, AttributeError) as exc:  # an internal found, but not as event_log.py uses it
                LOG.warning(f"Dagster internals changed ({exc}): dagster-postgres's plain storage; {SEE}")
                return DagsterPostgresStorage.from_config_value(inst_data, config_value)
        LOG.warning(warning_line(absent, "dagster-postgres's plain storage (a connection per stored event)"))
        return DagsterPostgresStorage.from_config_value(inst_data, config_value)
