"""Quarantine for bars that may not enter `candles`; the backend holding each pending ledger row.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "candle_quarantine",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("timeframe", sa.Text, nullable=False),
        # The bar's open time when it could be read at all.
        sa.Column("bar_time", TIMESTAMPTZ, nullable=True),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("fetched_at", TIMESTAMPTZ, nullable=False),
        sa.Column("run_id", sa.Text, nullable=True),
    )
    op.create_index("candle_quarantine_series_idx", "candle_quarantine", ["symbol", "timeframe", "bar_time"])
    # The PostgreSQL backend of the process that took a credit: a `pending` row whose backend is gone
    # belongs to a dead process and is settled as lost.
    op.add_column("api_calls", sa.Column("backend_pid", sa.Integer, nullable=True))


def downgrade() -> None:
    op.drop_column("api_calls", "backend_pid")
    op.drop_table("candle_quarantine")
