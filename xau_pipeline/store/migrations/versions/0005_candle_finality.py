"""Whether each stored bar is final.

A bar received less than the publication delay after its close may still change (Twelve Data
publishes a bar 0.3 to 2 minutes after its close): it is stored with `final` false and made final,
or corrected, by a later answer. Bars stored before this revision were all taken as final.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("candles", sa.Column("final", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("candles", "final")
