"""Asset checks on each candle asset, evaluated per daily partition and shown in the UI."""

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg

from xau_pipeline.resources import CandleStoreResource
from xau_pipeline.store.gaps import NEVER_FETCHED, NOT_CLOSED, PROVIDER_EMPTY, detect_phase, find_gaps
from xau_pipeline.store.quality import invalid_ohlc, m15_mismatches, newest_stored
from xau_pipeline.symbols import Symbol
from xau_pipeline.timeframes import TIMEFRAMES_BY_NAME, Timeframe
from xau_pipeline.trading_calendar import calendar

MISSING_SHOWN = 50
M15 = TIMEFRAMES_BY_NAME["M15"]
# A bar closed less than this long ago may simply not have been fetched yet (schedules run
# one minute after the close).
FRESH_GRACE = timedelta(minutes=10)

Evaluation = tuple[bool, dict[str, object]]


def _decimal_env(name: str, default: str) -> Decimal:
    return Decimal(os.environ.get(name) or default)


def _utc(t: datetime | None) -> str:
    return "-" if t is None else f"{t:%Y-%m-%d %H:%M} UTC"


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
            dg.AssetCheckEvaluation(
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
            "partitions_failing": ", ".join(failing[:MISSING_SHOWN]) or "none",
        },
    )


def build_candle_checks(
    symbol: Symbol, timeframe: Timeframe, asset: dg.AssetsDefinition, partitions_def: dg.TimeWindowPartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """no_gaps, ohlc_valid and fresh on every candle asset; consistent_with_m15 above M15."""
    policy = calendar(symbol.calendar)
    tf_name, bar = timeframe.name, timeframe.bar

    def window(key: str) -> tuple[datetime, datetime]:
        time_window = partitions_def.time_window_for_partition_key(key)
        return time_window.start, time_window.end

    @dg.asset_check(asset=asset, name="no_gaps", partitions_def=partitions_def, blocking=False)
    def no_gaps(context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource) -> dg.AssetCheckResult:
        """Every bar the trading calendar expects is stored; missing ones are listed and explained."""
        now = datetime.now(UTC)
        with candle_store.store().engine.connect() as connection:
            phase = detect_phase(connection, symbol.name, tf_name, bar)

            def evaluate(key: str) -> Evaluation:
                start, end = window(key)
                report = find_gaps(connection, symbol.name, tf_name, bar, policy, start, min(end, now), now, phase)
                closed_gaps = report.missing - report.count(NOT_CLOSED)
                shown = "\n".join(f"- {_utc(g.slot)}: {g.reason}" for g in report.gaps[:MISSING_SHOWN])
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
                    "missing_bars": dg.MetadataValue.md(shown or "none"),
                }

            return _per_partition(context, asset.key, "no_gaps", dg.AssetCheckSeverity.WARN, evaluate)

    @dg.asset_check(asset=asset, name="ohlc_valid", partitions_def=partitions_def, blocking=False)
    def ohlc_valid(context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource) -> dg.AssetCheckResult:
        """low <= min(open, close) <= max(open, close) <= high, prices > 0, no jump from the previous close beyond XAU_MAX_JUMP."""
        max_jump = _decimal_env("XAU_MAX_JUMP", "0.05")
        with candle_store.store().engine.connect() as connection:

            def evaluate(key: str) -> Evaluation:
                rows = invalid_ohlc(connection, symbol.name, tf_name, *window(key), max_jump)
                table = "\n".join(
                    f"| {r.timestamp:%Y-%m-%d %H:%M} | {r.open} | {r.high} | {r.low} | {r.close} | {r.prev_close} |"
                    for r in rows[:MISSING_SHOWN]
                )
                header = "| open time (UTC) | open | high | low | close | previous close |\n|---|---|---|---|---|---|\n"
                return not rows, {
                    "invalid_bars": len(rows),
                    "max_jump": float(max_jump),
                    "invalid": dg.MetadataValue.md(header + table if rows else "none"),
                }

            return _per_partition(context, asset.key, "ohlc_valid", dg.AssetCheckSeverity.ERROR, evaluate)

    @dg.asset_check(asset=asset, name="fresh", partitions_def=partitions_def, blocking=False)
    def fresh(context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource) -> dg.AssetCheckResult:
        """On the newest partition: the newest closed bar the calendar expects is stored; shows its age."""
        now = datetime.now(UTC)
        newest_key = partitions_def.get_last_partition_key()
        with candle_store.store().engine.connect() as connection:
            phase = detect_phase(connection, symbol.name, tf_name, bar)

            def evaluate(key: str) -> Evaluation | None:
                if key != newest_key:
                    return None
                lookback = now - timedelta(days=10)
                closed = [s for s in policy.expected_slots(lookback, now, bar, phase) if s + bar <= now - FRESH_GRACE]
                report = (
                    find_gaps(connection, symbol.name, tf_name, bar, policy, closed[-1], closed[-1] + bar, now, phase)
                    if closed
                    else None
                )
                newest = newest_stored(connection, symbol.name, tf_name)
                age = (now - (newest + bar)) if newest else None
                return (report is None or report.missing == 0), {
                    "newest_expected_closed_bar": _utc(closed[-1] if closed else None),
                    "newest_stored_bar": _utc(newest),
                    "age_minutes": round(age.total_seconds() / 60, 1) if age is not None else -1,
                }

            return _per_partition(context, asset.key, "fresh", dg.AssetCheckSeverity.WARN, evaluate)

    checks = [no_gaps, ohlc_valid, fresh]
    if timeframe.bar > M15.bar:

        @dg.asset_check(asset=asset, name="consistent_with_m15", partitions_def=partitions_def, blocking=False)
        def consistent_with_m15(
            context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource
        ) -> dg.AssetCheckResult:
            """Each bar agrees with the M15 bars it covers (open, high, low, close) within XAU_M15_TOLERANCE."""
            tolerance = _decimal_env("XAU_M15_TOLERANCE", "0.0005")
            with candle_store.store().engine.connect() as connection:
                phase = detect_phase(connection, symbol.name, tf_name, bar)

                def m15_expected(slot: datetime) -> int:
                    return policy.count_expected(slot, slot + bar, M15.bar)

                def evaluate(key: str) -> Evaluation:
                    mismatches, compared, incomplete = m15_mismatches(
                        connection, symbol.name, tf_name, bar, phase, *window(key), tolerance, m15_expected
                    )
                    lines = "\n".join(
                        f"| {m.timestamp:%Y-%m-%d %H:%M} | {', '.join(m.fields)} | {' / '.join(map(str, m.bar))} | {' / '.join(map(str, m.m15))} |"
                        for m in mismatches[:MISSING_SHOWN]
                    )
                    header = "| open time (UTC) | differs in | bar O/H/L/C | from M15 O/H/L/C |\n|---|---|---|---|\n"
                    return not mismatches, {
                        "bars_compared": compared,
                        "bars_with_incomplete_m15": incomplete,
                        "mismatches": len(mismatches),
                        "tolerance": float(tolerance),
                        "mismatched_bars": dg.MetadataValue.md(header + lines if mismatches else "none"),
                    }

                return _per_partition(context, asset.key, "consistent_with_m15", dg.AssetCheckSeverity.WARN, evaluate)

        checks.append(consistent_with_m15)
    return checks
