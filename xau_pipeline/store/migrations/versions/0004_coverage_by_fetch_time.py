"""An index of each series' fetched windows by when they were fetched.

The repair sensor asks, for every series at every tick, where the oldest window fetched since its
last scan begins (`coverage.oldest_fetched_since`). Through the window-start index that read every
window of the series (a year of M15 schedule ticks: 35,000 rows, 8.5 ms a series, growing with the
history); by fetch time it reads those fetched since.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("fetch_coverage_fetched_idx", "fetch_coverage", ["symbol", "timeframe", "fetched_at"])


def downgrade() -> None:
    op.drop_index("fetch_coverage_fetched_idx", table_name="fetch_coverage")
