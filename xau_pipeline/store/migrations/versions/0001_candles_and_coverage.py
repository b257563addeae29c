"""Candles and fetch coverage.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "candles",
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("timeframe", sa.Text, nullable=False),
        sa.Column("timestamp", TIMESTAMPTZ, nullable=False),
        # NUMERIC without precision keeps every digit the API sends.
        sa.Column("open", sa.Numeric, nullable=False),
        sa.Column("high", sa.Numeric, nullable=False),
        sa.Column("low", sa.Numeric, nullable=False),
        sa.Column("close", sa.Numeric, nullable=False),
        sa.Column("volume", sa.Numeric, nullable=True),
        sa.Column("fetched_at", TIMESTAMPTZ, nullable=False),
        sa.Column("updated_at", TIMESTAMPTZ, nullable=False),
        sa.PrimaryKeyConstraint("symbol", "timeframe", "timestamp", name="candles_symbol_timeframe_timestamp_key"),
    )
    op.create_table(
        "fetch_coverage",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("timeframe", sa.Text, nullable=False),
        sa.Column("window_start", TIMESTAMPTZ, nullable=False),
        sa.Column("window_end", TIMESTAMPTZ, nullable=False),
        sa.Column("closed_until", TIMESTAMPTZ, nullable=False),
        sa.Column("fetched_at", TIMESTAMPTZ, nullable=False),
        sa.Column("bars", sa.Integer, nullable=False),
    )
    op.create_index("fetch_coverage_series_idx", "fetch_coverage", ["symbol", "timeframe", "window_start"])


def downgrade() -> None:
    op.drop_table("fetch_coverage")
    op.drop_table("candles")
