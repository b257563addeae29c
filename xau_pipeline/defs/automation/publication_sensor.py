"""The publication sensor: a newly closed bar that is not final yet is asked for again until it is.

The schedules fetch each bar `publication.SETTLE` after its close, when Twelve Data has usually
published it: one call, and the bar is final. A bar published later is absent from that answer, or
was stored provisional by a run that came earlier (a manual run, a backfill of today): its slot
stays unsettled (publication.py). Every 30 s this sensor finds, per series, the newest expected
slots that closed at least SETTLE ago, within the publication window, were asked for since their
close and are still unsettled, and requests one run for them once their last answer is
`REASK_EVERY` old (a bar no run asked for is the schedule's: the sensor never races it): each such bar is stored
final within about a minute of its publication, and a bar never published becomes a provider gap
once the publication window has passed, after a handful of calls. Its runs draw on the schedules'
share of the credits (they are live work).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg

from xau_pipeline.clock import utc_now
from xau_pipeline.defs.automation.runs_in_progress import runs_in_progress
from xau_pipeline.defs.automation.timeframe_sensors import credits_today, timeframe_sensor
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.bar_grid import Grid
from xau_pipeline.market.bars import Interval
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.publication import LIVE_TAG, PUBLICATION_WINDOW, REASK_EVERY, SETTLE
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import Timeframe
from xau_pipeline.store.candle_store import CandleStore

SENSOR_INTERVAL_SECONDS = 30
# Past the publication window, one more answer settles the slot (a provider gap): looked at this long.
LAST_CALL_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class Unsettled:
    """A closed bar of a series not final yet, and whether it is due to be asked for again."""

    slot: datetime
    close: datetime
    last_asked: datetime | None
    due: bool


def unsettled(
    store: CandleStore, symbol: Symbol, timeframe: Timeframe, now: datetime, grid: Grid | None = None
) -> list[Unsettled]:
    """The expected bars of the series that closed between SETTLE and the publication window (and a
    last-call grace) before `now`, were asked for since, and are still unsettled, oldest first, each
    with its last answer and whether it is due to be asked again."""
    oldest_close = now - PUBLICATION_WINDOW - LAST_CALL_GRACE
    # Only a slot asked for since its close can be due: no answer in that span, nothing to do (and no
    # H4/D1 grid to read off the stored bars, at every tick).
    if store.oldest_fetched_since(symbol.name, timeframe, oldest_close) is None:
        return []
    grid = grid or store.recent_grid(symbol.name, timeframe, now)
    bounds = calendar(symbol.calendar).expected_slot_bounds(oldest_close - timeframe.bar - timedelta(days=1), now, grid)
    slots = [(i, slot, close) for i, (slot, close) in enumerate(bounds) if oldest_close < close <= now - SETTLE]
    if not slots:
        return []
    missing = store.missing(symbol.name, timeframe, slots[0][1], slots[-1][1] + timedelta(microseconds=1))
    found = []
    for i, slot, close in slots:
        if not _inside(slot, missing):
            continue
        asked = store.last_asked(symbol.name, timeframe, slot, since=close)
        if asked is None:
            continue  # never asked since its close: the schedule's (or a backfill's) to ask first
        # The bar before missing too: the feed is down, not late; re-asking every 40 s through an
        # outage would spend the day's credits. The repair sensor retries such gaps on its backoff.
        previous_missing = i > 0 and store.summary(symbol.name, timeframe, bounds[i - 1][0], slot)[0] == 0
        found.append(Unsettled(slot, close, asked, not previous_missing and now - asked >= REASK_EVERY))
    return found


def _inside(moment: datetime, intervals: list[Interval]) -> bool:
    return any(start <= moment < end for start, end in intervals)


def _due_by_day(
    store: CandleStore,
    timeframe: Timeframe,
    assets: Mapping[Symbol, dg.AssetsDefinition],
    busy: set[str],
    now: datetime,
) -> tuple[dict[str, list[tuple[Symbol, Unsettled]]], list[str]]:
    """The bars due to be asked for again, by UTC day, and a note per series waiting for another reason."""
    by_day: dict[str, list[tuple[Symbol, Unsettled]]] = {}
    notes = []
    for symbol, asset in assets.items():
        path = asset.key.to_user_string()
        pending = unsettled(store, symbol, timeframe, now)
        if not pending:
            continue
        newest = pending[-1]
        if any(path in series.split(",") for series in busy):
            notes.append(f"{path}: {len(pending)} bar(s) not final yet; a run asking for them is in progress")
            continue
        due = [u for u in pending if u.due]
        if not due:
            notes.append(
                f"{path}: {len(pending)} bar(s) not final yet, the newest opening {newest.slot:%Y-%m-%d %H:%M} UTC; "
                f"asked for again {REASK_EVERY.seconds} s after the last answer"
            )
            continue
        for u in due:
            by_day.setdefault(u.slot.strftime("%Y-%m-%d"), []).append((symbol, u))
    return by_day, notes


def _run_requests(
    name: str,
    assets: Mapping[Symbol, dg.AssetsDefinition],
    partitions_def: dg.TimeWindowPartitionsDefinition,
    by_day: dict[str, list[tuple[Symbol, Unsettled]]],
    now: datetime,
) -> list[dg.RunRequest]:
    """One run per day over the symbols with bars due that day."""
    first_key = partitions_def.get_first_partition_key()
    requests = []
    for day, members in sorted(by_day.items()):
        if first_key is None or day < first_key:
            continue
        symbols = sorted({symbol for symbol, _ in members}, key=lambda s: s.name)
        paths = ",".join(assets[s].key.to_user_string() for s in symbols)
        newest_slot = max(u.slot for _, u in members)
        requests.append(
            dg.RunRequest(
                partition_key=day,
                run_key=f"{name}:{day}:{newest_slot:%H%M}:{now:%Y-%m-%dT%H:%M:%S}",
                asset_selection=[assets[s].key for s in symbols],
                tags={LIVE_TAG: paths, "xau/bar_open": newest_slot.isoformat()},
            )
        )
    return requests


def build_publication_sensor(
    timeframe: Timeframe,
    assets: Mapping[Symbol, dg.AssetsDefinition],
    partitions_def: dg.TimeWindowPartitionsDefinition,
) -> dg.SensorDefinition:
    """Every 30 s, over every symbol's `timeframe` asset: one run per day for the bars that closed but
    are not final yet (absent or provisional), once their last answer is REASK_EVERY old."""
    description = (
        f"{timeframe.name} of {len(assets)} symbol(s): a bar that closed but is not final yet (not published "
        f"when its schedule asked, or stored provisional) is asked for again every {REASK_EVERY.seconds} s "
        f"until it is, for {int(PUBLICATION_WINDOW.total_seconds() // 60)} minutes after its close; then it is "
        "a provider gap."
    )
    name = f"{timeframe.key_suffix}_publication"

    @timeframe_sensor(name, assets, SENSOR_INTERVAL_SECONDS, description)
    def publication(
        context: dg.SensorEvaluationContext, candle_store: CandleStoreResource, twelvedata: TwelveDataResource
    ):
        now = utc_now()
        store = candle_store.store()
        settings = twelvedata.budget_settings()
        used, left = credits_today(store, settings, now)
        if left["schedule"] <= 0:
            return dg.SkipReason(f"today's credits are spent ({sum(used.values())} of {settings.per_day})")
        busy = {
            run.tags[LIVE_TAG]
            for run in runs_in_progress(context.instance, {"dagster/sensor_name": name}, now)
            if LIVE_TAG in run.tags
        }
        by_day, notes = _due_by_day(store, timeframe, assets, busy, now)
        requests = _run_requests(name, assets, partitions_def, by_day, now)
        if requests:
            return requests
        return dg.SkipReason("; ".join(notes[:3]) if notes else "every closed bar is final or not due yet")

    return publication
