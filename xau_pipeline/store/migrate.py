"""Apply the Alembic migrations, safely when several processes start at once."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant shared by every xau_pipeline process: pg_advisory_lock takes a bigint key.
MIGRATION_LOCK_KEY = 0x7861755F6D6967  # "xau_mig"
# Not Alembic's default `alembic_version`: Dagster's PostgreSQL storage keeps its own schema
# version under that name, and the two may share a database.
VERSION_TABLE = "xau_pipeline_schema_version"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def current_revision(bind: sa.Engine | sa.Connection) -> str | None:
    """The revision recorded in the database, None before the first migration."""
    if isinstance(bind, sa.Engine):
        with bind.connect() as connection:
            return current_revision(connection)
    return MigrationContext.configure(bind, opts={"version_table": VERSION_TABLE}).get_current_revision()


def migrate(engine: sa.Engine) -> str:
    """Upgrade the schema to head under a session advisory lock; returns the head revision."""
    config = alembic_config()
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
        finally:
            connection.rollback()
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
    return head_revision()
