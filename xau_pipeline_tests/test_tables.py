"""The migrations are the schema's source of truth: `tables.py` must describe exactly what they build."""

from pprint import pformat

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from xau_pipeline.store.migrate import VERSION_TABLE, migrate
from xau_pipeline.store.tables import metadata
from xau_pipeline_dev.testing import temporary_database


def test_the_migrated_schema_is_exactly_tables_py(database_url):
    with temporary_database(database_url, "xau_tables") as url:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            migrate(engine)
            with engine.connect() as connection:
                context = MigrationContext.configure(
                    connection,
                    opts={"version_table": VERSION_TABLE, "compare_type": True, "compare_server_default": True},
                )
                differences = compare_metadata(context, metadata)
                tables = set(sa.inspect(connection).get_table_names())
        finally:
            engine.dispose()
    assert differences == [], pformat(differences)
    # Not vacuous: the migrations built every table tables.py names (and Alembic's own).
    assert tables == set(metadata.tables) | {VERSION_TABLE}
