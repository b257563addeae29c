"""What a candle step's checks report: each check's verdicts per day, as one ranged result or as per-day evaluations that target each day's materialization."""

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from xau_pipeline.dagster_internals import day_evaluation, latest_materializations, log_day_evaluations
from xau_pipeline.defs.candles.checks import (
    SEVERITY,
    UNPARTITIONED,
    WHY_NOT_JUDGED,
    CandleChecks,
    Verdict,
)
from xau_pipeline.defs.candles.markdown_tables import markdown_table

Verdicts = dict[str, list[tuple[str, Verdict]]]


def judge_run(context: dg.AssetExecutionContext, checks: CandleChecks, keys: Sequence[str]) -> Verdicts:
    """Each selected check's verdict on each of the run's days `keys` (a day it does not judge is left out)."""
    names = sorted(check_key.name for check_key in context.selected_asset_check_keys)
    return {
        name: [(day, verdict) for day in keys if (verdict := checks.judge(name, day)) is not None] for name in names
    }


def by_day(verdicts: Verdicts) -> dict[str, list[tuple[str, Verdict]]] | None:
    """The run's verdicts per day: [(check, verdict)]; None when the run judged no check."""
    if not verdicts:
        return None
    days: dict[str, list[tuple[str, Verdict]]] = {}
    for name, judged in verdicts.items():
        for day, verdict in judged:
            days.setdefault(day, []).append((name, verdict))
    return days


def day_verdicts(
    days: dict[str, list[tuple[str, Verdict]]] | None, day: str, names: Sequence[str] = ()
) -> dict[str, Any]:
    """`checks`: one day's verdicts of the run's checks (`by_day`), and why any of `names` judged nothing,
    for that day's materialization in a ranged run."""
    if days is None:
        return {}
    rows = [(name, _verdict_word(name, verdict), _why(verdict)) for name, verdict in days.get(day, [])]
    judged = {name for name, _ in days.get(day, [])}
    rows += [(name, "not judged", WHY_NOT_JUDGED[name]) for name in names if name not in judged]
    return {
        "checks": dg.MetadataValue.md(markdown_table(("check", "verdict", "why"), rows, empty="none judged this day"))
    }


def _verdict_word(name: str, verdict: Verdict) -> str:
    if verdict.passed:
        return "passed"
    return f"{'could not be judged' if verdict.unjudged else 'failed'} ({SEVERITY[name].value})"


def _why(verdict: Verdict) -> str:
    """The verdict's description, else its plain figures (`bars_compared 23, mismatches 0`)."""
    if verdict.description:
        return verdict.description.replace("|", "/")
    return ", ".join(f"{k} {v}" for k, v in verdict.metadata.items() if isinstance(v, (int, float, str)))


def range_result(name: str, judged: list[tuple[str, Verdict]], keys: Sequence[str]) -> dg.AssetCheckResult:
    """A ranged run's one typed result for check `name`: failed if any judged day failed. It stands for the
    range, not a day (the check page's latest execution); each judged day's own evaluation is logged
    for its partition (`day_evaluations`), and its verdicts are in its materialization's `checks`."""
    failed = [(day, verdict) for day, verdict in judged if not verdict.passed]
    warned = sum(verdict.unjudged for _, verdict in failed)
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failed,
        severity=SEVERITY[name],
        description=(
            f"the run's range {keys[0]} .. {keys[-1]}, not one day: {len(judged)} day(s) judged, "
            f"{len(failed) - warned} failed"
            + (f", {warned} could not be judged" if warned else "")
            + "; each day's verdicts are in its materialization's `checks`"
        ),
        metadata={
            # A range in which one day was judged (the others closed or empty) shows that day's figures too.
            **(judged[0][1].metadata if len(judged) == 1 else {}),
            "range": f"{keys[0]} .. {keys[-1]}",
            "days_judged": len(judged),
            "days_failed": len(failed) - warned,
            "days_that_could_not_be_judged": warned,
            "days_not_judged": len(keys) - len(judged),
            "failed_days": dg.MetadataValue.md(
                markdown_table(("day", "why"), [(day, verdict.description or "") for day, verdict in failed])
            ),
        },
    )


