"""Asset checks on each candle asset, evaluated per daily partition and shown in the UI."""

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg

from xau_pipeline.markdown import ROWS_SHOWN, markdown_table
from xau_pipeline.resources import CandleStoreResource
from xau_pipeline.settings import Settings
from xau_pipeline.store.gaps import NEVER_FETCHED, NOT_CLOSED, PROVIDER_EMPTY
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import TIMEFRAMES_BY_NAME, Timeframe
from xau_pipeline.trading_calendar import calendar
from xau_pipeline.utc import utc_label, utc_now

M15 = TIMEFRAMES_BY_NAME["M15"]
# A bar closed less than this long ago may simply not have been fetched yet (schedules run
# one minute after the close).
FRESH_GRACE = timedelta(minutes=10)

# Dagster's metadata values: numbers, strings, MetadataValue.md(...) and the like.
Metadata = Mapping[str, Any]
Evaluation = tuple[bool, Metadata]


def _per_partition(
    context: dg.AssetCheckExecutionContext,
    asset_key: dg.AssetKey,
    check_name: str,
    severity: dg.AssetCheckSeverity,
    evaluate: Callable[[str], Evaluation | None],
) -> dg.AssetCheckResult:
    """One result per partition of the run: returned for a single partition, logged per key for a range.

    `evaluate` may return None for a partition the check does not apply to.
    """
    results = [(key, evaluation) for key in context.partition_keys if (evaluation := evaluate(key)) is not None]
    if len(context.partition_keys) == 1:
        passed, metadata = results[0][1] if results else (True, {"note": "not applicable to this partition"})
        return dg.AssetCheckResult(passed=passed, severity=severity, metadata=metadata)
    for key, (passed, metadata) in results:
        context.op_execution_context.log_event(
            dg.AssetCheckEvaluation(  # type: ignore[arg-type]  # log_event takes check evaluations too
                asset_key=asset_key,
                check_name=check_name,
                passed=passed,
                partition=key,
                severity=severity,
                metadata=metadata,
            )
        )
    failing = [key for key, (passed, _) in results if not passed]
    return dg.AssetCheckResult(
        passed=not failing,
        severity=severity,
        metadata={
            "partitions_checked": len(results),
            "partitions_failing": ", ".join(failing[:ROWS_SHOWN]) or "none",
        },
    )


