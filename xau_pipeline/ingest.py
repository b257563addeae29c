"""Bring one series up to date over a window: ask only for what is missing, write it in one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from xau_pipeline.bars import Interval
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.upsert import UpsertCounts
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import Timeframe
from xau_pipeline.trading_calendar import calendar
from xau_pipeline.twelvedata.client import CLOSE_MARGIN, ONE_SECOND, SeriesFetch, TwelveDataClient

logger = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What one ingest asked for, paid and wrote."""

    symbol: Symbol
    timeframe: Timeframe
    start: datetime
    end: datetime
    gaps: list[Interval] = field(default_factory=list)
    fetch: SeriesFetch = field(default_factory=SeriesFetch)
    counts: UpsertCounts = field(default_factory=UpsertCounts)

    @property
    def complete(self) -> bool:
        return self.fetch.error is None


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
) -> IngestReport:
    """Fetch the bars of [start, end) not yet stored closed (all of them if `force`) and upsert them."""
    log = log or logger
    now = client.clock().astimezone(UTC).replace(microsecond=0)
    # Ask only for bars that can have closed (opens fall on whole seconds, hence + 1 s).
    end = min(end, now - CLOSE_MARGIN - timeframe.bar + ONE_SECOND)
    report = IngestReport(symbol, timeframe, start, end)
    if start >= end:
        log.info(f"{symbol.name} {timeframe.name}: nothing to fetch yet, no bar of the window has closed")
        return report
    report.gaps = [(start, end)] if force else store.missing(symbol.name, timeframe, start, end)
    if not report.gaps:
        log.info(
            f"{symbol.name} {timeframe.name}: {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} already stored; 0 API calls"
        )
        return report

    def progress(index: int, total: int, bars: int) -> None:
        log.info(f"{symbol.name} {timeframe.name}: window {index} of {total} fetched, {bars} closed bars so far")

    report.fetch = client.fetch(symbol.api_symbol, timeframe, report.gaps, calendar(symbol.calendar), progress=progress)
    report.counts = store.write(symbol.name, timeframe, report.fetch.bars, report.fetch.windows)
    if report.fetch.error is not None:
        log.warning(
            f"{symbol.name} {timeframe.name}: stopped after {len(report.fetch.windows)} window(s), "
            f"{report.counts.inserted + report.counts.updated} row(s) stored: {report.fetch.error}"
        )
    log.info(
        f"{symbol.name} {timeframe.name}: {report.counts.inserted} inserted, {report.counts.updated} updated, "
        f"{report.counts.unchanged} unchanged; {report.fetch.calls} API call(s), {report.fetch.credits} credit(s)"
        + (f"; {report.fetch.forming_dropped} still-forming bar(s) not stored" if report.fetch.forming_dropped else "")
    )
    return report
