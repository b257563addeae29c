"""Bring one series up to date over a window: ask only for what is missing, store each answered window
the moment it arrives, in its own transaction, under a claim on the series.

For each request window: claim the series (a transaction-scoped advisory lock), re-read coverage
(another run may have just stored it), make the one call, screen the bars (validation.py), and
commit the window's bars, quarantined bars, coverage and ledger settlement together. A crash after
k windows keeps k windows; the rerun asks only for the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from xau_pipeline.market.bar_grid import Grid, new_york_close_grid, utc_grid
from xau_pipeline.market.bars import FetchedWindow, Interval
from xau_pipeline.market.market_hours import TradingCalendar, calendar
from xau_pipeline.market.publication import PUBLICATION_WINDOW, covered_until, final_before
from xau_pipeline.market.quarantine_rule import Rejected, answer_phase, parse_values, screen
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.upsert import UpsertCounts
from xau_pipeline.store.window_claim import WindowClaim
from xau_pipeline.twelvedata.client import CLOSE_MARGIN, ONE_SECOND, Page, TwelveDataClient
from xau_pipeline.twelvedata.windows import WindowPlanner, merge_gaps

logger = logging.getLogger(__name__)

ONE_HOUR = timedelta(hours=1)
QUARANTINE_SAMPLES = 20


@dataclass
class IngestReport:
    """What one ingest asked for, paid, stored and quarantined."""

    symbol: Symbol
    timeframe: Timeframe
    start: datetime
    end: datetime
    gaps: list[Interval] = field(default_factory=list)
    windows: list[FetchedWindow] = field(default_factory=list)
    calls: int = 0
    credits: int = 0
    forming_dropped: int = 0
    # Closed bars stored before their publication could be trusted (candles.final false).
    provisional: int = 0
    quarantined: int = 0
    # The first few quarantined bars (the rest are in `candle_quarantine`): memory stays bounded.
    quarantine_samples: list[Rejected] = field(default_factory=list)
    quarantine_reasons: set[str] = field(default_factory=set)
    windows_already_stored: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    error: Exception | None = None

    @property
    def complete(self) -> bool:
        return self.error is None

    def add(self, counts: UpsertCounts) -> None:
        c = self.counts
        self.counts = UpsertCounts(
            c.inserted + counts.inserted, c.updated + counts.updated, c.unchanged + counts.unchanged
        )

    def record(self, window: FetchedWindow, counts: UpsertCounts, *, forming: int, rejected: list[Rejected]) -> None:
        """A stored window: its rows, the still-forming bars left out and the bars quarantined."""
        self.windows.append(window)
        self.add(counts)
        self.forming_dropped += forming
        self.quarantined += len(rejected)
        self.quarantine_samples += rejected[: max(QUARANTINE_SAMPLES - len(self.quarantine_samples), 0)]
        self.quarantine_reasons.update(r.reason.split(":")[0].split(" (")[0] for r in rejected)


def candidate_grids(claim: WindowClaim, timeframe: Timeframe, parsed) -> list[Grid]:
    """The grids a bar of this series may open on.

    M15 and H1: the UTC grid (their 17:00 New York grid is the same slots). H4 and D1: Twelve Data's
    phase and anchor are undocumented, so both the UTC grid at the phase the stored bars show (else
    the answer's dominant whole-hour phase) and the grid anchored at 17:00 New York, whose UTC times
    move at each US DST switch; the gap check then judges the series on the grid its bars fit.
    """
    if timeframe.bar <= ONE_HOUR:
        return [utc_grid(timeframe.bar)]
    stored = claim.stored_phase()
    phase = stored if stored is not None else answer_phase(parsed, timeframe.bar, ONE_HOUR)
    return [utc_grid(timeframe.bar, phase), new_york_close_grid(timeframe.bar)]


def ingest(
    client: TwelveDataClient,
    store: CandleStore,
    symbol: Symbol,
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    *,
    force: bool = False,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    run_id: str | None = None,
    read_ahead_to: datetime | None = None,
) -> IngestReport:
    """Fetch the bars of [start, end) not yet stored closed (all of them if `force`), window by window.

    With `read_ahead_to` (history catch-up), the oldest window is a whole page reaching back into
    what is still missing before `start`, down to `read_ahead_to`: a call costs one credit whatever
    its size, so the windows of a history fetched in several runs tile it as one run's would.
    A failure stops the loop; the windows stored before it stay stored, and the report carries the error.
    """
    log = log or logger
    now = client.clock().astimezone(UTC).replace(microsecond=0)
    # Ask only for bars that can have closed (opens fall on whole seconds, hence + 1 s).
    end = min(end, now - CLOSE_MARGIN - timeframe.bar + ONE_SECOND)
    report = IngestReport(symbol, timeframe, start, end)
    if start >= end:
        log.info(f"{symbol.name} {timeframe.name}: nothing to fetch yet, no bar of the window has closed")
        return report
    lost = store.settle_abandoned_calls()
    if lost:
        log.warning(f"{lost} API call(s) of processes that died before storing their answers settled as lost")
    floor = start if force or read_ahead_to is None else min(start, read_ahead_to)
    report.gaps = [(start, end)] if force else store.missing(symbol.name, timeframe, floor, end)
    if not any(gap_end > start for _, gap_end in report.gaps):
        # Debug: in a run, the asset's "run totals" line says the same (each log line is an event).
        log.debug(
            f"{symbol.name} {timeframe.name}: {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} already stored; 0 API calls"
        )
        return report
    policy = calendar(symbol.calendar)
    planners, planned, revise = _plan(store, report, policy, start, now, log)
    _fetch_all(client, store, report, planners, planned, revise, force, policy, run_id, log)
    _log_totals(report, log)
    return report


def _fetch_all(
    client: TwelveDataClient,
    store: CandleStore,
    report: IngestReport,
    planners: list[WindowPlanner],
    planned: int,
    revise: datetime | None,
    force: bool,
    policy: TradingCalendar,
    run_id: str | None,
    log: logging.Logger | logging.LoggerAdapter,
) -> None:
    """Each planner's windows, newest first, until all are stored; the first failure stops the loop
    and goes into the report."""
    symbol, timeframe, start = report.symbol, report.timeframe, report.start
    done = 0
    try:
        for planner in planners:
            cursor, full = planner.end, False
            while cursor > max(planner.start, start):
                cursor, called, full = _fetch_newest_missing(
                    client,
                    store,
                    report,
                    planner,
                    cursor,
                    force,
                    policy,
                    run_id,
                    keep_closed=full,
                    revise_from=revise if cursor == planner.end else None,
                )
                if not called:
                    continue
                done += 1
                log.info(
                    f"{symbol.name} {timeframe.name}: window {done} of {max(planned, done)} fetched, "
                    f"{report.counts.inserted + report.counts.updated + report.counts.unchanged} closed bars so far"
                )
    except Exception as exc:
        report.error = exc
        log.warning(
            f"{symbol.name} {timeframe.name}: stopped after {len(report.windows)} stored window(s), "
            f"{report.counts.changed} row(s) written: {type(exc).__name__}: {exc}"
        )


def _plan(
    store: CandleStore,
    report: IngestReport,
    policy: TradingCalendar,
    start: datetime,
    now: datetime,
    log: logging.Logger | logging.LoggerAdapter,
) -> tuple[list[WindowPlanner], int, datetime | None]:
    """The request windows over the report's gaps, the calls they need from `start` on, and the bar a
    live call asks for again (None when the run is not live)."""
    symbol, timeframe = report.symbol, report.timeframe
    # Requests are sized in the series' own slots (H4 and D1 may be anchored at 17:00 New York).
    grid = store.grid(symbol.name, timeframe).grid if timeframe.bar > ONE_HOUR else None
    planners = [
        planner
        for span in merge_gaps(report.gaps, timeframe.bar, policy, grid=grid)
        if span[1] > start
        # A sliver in which no bar of the grid opens (the rest of a day after its D1 bar) costs no call.
        and (planner := WindowPlanner(span, timeframe.bar, policy, grid=grid)).expected_calls
    ]
    if not planners:
        log.info(
            f"{symbol.api_symbol} {timeframe.name}: the market is closed throughout the missing window(s); no call"
        )
    planned = sum(p.calls_reaching(start) for p in planners)
    # A live call also asks again for the bar before the newest missing one (the same credit): taken
    # as final when it came 2 minutes after its close, it may have been served provisional if its
    # publication was later; a changed bar is corrected (publication.py).
    revise = planners[-1].start - timeframe.bar if planners else None
    live = planners and planners[-1].end > now - timeframe.bar - PUBLICATION_WINDOW
    if not live or revise is None or revise < start:  # not live, or before the window asked for
        revise = None
    return planners, planned, revise


def _log_totals(report: IngestReport, log: logging.Logger | logging.LoggerAdapter) -> None:
    symbol, timeframe = report.symbol, report.timeframe
    if report.quarantined:
        log.error(
            f"{symbol.name} {timeframe.name}: {report.quarantined} bar(s) quarantined, not stored: "
            + ", ".join(sorted(report.quarantine_reasons))
        )
    log.info(
        f"{symbol.name} {timeframe.name}: {report.counts.inserted} inserted, {report.counts.updated} updated, "
        f"{report.counts.unchanged} unchanged; {report.calls} API call(s), {report.credits} credit(s)"
        + (f"; {report.forming_dropped} still-forming bar(s) not stored" if report.forming_dropped else "")
        + (f"; {report.provisional} bar(s) stored provisional, not yet final" if report.provisional else "")
        + (f"; {report.quarantined} quarantined" if report.quarantined else "")
    )


def _call(client: TwelveDataClient, report: IngestReport, start: datetime, end: datetime) -> Page:
    """One call for [start, end), its calls and credits counted in the report whatever the outcome."""
    calls_before, credits_before = client.calls, client.credits
    try:
        return client.time_series(report.symbol.api_symbol, report.timeframe.interval, start, end, settle=False)
    finally:
        report.calls += client.calls - calls_before
        report.credits += client.credits - credits_before


def _page_cover(full: bool, in_window: list, ask_start: datetime, ask_end: datetime) -> datetime:
    """Where the answer's cover starts. A full page left the oldest bars out (Twelve Data keeps the
    newest): it covers from its oldest bar to the end asked for, so a closed or empty stretch at the
    end is not a seam that a rerun would pay for again."""
    if full and in_window:
        return max(ask_start, min(b.open_time for b, _ in in_window))
    return ask_start


def _fetch_newest_missing(
    client: TwelveDataClient,
    store: CandleStore,
    report: IngestReport,
    planner: WindowPlanner,
    cursor: datetime,
    force: bool,
    policy: TradingCalendar,
    run_id: str | None,
    keep_closed: bool = False,
    revise_from: datetime | None = None,
) -> tuple[datetime, bool, bool]:
    """Under a claim on the series: fetch and store the newest window still missing in
    [planner.start, cursor). Returns where the rest of the span ends (its start when nothing is left), whether a call was
    made, and whether its page was full of more bars than the calendar expects there (a 24/7
    feed). After such a page (`keep_closed`) the rest is asked for even where the market is closed
    throughout: the feed sends bars there, and the stretch is the edge of a window being paid for.
    Coverage is re-read after the claim, so a concurrent run's windows are never asked for again: the
    window asked for is the one a run alone would ask for next.
    """
    symbol, timeframe = report.symbol, report.timeframe
    bar = timeframe.bar
    with store.claim_window(symbol.name, timeframe) as claim:
        span = (planner.start, cursor)
        missing = claim.missing(*span)
        spans = [span] if force else merge_gaps(missing, bar, policy, grid=planner.grid, keep_closed=keep_closed)
        if not spans:
            report.windows_already_stored += 1
            return span[0], False, False
        newest_start, ask_end = spans[-1]
        # The planner's slots are the calendar's, whatever is stored: its window ending at `ask_end`,
        # clipped to the missing span, is the window a run alone would ask for.
        ask_start = max(newest_start, planner.window_ending_at(ask_end)[0])
        if revise_from is not None and revise_from < ask_start:
            ask_start = revise_from
        asked_at = client.clock()
        as_of = asked_at - CLOSE_MARGIN
        page = _call(client, report, ask_start, ask_end)
        parsed, rejected = parse_values(page.values)
        in_window = [(b, raw) for b, raw in parsed if ask_start <= b.open_time < ask_end]
        good, screened_out, _repeats = screen(in_window, candidate_grids(claim, timeframe, in_window))
        rejected += screened_out
        covered_start, covered_end = _page_cover(page.full, in_window, ask_start, ask_end), ask_end
        closed = [b for b in good if b.open_time + bar <= as_of]
        # Settled: the bars final by now, and the empty slots long enough after their close; bars
        # received sooner are stored provisional and their slots asked for again (publication.py).
        newest_end = closed[-1].open_time + bar if closed else None
        settled = covered_until(asked_at, bar, (covered_start, covered_end), newest_end)
        fetched = FetchedWindow(covered_start, covered_end, asked_at, len(closed), closed_until=settled)
        outcome = f"ok: {len(closed)} bars" + (f", {len(rejected)} quarantined" if rejected else "")
        settlement = (page.ticket, outcome, page.credits) if page.ticket is not None else None
        final_until = final_before(asked_at, bar)
        counts = claim.store(closed, rejected, fetched, asked_at, run_id, settlement, final_before=final_until)
    # Committed: only now does the window count as stored.
    report.record(fetched, counts, forming=len(good) - len(closed), rejected=rejected)
    report.provisional += sum(b.open_time >= final_until for b in closed)
    # More bars than the calendar expects where the page reached: the feed sends off-session bars.
    beyond = page.full and len(in_window) > policy.count_expected(covered_start, ask_end, bar, grid=planner.grid)
    return covered_start, True, beyond
