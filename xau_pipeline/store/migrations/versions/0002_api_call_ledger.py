"""Ledger of Twelve Data calls, the shared credit budget's state.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_calls",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", TIMESTAMPTZ, nullable=False),
        sa.Column("credits", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("interval", sa.Text, nullable=False),
        sa.Column("window_start", TIMESTAMPTZ, nullable=True),
        sa.Column("window_end", TIMESTAMPTZ, nullable=True),
        sa.Column("outcome", sa.Text, nullable=False, server_default="pending"),
        sa.Column("run_id", sa.Text, nullable=True),
    )
    op.create_index("api_calls_at_idx", "api_calls", ["at"])
    op.create_index("api_calls_run_idx", "api_calls", ["run_id"])


def downgrade() -> None:
    op.drop_table("api_calls")
