import threading

import sqlalchemy as sa

from xau_pipeline.store.migrate import current_revision, head_revision, migrate


def test_concurrent_migrations_both_succeed(database_url):
    """Two processes starting at once: the advisory lock lets one migrate and the other find head."""
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    url = sa.engine.make_url(database_url)
    fresh = f"{url.database}_migrate"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{fresh}"'))
    engines = [sa.create_engine(url.set(database=fresh)) for _ in range(2)]
    errors = []

    def run(engine):
        try:
            migrate(engine)
        except Exception as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert current_revision(engines[0]) == head_revision()
        with engines[0].connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
        assert {"candles", "fetch_coverage"} <= tables
    finally:
        for engine in engines:
            engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)'))
        admin.dispose()
