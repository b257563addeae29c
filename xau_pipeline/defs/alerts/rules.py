"""The alert rule, as pure functions of what was observed and the time: which incidents open, which clear.

An incident is one (series, kind): a check (`no_gaps`, `ohlc_valid`, `quarantine_empty`) whose latest
verdict on a watched day failed, the series gone stale, or its runs of one kind (live, repair,
catch-up) failing FAILED_RUNS_IN_A_ROW times in a row. It opens once and clears once; nothing opens
or clears while its symbol's market is quiet (closed for longer than QUIET_AFTER_CLOSE).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from xau_pipeline.market.market_hours import TradingCalendar

# Stale once the first expected bar not stored opened more than twice the bar plus this long ago
# (freqtrade's staleness rule: twice the interval plus 5 minutes); a bar waiting for publication
# within that is not stale.
STALE_GRACE = timedelta(minutes=5)
# The market counts as closed once its last session ended this long ago: CME's daily one-hour
# break is not a close, a weekend or holiday is.
QUIET_AFTER_CLOSE = timedelta(minutes=90)
FAILED_RUNS_IN_A_ROW = 3
STALE = "stale"


class _OfSeriesAndKind:
    """Keyed by (series, kind): one incident at a time each."""

    series: str
    kind: str

    @property
    def key(self) -> tuple[str, str]:
        return self.series, self.kind


@dataclass(frozen=True)
class Finding(_OfSeriesAndKind):
    """What this tick saw of one (series, kind): failing or not, and why, in words for the notice."""

    series: str
    kind: str
    failing: bool
    detail: str


@dataclass(frozen=True)
class Incident(_OfSeriesAndKind):
    """An open incident as stored."""

    id: int
    series: str
    kind: str
    opened_at: datetime
    detail: str


@dataclass
class Decision:
    """The incidents to open (their findings) and to resolve (with what was seen)."""

    opened: list[Finding] = field(default_factory=list)
    resolved: list[tuple[Incident, str]] = field(default_factory=list)


def decide(
    open_incidents: Mapping[tuple[str, str], Incident],
    findings: Sequence[Finding],
    quiet: Callable[[str], bool],
) -> Decision:
    """A failing finding without an open incident opens one; a passing finding resolves its open
    incident; no finding (no verdict this tick) changes nothing; a quiet series (`quiet(series)`:
    its market closed) neither opens nor resolves."""
    decision = Decision()
    seen = {finding.key: finding for finding in findings}
    for finding in findings:
        if finding.failing and finding.key not in open_incidents and not quiet(finding.series):
            decision.opened.append(finding)
    for key, incident in open_incidents.items():
        now_seen = seen.get(key)
        if now_seen is not None and not now_seen.failing and not quiet(incident.series):
            decision.resolved.append((incident, now_seen.detail))
    return decision


def stale_after(bar: timedelta) -> timedelta:
    return 2 * bar + STALE_GRACE


def is_stale(now: datetime, first_missing_open: datetime | None, bar: timedelta) -> bool:
    """Whether the first expected bar not stored (None: none is missing) opened more than
    `stale_after(bar)` before `now`."""
    return first_missing_open is not None and now - first_missing_open > stale_after(bar)


def market_quiet(policy: TradingCalendar, now: datetime) -> bool:
    """Whether the market is closed and has been for longer than QUIET_AFTER_CLOSE."""
    return not policy.sessions(now - QUIET_AFTER_CLOSE, now + timedelta(microseconds=1))


def runs_failing(statuses: Sequence[bool]) -> bool | None:
    """From a series' finished runs of one kind, newest first (True: succeeded): True when the newest
    FAILED_RUNS_IN_A_ROW all failed, False when the newest succeeded, None when neither (unchanged)."""
    if not statuses:
        return None
    if statuses[0]:
        return False
    if len(statuses) >= FAILED_RUNS_IN_A_ROW and not any(statuses[:FAILED_RUNS_IN_A_ROW]):
        return True
    return None
