"""Table definitions (the migrations are the source of truth for the schema; these mirror them)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

candles = sa.Table(
    "candles",
    metadata,
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("timeframe", sa.Text, nullable=False),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Column("open", sa.Numeric, nullable=False),
    sa.Column("high", sa.Numeric, nullable=False),
    sa.Column("low", sa.Numeric, nullable=False),
    sa.Column("close", sa.Numeric, nullable=False),
    sa.Column("volume", sa.Numeric, nullable=True),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # False while the bar may still change: received before its publication could be trusted.
    sa.Column("final", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.PrimaryKeyConstraint("symbol", "timeframe", "timestamp", name="candles_symbol_timeframe_timestamp_key"),
)

fetch_coverage = sa.Table(
    "fetch_coverage",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("timeframe", sa.Text, nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    # Bars opening in [window_start, closed_until) had closed when fetched: they are final.
    sa.Column("closed_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("bars", sa.Integer, nullable=False),
    sa.Index("fetch_coverage_series_idx", "symbol", "timeframe", "window_start"),
    # Windows fetched since a moment (the repair sensor's incremental scans).
    sa.Index("fetch_coverage_fetched_idx", "symbol", "timeframe", "fetched_at"),
)

api_calls = sa.Table(
    "api_calls",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("credits", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("interval", sa.Text, nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
    sa.Column("outcome", sa.Text, nullable=False, server_default="pending"),
    sa.Column("run_id", sa.Text, nullable=True),
    sa.Column("backend_pid", sa.Integer, nullable=True),
    sa.Index("api_calls_at_idx", "at"),
    sa.Index("api_calls_run_idx", "run_id"),
)

candle_quarantine = sa.Table(
    "candle_quarantine",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("timeframe", sa.Text, nullable=False),
    sa.Column("bar_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.Text, nullable=True),
    sa.Index("candle_quarantine_series_idx", "symbol", "timeframe", "bar_time"),
)

# Alert incidents (xau_pipeline.defs.alerts): one row per incident, with the channels still owed each notice.
alert_incidents = sa.Table(
    "alert_incidents",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("series", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("resolution", sa.Text, nullable=True),
    sa.Column("opening_pending", postgresql.ARRAY(sa.Text), nullable=False),
    sa.Column("resolution_pending", postgresql.ARRAY(sa.Text), nullable=False),
    sa.Index(
        "alert_incidents_open_idx", "series", "kind", unique=True, postgresql_where=sa.text("resolved_at IS NULL")
    ),
)