def day_evaluations(
    context: dg.AssetExecutionContext, key: dg.AssetKey, verdicts: Verdicts, materialized: Sequence[str]
) -> None:
    """Log each judged day's evaluation of each partitioned check, targeting that day's latest stored
    materialization, so the check's Partitions tab counts it as current (passed or failed); all of
    them as one batch (`log_day_evaluations`), stored in one transaction on the project's storage.

    Called after the run's materializations are stored (Dagster writes a MaterializeResult's
    partitions as one batch before the step's generator resumes); `materialized` are the days this
    run materialized, whose targets must be this run's own.
    """
    judged_days = sorted({day for name, judged in verdicts.items() if name not in UNPARTITIONED for day, _ in judged})
    targets = latest_materializations(context.instance, key, judged_days)
    run_id = context.run.run_id
    unstored = [day for day in materialized if day in targets and targets[day].run_id != run_id]
    unstored += [day for day in materialized if day in judged_days and day not in targets]
    if unstored:
        context.log.warning(
            f"the materialization of {len(unstored)} day(s) ({', '.join(sorted(unstored)[:5])}) was not stored "
            "before its check evaluations: they target the day's earlier materialization, if any"
        )
    log_day_evaluations(
        context,
        [
            day_evaluation(
                key,
                name,
                day,
                verdict.passed,
                SEVERITY[name],
                targets.get(day),
                metadata=verdict.metadata,
                description=verdict.description,
            )
            for name, judged in verdicts.items()
            if name not in UNPARTITIONED
            for day, verdict in judged
        ],
    )


def check_results(
    context: dg.AssetExecutionContext, key: dg.AssetKey, verdicts: Verdicts, materialized: Sequence[str] = ()
) -> Iterator[dg.AssetCheckResult]:
    """The run's verdicts, as Dagster 1.13 can record them.

    One partition: a typed AssetCheckResult, which Dagster ties to that partition's materialization.
    A range: Dagster 1.13 gives a typed result no partition in a ranged step, so each judged day gets
    an evaluation logged for its partition, targeting that day's stored materialization
    (`day_evaluations`), and a range of several days one typed result for the range, yielded last
    (the check page's latest execution). Either way the check's Partitions tab shows every judged day
    passed or failed. See docs/architecture.md, "What a partition shows".
    """
    keys = context.partition_keys
    if not context.has_partition_key:
        day_evaluations(context, key, verdicts, materialized)
    summaries = []
    for name, judged in verdicts.items():
        severity = SEVERITY[name]
        if context.has_partition_key or name in UNPARTITIONED:  # fresh: judged on today's partition alone
            for _, verdict in judged:
                yield dg.AssetCheckResult(
                    check_name=name,
                    passed=verdict.passed,
                    severity=severity,
                    metadata=verdict.metadata,
                    description=verdict.description,
                )
        elif judged and len(keys) > 1:
            yield range_result(name, judged, keys)
        failing = [day for day, verdict in judged if not verdict.passed and not verdict.unjudged]
        warned = sum(verdict.unjudged for _, verdict in judged)
        not_judged = len(keys) - len(judged)
        summaries.append(
            f"{name} {sum(verdict.passed for _, verdict in judged)} day(s) passed, {len(failing)} failed"
            + (f" ({', '.join(failing[:10])}{' …' if len(failing) > 10 else ''})" if failing else "")
            + (f", {warned} warned they could not be judged" if warned else "")
            + (f", {not_judged} not judged" if not_judged else "")
        )
    if summaries:
        # One line for all checks: each log line is an event Dagster writes on its own.
        context.log.info("checks: " + "; ".join(summaries))
