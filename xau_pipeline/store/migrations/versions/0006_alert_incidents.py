"""Alert incidents: one row per incident of a series (a failed check, staleness, failing runs), with the
channels its opening and its resolution notices are still owed to.

The alert sensor (xau_pipeline.alerts) writes each change as it happens, so an incident is told once
across daemon restarts, and a notice a channel did not take is sent again at the next tick.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_incidents",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        # `xauusd/candles_m15`, or a symbol's name for what concerns all its series.
        sa.Column("series", sa.Text, nullable=False),
        # `no_gaps`, `stale`, `runs_failing:live`, ...
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("opened_at", TIMESTAMPTZ, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("resolved_at", TIMESTAMPTZ, nullable=True),
        sa.Column("resolution", sa.Text, nullable=True),
        # The channels (`webhook`, `email`) each notice is still owed to.
        sa.Column("opening_pending", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("resolution_pending", postgresql.ARRAY(sa.Text), nullable=False),
    )
    # At most one open incident per series and kind.
    op.create_index(
        "alert_incidents_open_idx",
        "alert_incidents",
        ["series", "kind"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("alert_incidents")
