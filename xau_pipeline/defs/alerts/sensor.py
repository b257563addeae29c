"""The alert sensor: each minute, what each series' latest check verdicts, stored bars and runs say,
turned into incidents (rules.decide) and notices to every configured channel.

Check verdicts are read from Dagster's event log: the newest completed evaluation of each alerted
check on each watched day (the last WATCHED_DAYS UTC days). Staleness is judged from the stored
bars and the trading calendar, so it is seen even when no run comes to judge `fresh`. Runs are read
from Dagster's run records: a series' newest finished runs of each kind (live, repair, catch-up).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dagster as dg

from xau_pipeline.clock import day_start, utc_label, utc_now
from xau_pipeline.dagster_internals import partition_key_filter

# The filter for one partition's check evaluations; Dagster 1.13 exports it from no public module.
from xau_pipeline.defs.alerts.channels import ATTEMPTS, BACKOFF_SECONDS, Channel, Notice, configured_channels, deliver
from xau_pipeline.defs.alerts.incidents import OPENING, IncidentStore, PendingNotice
from xau_pipeline.defs.alerts.rules import (
    FAILED_RUNS_IN_A_ROW,
    STALE,
    Decision,
    Finding,
    decide,
    is_stale,
    market_quiet,
    runs_failing,
    stale_after,
)
from xau_pipeline.defs.automation.repair_sensor import REPAIR_SERIES_TAG
from xau_pipeline.defs.candles.checks import NO_GAPS, NOT_JUDGED, OHLC_VALID, QUARANTINE_EMPTY
from xau_pipeline.defs.candles.partitions import CATCH_UP_TAG
from xau_pipeline.defs.resources import CandleStoreResource
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.redact import url_password
from xau_pipeline.settings import Settings
from xau_pipeline.store.candle_store import CandleStore

ALERT_SENSOR_NAME = "alerts"
ALERT_INTERVAL_SECONDS = 60
# `fresh` is alerted as staleness (with its grace), not by its verdict.
ALERTED_CHECKS = (NO_GAPS, OHLC_VALID, QUARANTINE_EMPTY)
# The days whose verdicts count (UTC, today included): a gap or bad bar of the past week is told, a
# catch-up or repair judging older history is not; a failure resolves when its day's newest verdict
# passes or the day leaves the watch (it stays failed in the check's Partitions tab).
WATCHED_DAYS = 7
# How far back the newest stored bar is looked for expected bars after it; the grid is read over this.
STALE_LOOKBACK = timedelta(days=10)
# Finished runs read per tick, newest first (a few hours of live runs for many symbols).
RUNS_READ = 300
PREFIX = "[xau-pipeline]"
# Figures of a failed verdict shown in its notice, when present.
FIGURES = ("missing", "never_fetched", "provider_empty", "invalid_bars", "quarantined_bars")


@dataclass(frozen=True)
class Series:
    """One candle asset the sensor watches: its symbol (calendar), timeframe and asset key."""

    symbol: Symbol
    timeframe: Timeframe
    key: dg.AssetKey

    @property
    def name(self) -> str:
        return self.key.to_user_string()


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


def verdict_detail(check: str, day: str, evaluation: dg.AssetCheckEvaluation) -> str:
    """`no_gaps failed on 2024-03-12: missing 3, never_fetched 3` (the check's own figures)."""
    metadata = evaluation.metadata or {}
    figures = [f"{name} {_value(metadata[name])}" for name in FIGURES if name in metadata]
    why = ", ".join(figures) or (evaluation.description or "")
    return f"{check} {'passed' if evaluation.passed else 'failed'} on {day}" + (f": {why}" if why else "")


def check_findings(instance: dg.DagsterInstance, series: Sequence[Series], now: datetime) -> list[Finding]:
    """Per series and alerted check: failing when its newest completed evaluation on a watched day failed,
    passing when each watched day's newest passed (or none was judged). One query per watched day."""
    key_filter = partition_key_filter()
    if key_filter is None:
        return []
    days = [f"{day_start(now) - timedelta(days=n):%Y-%m-%d}" for n in range(WATCHED_DAYS)]
    keys = [dg.AssetCheckKey(s.key, name) for s in series for name in ALERTED_CHECKS]
    storage = instance.event_log_storage
    verdicts: dict[dg.AssetCheckKey, list[tuple[str, dg.AssetCheckEvaluation]]] = {key: [] for key in keys}
    for day in days:
        latest = storage.get_latest_asset_check_execution_by_key(keys, partition_filter=key_filter(key=day))
        for key, newest in latest.items():
            # PLANNED: a run is judging it now; its newest completed evaluation stands meanwhile.
            record = (
                newest
                if newest.status.value != "PLANNED"
                else next(
                    (
                        r
                        for r in storage.get_asset_check_execution_history(
                            key, limit=5, partition_filter=key_filter(key=day)
                        )
                        if r.status.value != "PLANNED"
                    ),
                    None,
                )
            )
            evaluation = record.event.asset_check_evaluation if record is not None and record.event else None
            if evaluation is None or (evaluation.description or "").startswith(NOT_JUDGED):
                continue
            verdicts[key].append((day, evaluation))
    findings = []
    for s in series:
        for name in ALERTED_CHECKS:
            judged = verdicts[dg.AssetCheckKey(s.key, name)]
            failed = [(day, e) for day, e in judged if not e.passed]
            if failed:
                detail = "; ".join(verdict_detail(name, day, e) for day, e in failed)
                findings.append(Finding(s.name, name, True, detail))
            else:
                findings.append(
                    Finding(
                        s.name,
                        name,
                        False,
                        f"{name}: no failed verdict in the last {WATCHED_DAYS} days ({len(judged)} day(s) judged)",
                    )
                )
    return findings


def first_missing_open(store: CandleStore, s: Series, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(the newest stored bar's open, the open of the first bar the calendar expects after it that has
    closed), None where there is none."""
    newest = store.newest_open(s.symbol.name, s.timeframe)
    if newest is None:
        return None, None
    grid = store.grid(s.symbol.name, s.timeframe, since=now - STALE_LOOKBACK).grid
    start = max(newest + timedelta(microseconds=1), now - STALE_LOOKBACK)
    for slot in calendar(s.symbol.calendar).expected_slots(start, now, s.timeframe.bar, grid=grid):
        if slot > newest and grid.slot_of(slot)[1] <= now:
            return newest, slot
    return newest, None


def stale_findings(store: CandleStore, series: Sequence[Series], now: datetime) -> list[Finding]:
    findings = []
    for s in series:
        newest, missing = first_missing_open(store, s, now)
        if newest is None:
            continue  # nothing stored yet: the history catch-up's, not staleness
        if is_stale(now, missing, s.timeframe.bar):
            assert missing is not None
            detail = (
                f"stale: the {s.timeframe.name} bar opening {utc_label(missing)} is not stored "
                f"({int((now - missing).total_seconds() // 60)} min ago; stale after "
                f"{int(stale_after(s.timeframe.bar).total_seconds() // 60)} min); newest stored {utc_label(newest)}"
            )
            findings.append(Finding(s.name, STALE, True, detail))
        else:
            findings.append(Finding(s.name, STALE, False, f"fresh again: newest stored bar {utc_label(newest)}"))
    return findings


def run_kind(tags: Mapping[str, str]) -> str:
    if CATCH_UP_TAG in tags:
        return "catch-up"
    if REPAIR_SERIES_TAG in tags:
        return "repair"
    return "live"


def run_findings(instance: dg.DagsterInstance, series: Sequence[Series]) -> list[Finding]:
    """Per series and kind of run: failing after FAILED_RUNS_IN_A_ROW failed runs in a row, passing once
    its newest run succeeded. A history catch-up run fetches all of a symbol's series: its incident is
    the symbol's (`xauusd`), not four."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]), limit=RUNS_READ
    )
    records = sorted(records, key=lambda r: r.end_time or r.create_timestamp.timestamp(), reverse=True)
    by_key = {s.key: s for s in series}
    history: dict[tuple[str, str], list[tuple[bool, str]]] = {}
    for record in records:
        run = record.dagster_run
        kind = run_kind(run.tags)
        names = {
            by_key[key].symbol.key_prefix if kind == "catch-up" else by_key[key].name
            for key in run.asset_selection or ()
            if key in by_key
        }
        for name in names:
            history.setdefault((name, kind), []).append((run.status == dg.DagsterRunStatus.SUCCESS, run.run_id))
    findings = []
    for (name, kind), runs in history.items():
        failing = runs_failing([ok for ok, _ in runs])
        if failing is None:
            continue
        kind_name = f"runs_failing:{kind}"
        if failing:
            ids = ", ".join(run_id[:8] for _, run_id in runs[:FAILED_RUNS_IN_A_ROW])
            findings.append(
                Finding(name, kind_name, True, f"the last {FAILED_RUNS_IN_A_ROW} {kind} runs failed ({ids})")
            )
        else:
            findings.append(Finding(name, kind_name, False, f"{kind} run {runs[0][1][:8]} succeeded"))
    return findings


def notice_of(pending: PendingNotice) -> Notice:
    what = f"{pending.series}: {pending.kind}"
    if pending.which == OPENING:
        return Notice(
            f"{PREFIX} FAILING {what}",
            f"{pending.detail}\nSince {utc_label(pending.opened_at)}. Series {pending.series}.",
        )
    return Notice(
        f"{PREFIX} RESOLVED {what}",
        f"Resolved at {utc_label(pending.resolved_at)}: {pending.resolution}\n"
        f"It was: {pending.detail} (since {utc_label(pending.opened_at)}).",
    )


def deliver_pending(
    incidents: IncidentStore,
    channels: Sequence[Channel],
    log: Any,
    attempts: int,
    backoff: float,
    secrets: Sequence[str | None] = (),
) -> tuple[int, list[str]]:
    """Send every notice owed; a channel that fails is left for the next tick. (sent, failures)."""
    by_name = {channel.name: channel for channel in channels}
    down: set[str] = set()
    sent, failures = 0, []
    for pending in incidents.pending(list(by_name)):
        if pending.channel in down:
            continue
        error = deliver(by_name[pending.channel], notice_of(pending), attempts, backoff, secrets)
        if error is None:
            incidents.taken(pending)
            sent += 1
        else:
            down.add(pending.channel)
            failures.append(f"{pending.channel}: {error}")
            log.warning(
                f"alert {pending.which} of {pending.series} {pending.kind} not delivered by {pending.channel}, "
                f"tried again next tick: {error}"
            )
    return sent, failures


def _description(channels: Sequence[Any]) -> str:
    return (
        "One notice per incident and one when it clears, to "
        + (", ".join(c.describe() for c in channels) or "no channel (set XAU_ALERT_WEBHOOK_URL or XAU_ALERT_SMTP_URL)")
        + f": a failed {', '.join(ALERTED_CHECKS)} on one of the last {WATCHED_DAYS} days, a stale series "
        f"(twice the bar plus 5 min), {FAILED_RUNS_IN_A_ROW} failed runs in a row of a kind; nothing while the "
        "market is closed. README: Alerts."
    )


def _summary(decision: Decision, open_now: int, sent: int, failures: Sequence[str], quiet_series: Sequence[str]) -> str:
    """The tick's one line: incidents opened, resolved and open, notices sent, what was not delivered."""
    summary = (
        f"{len(decision.opened)} incident(s) opened, {len(decision.resolved)} resolved, {open_now} open; "
        f"{sent} notice(s) sent"
    )
    if failures:
        summary += "; not delivered (next tick): " + "; ".join(failures)
    if quiet_series:
        summary += f"; market closed for {', '.join(quiet_series[:4])}{' ...' if len(quiet_series) > 4 else ''}"
    return summary


def build_alert_sensor(
    settings: Settings,
    series: Sequence[Series],
    clock: Callable[[], datetime] = utc_now,
    attempts: int | None = None,
    backoff: float | None = None,
) -> dg.SensorDefinition:
    """Every ALERT_INTERVAL_SECONDS: incidents opened and resolved over `series`, and their notices sent."""
    channels = configured_channels(settings)
    tries = ATTEMPTS if attempts is None else attempts
    wait = BACKOFF_SECONDS if backoff is None else backoff
    # Quiet or not by the symbol's calendar, for a series and for a symbol's own incidents (catch-up).
    policies = {name: calendar(s.symbol.calendar) for s in series for name in (s.name, s.symbol.key_prefix)}

    @dg.sensor(
        name=ALERT_SENSOR_NAME,
        minimum_interval_seconds=ALERT_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=_description(channels),
    )
    def alerts(context: dg.SensorEvaluationContext, candle_store: CandleStoreResource):
        """Findings -> incidents opened and resolved (committed one by one) -> owed notices delivered."""
        if not channels:
            return dg.SkipReason("alerts off: neither XAU_ALERT_WEBHOOK_URL nor XAU_ALERT_SMTP_URL is set")
        now = clock()
        store = candle_store.store()
        findings = check_findings(context.instance, series, now)
        findings += stale_findings(store, series, now)
        findings += run_findings(context.instance, series)
        incidents = IncidentStore(store.engine)
        quiet_cache: dict[str, bool] = {}

        def quiet(name: str) -> bool:
            if name not in quiet_cache:
                policy = policies.get(name)
                quiet_cache[name] = policy is not None and market_quiet(policy, now)
            return quiet_cache[name]

        decision = decide(incidents.open_incidents(), findings, quiet)
        names = [c.name for c in channels]
        for finding in decision.opened:
            incidents.open(finding, now, names)
            context.log.info(f"alert opened: {finding.series} {finding.kind}: {finding.detail}")
        for incident, resolution in decision.resolved:
            incidents.resolve(incident, now, resolution, names)
            context.log.info(f"alert resolved: {incident.series} {incident.kind}: {resolution}")
        sent, failures = deliver_pending(
            incidents, channels, context.log, tries, wait, (url_password(settings.database_url),)
        )
        quiet_series = sorted(name for name, q in quiet_cache.items() if q)
        summary = _summary(decision, len(incidents.open_incidents()), sent, failures, quiet_series)
        return dg.SkipReason(summary)

    return alerts
