"""Alembic environment: runs on the connection handed over by xau_pipeline.store.migrate."""

from alembic import context

from xau_pipeline.store.migrate import VERSION_TABLE
from xau_pipeline.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