def build_candle_checks(
    symbol: Symbol,
    timeframe: Timeframe,
    asset: dg.AssetsDefinition,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settings: Settings,
) -> list[dg.AssetChecksDefinition]:
    """no_gaps, ohlc_valid, quarantine_empty and fresh on every candle asset; consistent_with_m15 above M15."""
    policy = calendar(symbol.calendar)
    bar = timeframe.bar

    def window(key: str) -> tuple[datetime, datetime]:
        time_window = partitions_def.time_window_for_partition_key(key)
        return time_window.start, time_window.end

    @dg.asset_check(asset=asset, name="no_gaps", partitions_def=partitions_def, blocking=False)
    def no_gaps(context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource) -> dg.AssetCheckResult:
        """Every bar the trading calendar expects is stored; missing ones are listed and explained."""
        now = utc_now()
        store = candle_store.store()
        phase = store.bar_phase(symbol.name, timeframe)

        def evaluate(key: str) -> Evaluation:
            start, end = window(key)
            report = store.gaps(symbol.name, timeframe, policy, start, min(end, now), now, phase)
            closed_gaps = report.missing - report.count(NOT_CLOSED)
            return closed_gaps == 0, {
                "expected": report.expected,
                "present": report.stored,
                "missing": report.missing,
                NEVER_FETCHED: report.count(NEVER_FETCHED),
                PROVIDER_EMPTY: report.count(PROVIDER_EMPTY),
                NOT_CLOSED: report.count(NOT_CLOSED),
                "off_session_bars": report.off_session,
                "bar_phase": f"{report.phase} after the UTC grid",
                "calendar": policy.name,
                "missing_bars": dg.MetadataValue.md(
                    markdown_table(("open time", "reason"), [(utc_label(g.slot), g.reason) for g in report.gaps])
                ),
            }

        return _per_partition(context, asset.key, "no_gaps", dg.AssetCheckSeverity.WARN, evaluate)

    @dg.asset_check(asset=asset, name="ohlc_valid", partitions_def=partitions_def, blocking=False)
    def ohlc_valid(context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource) -> dg.AssetCheckResult:
        """low <= min(open, close) <= max(open, close) <= high, prices > 0, no jump from the previous close beyond XAU_MAX_JUMP."""
        store = candle_store.store()

        def evaluate(key: str) -> Evaluation:
            rows = store.invalid_bars(symbol.name, timeframe, *window(key), settings.max_jump)
            table = markdown_table(
                ("open time (UTC)", "open", "high", "low", "close", "previous close"),
                [(f"{r.timestamp:%Y-%m-%d %H:%M}", r.open, r.high, r.low, r.close, r.prev_close) for r in rows],
            )
            return not rows, {
                "invalid_bars": len(rows),
                "max_jump": float(settings.max_jump),
                "invalid": dg.MetadataValue.md(table),
            }

        return _per_partition(context, asset.key, "ohlc_valid", dg.AssetCheckSeverity.ERROR, evaluate)

    @dg.asset_check(asset=asset, name="quarantine_empty", partitions_def=partitions_def, blocking=False)
    def quarantine_empty(
        context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource
    ) -> dg.AssetCheckResult:
        """No bar of the partition was kept out of `candles` (off grid, prices not finite or not > 0,
        high < low, a datetime repeated with other values, unreadable): see `candle_quarantine`."""
        store = candle_store.store()

        def evaluate(key: str) -> Evaluation:
            count, rows = store.quarantined(symbol.name, timeframe, *window(key), limit=ROWS_SHOWN)
            table = markdown_table(
                ("open time (UTC)", "reason", "raw values", "fetched at (UTC)"),
                [
                    (utc_label(r.bar_time), r.reason, r.raw.replace("|", "/")[:120], utc_label(r.fetched_at))
                    for r in rows
                ],
            )
            return count == 0, {"quarantined_bars": count, "quarantined": dg.MetadataValue.md(table)}

        return _per_partition(context, asset.key, "quarantine_empty", dg.AssetCheckSeverity.ERROR, evaluate)

    @dg.asset_check(asset=asset, name="fresh", partitions_def=partitions_def, blocking=False)
    def fresh(context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource) -> dg.AssetCheckResult:
        """On the newest partition: the newest closed bar the calendar expects is stored; shows its age."""
        now = utc_now()
        newest_key = partitions_def.get_last_partition_key()
        store = candle_store.store()
        phase = store.bar_phase(symbol.name, timeframe)

        def evaluate(key: str) -> Evaluation | None:
            if key != newest_key:
                return None
            lookback = now - timedelta(days=10)
            closed = [s for s in policy.expected_slots(lookback, now, bar, phase) if s + bar <= now - FRESH_GRACE]
            report = (
                store.gaps(symbol.name, timeframe, policy, closed[-1], closed[-1] + bar, now, phase) if closed else None
            )
            newest = store.newest_open(symbol.name, timeframe)
            age = (now - (newest + bar)) if newest else None
            return (report is None or report.missing == 0), {
                "newest_expected_closed_bar": utc_label(closed[-1] if closed else None),
                "newest_stored_bar": utc_label(newest),
                "age_minutes": round(age.total_seconds() / 60, 1) if age is not None else -1,
            }

        return _per_partition(context, asset.key, "fresh", dg.AssetCheckSeverity.WARN, evaluate)

    checks = [no_gaps, ohlc_valid, quarantine_empty, fresh]
    if timeframe.bar > M15.bar:

        @dg.asset_check(asset=asset, name="consistent_with_m15", partitions_def=partitions_def, blocking=False)
        def consistent_with_m15(
            context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource
        ) -> dg.AssetCheckResult:
            """Each bar agrees with the M15 bars it covers (open, high, low, close) within XAU_M15_TOLERANCE."""
            tolerance: Decimal = settings.m15_tolerance
            store = candle_store.store()
            phase = store.bar_phase(symbol.name, timeframe)

            def m15_expected(slot: datetime) -> int:
                return policy.count_expected(slot, slot + bar, M15.bar)

            def evaluate(key: str) -> Evaluation:
                mismatches, compared, incomplete = store.m15_mismatches(
                    symbol.name, timeframe, phase, *window(key), tolerance, m15_expected
                )
                table = markdown_table(
                    ("open time (UTC)", "differs in", "bar O/H/L/C", "from M15 O/H/L/C"),
                    [
                        (
                            f"{m.timestamp:%Y-%m-%d %H:%M}",
                            ", ".join(m.fields),
                            " / ".join(map(str, m.bar)),
                            " / ".join(map(str, m.m15)),
                        )
                        for m in mismatches
                    ],
                )
                return not mismatches, {
                    "bars_compared": compared,
                    "bars_with_incomplete_m15": incomplete,
                    "mismatches": len(mismatches),
                    "tolerance": float(tolerance),
                    "mismatched_bars": dg.MetadataValue.md(table),
                }

            return _per_partition(context, asset.key, "consistent_with_m15", dg.AssetCheckSeverity.WARN, evaluate)

        checks.append(consistent_with_m15)
    return checks
