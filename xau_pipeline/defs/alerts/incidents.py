"""Alert incidents kept in the candle database (table `alert_incidents`, migration 0006).

Each change is committed as it happens: an incident opened, resolved, or a notice taken by a
channel. A daemon restart, or a tick that fails half-way, neither loses an incident nor tells
one twice (but for a crash between a channel taking a notice and its row being updated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from xau_pipeline.defs.alerts.rules import Finding, Incident

OPEN_INCIDENTS = sa.text(
    "SELECT id, series, kind, opened_at, detail FROM alert_incidents WHERE resolved_at IS NULL ORDER BY id"
)
OPEN_INCIDENT = sa.text(
    "INSERT INTO alert_incidents (series, kind, opened_at, detail, opening_pending, resolution_pending) "
    "VALUES (:series, :kind, :at, :detail, :channels, '{}') ON CONFLICT DO NOTHING"
)
RESOLVE_INCIDENT = sa.text(
    "UPDATE alert_incidents SET resolved_at = :at, resolution = :resolution, resolution_pending = :channels "
    "WHERE id = :id AND resolved_at IS NULL"
)
# Notices still owed to one of `channels`, oldest first (an opening before its resolution).
PENDING = sa.text(
    "SELECT id, series, kind, opened_at, detail, resolved_at, resolution, opening_pending, resolution_pending "
    "FROM alert_incidents WHERE opening_pending && CAST(:channels AS text[]) "
    "OR resolution_pending && CAST(:channels AS text[]) ORDER BY id"
)
OPENING_TAKEN = sa.text(
    "UPDATE alert_incidents SET opening_pending = array_remove(opening_pending, :channel) WHERE id = :id"
)
RESOLUTION_TAKEN = sa.text(
    "UPDATE alert_incidents SET resolution_pending = array_remove(resolution_pending, :channel) WHERE id = :id"
)
OPENING, RESOLUTION = "opening", "resolution"


@dataclass(frozen=True)
class PendingNotice:
    """One notice owed to `channel`: an incident's opening or its resolution."""

    incident_id: int
    which: str
    channel: str
    series: str
    kind: str
    opened_at: datetime
    detail: str
    resolved_at: datetime | None
    resolution: str | None


class IncidentStore:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def open_incidents(self) -> dict[tuple[str, str], Incident]:
        with self.engine.connect() as connection:
            rows = connection.execute(OPEN_INCIDENTS).all()
        return {(r.series, r.kind): Incident(r.id, r.series, r.kind, r.opened_at, r.detail) for r in rows}

    def open(self, finding: Finding, at: datetime, channels: Sequence[str]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                OPEN_INCIDENT,
                {
                    "series": finding.series,
                    "kind": finding.kind,
                    "at": at,
                    "detail": finding.detail,
                    "channels": list(channels),
                },
            )

    def resolve(self, incident: Incident, at: datetime, resolution: str, channels: Sequence[str]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                RESOLVE_INCIDENT, {"id": incident.id, "at": at, "resolution": resolution, "channels": list(channels)}
            )

    def pending(self, channels: Sequence[str]) -> list[PendingNotice]:
        """Every notice owed to one of `channels`, oldest incident first, its opening before its resolution."""
        with self.engine.connect() as connection:
            rows = connection.execute(PENDING, {"channels": list(channels)}).all()
        notices = []
        for r in rows:
            for which, owed in ((OPENING, r.opening_pending), (RESOLUTION, r.resolution_pending)):
                notices += [
                    PendingNotice(
                        r.id, which, channel, r.series, r.kind, r.opened_at, r.detail, r.resolved_at, r.resolution
                    )
                    for channel in owed
                    if channel in channels
                ]
        return notices

    def taken(self, notice: PendingNotice) -> None:
        """`notice` reached its channel."""
        with self.engine.begin() as connection:
            connection.execute(
                OPENING_TAKEN if notice.which == OPENING else RESOLUTION_TAKEN,
                {"id": notice.incident_id, "channel": notice.channel},
            )
