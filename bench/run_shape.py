"""The Dagster run shape on the user's path: the real candle job against a do-nothing twin (bench/twin.py).

Each run is one run over a partition range with all four assets and their checks, the way a UI
backfill with single-run policies launches it: the job's own executor (the one the Definitions
give it), a PostgreSQL-backed Dagster instance on a temporary database, events batched as `make
run` sets them (settings.DAGSTER_ENVIRONMENT).
The run worker is this process (`dg.execute_job`); the daemon's launch of a run worker process
(a few seconds, the same for both jobs) is not included.

Timed in the same process, in this order: the real job's one-year backfill (fetching from the
local stand-in, run as its own process like the real API, without rate limits), the twins over
the same year, then no-op reruns of the year's last 5 days, the real job and the new twin
alternated (--repeat times, 5 by default; the median of each is shown). Prints each time and the
ratio real / twin.

With --decade: M15 alone over one year (the last) and over ten years (2016-2025), real and new
twin, each a single ranged run: wall time, events written per partition, and growth from 1 to 10.

With --free-plan: the real job's one year of all four assets at the free plan's limits (8 credits a
minute, the stand-in and the credit budget both), against the credit floor.

With --storage postgres, Dagster's storage is dagster-postgres's own (a new connection per stored
event) instead of the pooled one dagster.yaml configures; --free-plan --storage both runs the year
with each, in a process of its own.

With --per-partition-twin, the year is run --year-repeat times (3 by default; the candle tables are
emptied between rounds), each round the real job, then the new twin logging the per-day evaluations
the real job logs (`twin new+pp`, evaluations without metadata), then the replay twin (`twin
replay`, bench/twin.py), which records what the real year recorded, payloads and log lines
included, and does no work; each row shows the median and every run. The cost of one evaluation is
printed (new+pp's extra time over its extra events). Then the project's own work of the same year
is timed without Dagster, as often (`ingest` of each series into a fresh candle database, then every
check's verdict on every day; the median): each twin plus that is what the real run would take if
its parts added up. The trading calendar, built by the real run earlier in the process, is not
built again.

Usage: python bench/run_shape.py [--storage pooled|postgres] [--year 2025] [--days-only] [--twin new|old|both] [--per-partition-twin [--year-repeat 3]]
       python bench/run_shape.py --decade
       python bench/run_shape.py --free-plan [--storage both]
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dagster as dg
import sqlalchemy as sa
import yaml
from twin import capture as twin_capture
from twin import read_replay, reconstructable

from xau_pipeline.clock import utc_now
from xau_pipeline.defs.candles.checks import CandleChecks, check_names
from xau_pipeline.defs.candles.gc_freeze import long_lived_heap_frozen
from xau_pipeline.defs.candles.partitions import daily_partitions, partition_range_tags
from xau_pipeline.ingest import ingest
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.settings import apply_dagster_environment
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.tables import metadata as candle_tables
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline_dev.testing import temporary_database

apply_dagster_environment()  # as `make run` does

FREE_PER_MINUTE = 8
COUNT_CALLS = "SELECT count(*) FROM api_calls"
SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
STORAGES = ("pooled", "postgres")


def instance_yaml(storage: str = "pooled") -> str:
    """The instance `make run` configures (dagster.yaml's storage and logging), or with `postgres`
    dagster-postgres's own storage (an event log connection per event) in place of the pooled one."""
    project = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    config = {key: project[key] for key in ("telemetry", "python_logs", "storage")}
    if storage == "postgres":
        config["storage"] = {"postgres": config["storage"]["custom"]["config"]}
    return yaml.safe_dump(config)


def timed_run(
    stack: ExitStack, job, first: str, last: str, storage: str = "pooled", capture: Path | None = None
) -> tuple[float, int, int]:
    """(wall seconds, events stored, steps) of one ranged run on a fresh PostgreSQL-backed instance
    (`storage`: see `instance_yaml`); with `capture`, what the run recorded is written there for the
    replay twin (untimed)."""
    url = stack.enter_context(temporary_database(SERVER, "xau_bench_dagster"))
    home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xau_bench_home_")))
    (home / "dagster.yaml").write_text(instance_yaml(storage))
    os.environ["XAU_DAGSTER_PG_URL"] = url
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        began = time.perf_counter()
        with dg.execute_job(job, instance=instance, tags=partition_range_tags(first, last)) as result:
            wall = time.perf_counter() - began
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            steps = len({e.step_key for e in result.all_events if e.step_key})
        events = len(instance.all_logs(result.run_id))
        if capture is not None:
            twin_capture(instance, result.run_id, capture)
    return wall, events, steps


@contextmanager
def stand_in_process(free_plan: bool = False, options: Sequence[str] | None = None) -> Iterator[str]:
    """The Twelve Data stand-in in its own process (as the real API is), without credit limits (or at the
    free plan's, 8 a minute; or with the command-line `options` given): its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limits = (
        ["--credits-per-minute", str(FREE_PER_MINUTE), "--credits-per-day", "800"] if free_plan else ["--no-limits"]
    )
    # CME hours: the feed the README's figures were measured on.
    chosen = list(options) if options is not None else [*limits, "--cme-hours"]
    command = [sys.executable, "-m", "xau_pipeline_dev.twelvedata_standin", *chosen, "--port", str(port)]
    env = {**os.environ, "TWELVE_DATA_API_KEY": "bench-key"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def pipeline_environment(stack: ExitStack, history_start: str, free_plan: bool = False) -> str:
    """A migrated candle database and the stand-in (no credit limits, or the free plan's) for the jobs,
    set in the environment the real job reads: the candle database's URL."""
    candles_url = stack.enter_context(temporary_database(SERVER, "xau_bench"))
    CandleStore(candles_url).migrate()
    stand_in_url = stack.enter_context(stand_in_process(free_plan))
    os.environ.update(
        XAU_DATABASE_URL=candles_url,
        TWELVE_DATA_BASE_URL=stand_in_url,
        TWELVE_DATA_API_KEY="bench-key",
        TWELVE_DATA_CREDITS_PER_MINUTE=str(FREE_PER_MINUTE) if free_plan else "100000",
        TWELVE_DATA_CREDITS_PER_DAY="800" if free_plan else "100000",
        XAU_HISTORY_START=history_start,
        XAU_SYMBOLS="XAU/USD",
    )
    return candles_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--days-only", action="store_true", help="only the 5-day runs (the real one fetches first)")
    parser.add_argument("--twin", choices=("old", "new", "both"), default="new")
    parser.add_argument(
        "--per-partition-twin", action="store_true", help="also the new twin logging an evaluation per check and day"
    )
    parser.add_argument("--decade", action="store_true", help="M15 over 1 and 10 years instead")
    parser.add_argument("--free-plan", action="store_true", help="the year at the free plan's limits instead")
    parser.add_argument(
        "--storage",
        choices=(*STORAGES, "both"),
        default="pooled",
        help="Dagster's storage: dagster.yaml's pooled one, dagster-postgres's own, or both (--free-plan)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="5-day runs of the real job and the new twin, alternated")
    parser.add_argument(
        "--year-repeat",
        type=int,
        default=3,
        help="with --per-partition-twin: rounds of the real year and its twins, alternated (medians shown)",
    )
    args = parser.parse_args()
    if args.decade:
        return decade()
    if args.free_plan:
        return free_plan(args.year, args.storage)
    if args.storage == "both":
        parser.error("--storage both goes with --free-plan")
    storage = args.storage
    first, last = f"{args.year}-01-01", f"{args.year}-12-31"
    five_first = (date.fromisoformat(last) - timedelta(days=4)).isoformat()
    rows: list[tuple[str, str, float, int, int]] = []

    def measure(label: str, span: str, job, first_key: str, last_key: str, capture: Path | None = None) -> None:
        wall, events, steps = timed_run(stack, job, first_key, last_key, storage, capture)
        print(f"[run_shape] {label}, {span}: {wall:.1f} s, {events} events, {steps} steps", file=sys.stderr, flush=True)
        rows.append((label, span, wall, events, steps))

    stack = ExitStack()
    with stack:
        candles_url = pipeline_environment(stack, first)
        real = reconstructable("real_job")
        # Untimed: the first run in a process pays Dagster's one-time set-up; neither job should.
        timed_run(stack, reconstructable("twin_job", "new", first), last, last, storage)
        if args.days_only:
            prefill = timed_run(stack, real, five_first, last, storage)
            print(f"(real job fetched the 5 days first: {prefill[0]:.1f} s)")
        else:
            replay = None
            if args.per_partition_twin:
                replay = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xau_bench_replay_"))) / "year"
                os.environ["XAU_BENCH_REPLAY"] = str(replay)
            # The year alternated with the twins that record the same evaluations (the real one on emptied
            # candle tables each round): this machine's load moves single runs by a quarter.
            for round_ in range(max(1, args.year_repeat)):
                if round_:
                    empty_candle_tables(candles_url)
                measure("real", "1 year", real, first, last, replay if round_ == 0 else None)
                if args.per_partition_twin:
                    measure("twin new+pp", "1 year", reconstructable("twin_job", "new", first, True), first, last)
                    if round_ == 0:
                        read_replay(str(replay))  # untimed: the replay twin finds it read
                    measure("twin replay", "1 year", reconstructable("twin_job", "replay", first), first, last)
        with sa.create_engine(candles_url).connect() as connection:
            stored = connection.execute(sa.text("SELECT count(*) FROM candles")).scalar()
        twins = ("old", "new") if args.twin == "both" else (args.twin,)
        for shape in twins:
            job = reconstructable("twin_job", shape, first)
            if not args.days_only:
                measure(f"twin {shape}", "1 year", job, first, last)
            if shape == "old":
                measure(f"twin {shape}", "5 days no-op", job, five_first, last)
        # The short run is the noisiest: real and new twin alternated, the median of each.
        fives: dict[str, list[tuple[float, int, int]]] = {"real": [], "twin new": []}
        for _ in range(max(1, args.repeat)):
            for label, job in (("real", real), ("twin new", reconstructable("twin_job", "new", first))):
                fives[label].append(timed_run(stack, job, five_first, last, storage))
        for label, results in fives.items():
            rows.extend((label, "5 days no-op", wall, events, steps) for wall, events, steps in results)
        if "new" in twins and args.per_partition_twin:
            job = reconstructable("twin_job", "new", first, True)
            measure("twin new+pp", "5 days no-op", job, five_first, last)
        own = None
        if args.per_partition_twin and not args.days_only:
            owns = sorted((own_work(stack, first, last) for _ in range(max(1, args.year_repeat))), key=sum)
            own = owns[len(owns) // 2]

    print(f"\nRun shape, all four XAU/USD assets with their checks, {args.year}; {stored} candles stored")
    if args.per_partition_twin:
        print("twin new+pp: the new twin logging one check evaluation per check and partition")
        print("twin replay: the new twin recording what the real year recorded (log lines, metadata), no work")
    walls: dict[tuple[str, str], list[float]] = {}
    for job, span, wall, _, _ in rows:
        walls.setdefault((job, span), []).append(wall)
    # One row per job and range: the median of its runs (each run's time in `runs`).
    rows = [
        (job, span, statistics.median(walls[job, span]), events, steps)
        for index, (job, span, _, events, steps) in enumerate(rows)
        if (job, span) not in {(j, s) for j, s, _, _, _ in rows[:index]}
    ]
    print(f"{'job':<14}{'range':<15}{'wall s':>8}{'events':>8}{'steps':>7}{'real/this':>11}  runs (s)")
    real_times = {span: wall for job, span, wall, _, _ in rows if job == "real"}
    for job, span, wall, events, steps in rows:
        ratio = f"{real_times[span] / wall:.2f}x" if job != "real" and span in real_times else ""
        runs = ", ".join(f"{w:.2f}" if span == "5 days no-op" else f"{w:.1f}" for w in sorted(walls[job, span]))
        print(f"{job:<14}{span:<15}{wall:>8.1f}{events:>8}{steps:>7}{ratio:>11}  {runs}")
    per_day = {span: (wall, events) for job, span, wall, events, _ in rows if job == "twin new+pp"}
    plain = {span: (wall, events) for job, span, wall, events, _ in rows if job == "twin new"}
    for span in per_day:
        if span in plain and per_day[span][1] > plain[span][1]:
            extra = per_day[span][1] - plain[span][1]
            cost = (per_day[span][0] - plain[span][0]) * 1000 / extra
            print(f"per check evaluation ({span}, twin new+pp against twin new): {cost:.1f} ms ({extra} more events)")
    if own is not None:
        twin_wall = per_day["1 year"][0]
        print(
            f"the project's own work of the year without Dagster (median): {sum(own):.1f} s ({own[0]:.1f} s fetching "
            f"and storing, {own[1]:.1f} s judging); twin + own work = {(twin_wall + sum(own)) / twin_wall:.2f}x twin "
            f"new+pp (real: {real_times['1 year'] / twin_wall:.2f}x)"
        )
        replayed = next(wall for job, span, wall, _, _ in rows if job == "twin replay" and span == "1 year")
        print(
            f"twin replay (the real run's own events and payloads, no work): {replayed:.1f} s; twin replay + own work "
            f"= {(replayed + sum(own)) / replayed:.2f}x twin replay (real: {real_times['1 year'] / replayed:.2f}x); "
            f"what the real run's payloads add to twin new+pp: {replayed - twin_wall:.1f} s"
        )
        for twin in ("twin new+pp", "twin replay"):
            # Each round's real run and twins ran back to back, under about the same load.
            rounds = sorted(r / t for r, t in zip(walls["real", "1 year"], walls[twin, "1 year"]))
            print(
                f"real / {twin}, round by round: {', '.join(f'{x:.2f}' for x in rounds)}; "
                f"median {statistics.median(rounds):.2f}x (goal <= 1.5x)"
            )


def empty_candle_tables(candles_url: str) -> None:
    """Every table the real job writes emptied, so its next year fetches and stores it all again."""
    engine = sa.create_engine(candles_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {', '.join(table.name for table in candle_tables.sorted_tables)}"))
    engine.dispose()


def own_work(stack: ExitStack, first: str, last: str) -> tuple[float, float]:
    """(seconds fetching and storing, seconds judging) the year `first`..`last` of all four series
    without Dagster, from the stand-in the real job used, into a fresh candle database."""
    store = CandleStore(stack.enter_context(temporary_database(SERVER, "xau_bench_own")))
    store.migrate()
    client = TwelveDataClient(os.environ["TWELVE_DATA_API_KEY"], os.environ["TWELVE_DATA_BASE_URL"])
    symbol, partitions = Symbol("XAU/USD"), daily_partitions(first)
    keys = partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    start, end = (
        partitions.time_window_for_partition_key(first).start,
        partitions.time_window_for_partition_key(last).end,
    )
    # As in the candle step: the process's long-lived heap (the runs before) out of the collections.
    with long_lived_heap_frozen():
        began = time.perf_counter()
        for timeframe in TIMEFRAMES:
            report = ingest(client, store, symbol, timeframe, start, end)
            assert report.complete, report.error
        fetched = time.perf_counter()
        for timeframe in TIMEFRAMES:
            checks = CandleChecks(store, symbol, timeframe, partitions, utc_now(), keys=keys)
            for name in check_names(timeframe):
                for key in keys:
                    checks.judge(name, key)
        judged = time.perf_counter()
    client.close()
    store.engine.dispose()
    return fetched - began, judged - fetched


def free_plan(year: int, storage: str) -> None:
    """The real job's one-year backfill of all four assets at the free plan's limits (8 credits a minute,
    stand-in and credit budget), against the credit floor: the least time 8 a minute allows for its calls.
    With `both`, once per Dagster storage, each in a process of its own (the job reads its resources'
    environment once per process)."""
    if storage == "both":
        for each in STORAGES:
            command = [sys.executable, __file__, "--free-plan", "--year", str(year), "--storage", each]
            subprocess.run(command, check=True)
        return
    first, last = f"{year}-01-01", f"{year}-12-31"
    with ExitStack() as stack:
        candles_url = pipeline_environment(stack, first, free_plan=True)
        wall, events, steps = timed_run(stack, reconstructable("real_job"), first, last, storage)
        with sa.create_engine(candles_url).connect() as connection:
            calls = connection.execute(sa.text(COUNT_CALLS)).scalar() or 0
    floor = (math.ceil(calls / FREE_PER_MINUTE) - 1) * 60
    print(f"\nFree plan ({FREE_PER_MINUTE} credits a minute), all four XAU/USD assets, {year}, one ranged run")
    print(f"Dagster storage: {storage}; wall {wall:.1f} s, {calls} calls, {events} events, {steps} steps")
    print(
        f"credit floor (the first {FREE_PER_MINUTE} calls at once, each further {FREE_PER_MINUTE} a minute later): {floor} s"
    )
    if floor:
        print(f"wall / credit floor = {wall / floor:.2f}x (goal <= 1.1x)")


def decade() -> None:
    """M15 over one year and over ten, real and twin: how the cost per partition grows."""
    first, last = "2016-01-01", "2025-12-31"
    rows = []
    with ExitStack() as stack:
        pipeline_environment(stack, first)
        for label, job in (
            ("real M15", reconstructable("real_job", "candles_m15")),
            ("twin M15", reconstructable("twin_job", "new", first, False, "candles_m15")),
        ):
            for span, start in (("1 year", "2025-01-01"), ("10 years", first)):
                wall, events, _ = timed_run(stack, job, start, last)
                days = (date.fromisoformat(last) - date.fromisoformat(start)).days + 1
                print(f"[run_shape] {label}, {span}: {wall:.1f} s, {events} events", file=sys.stderr, flush=True)
                rows.append((label, span, wall, events, days))
    print("\nM15 alone, one ranged run each (the real one fetches: 1 year first, then the other 9)")
    print(f"{'job':<10}{'range':<10}{'wall s':>8}{'ms/partition':>14}{'events':>8}{'events/partition':>18}")
    for label, span, wall, events, days in rows:
        print(f"{label:<10}{span:<10}{wall:>8.1f}{wall * 1000 / days:>14.1f}{events:>8}{events / days:>18.2f}")
    for label in ("real M15", "twin M15"):
        one, ten = (wall for job, _, wall, _, _ in rows if job == label)
        print(f"{label}: 10 years / 1 year = {ten / one:.1f}x")


if __name__ == "__main__":
    main()
