"""Dagster's storage over a simulated year of live operation, with and without the maintenance job.

A year of real live runs is about 46,000 runs for one symbol, too slow to run here, so the year is
replayed: one real live-shaped run per timeframe (the candle asset of one day, its checks, against
the in-process Twelve Data stand-in, on an instance of dagster.yaml's storage) is recorded, and its
rows (`runs`, `run_tags`, `event_logs`, `asset_event_tags`, `asset_check_executions`) are copied,
with new run ids, that day's partition key and shifted timestamps, straight into a fresh Dagster
database once per run the schedules would start over a year (one run per closed bar whose bar
overlaps a session of the symbol's calendar, `xau_pipeline.defs.automation.schedules.tick_request` on the UTC
grid). The payloads keep their recorded timestamps; everything maintenance reads is in columns.

After each replayed day the maintenance pass runs as the daily job does (`prune` with the cutoff
the retention age gives on that simulated day, then VACUUM), from `--first-maintenance-day` on (by
default the first day anything is past the age: the job's schedule is on from the start). Until
the first cutoff nothing is old enough, so the first `--retention-days` days also give the growth
without maintenance (per live day; a year without maintenance is that times the year's live days:
nothing is ever deleted). What stays of each day past the age is then measured as row data, and
the table sizes (`pg_total_relation_size`: with indexes and free space) month by month.

50 symbols: a live run then carries the assets of all 50 symbols (one run per bar for every symbol:
xau_pipeline.defs.automation.schedules); it is modelled by copying the recorded run's per-asset rows (those with a
step or an asset key) 50 times under 50 asset keys. Only a few days are replayed (each is ~50x
one symbol's), and the year is extrapolated from the per-day figures with and without maintenance.
The 50 symbols' year with maintenance is estimated as: a retention age of full days (5 of 7 live)
plus the kept row data of each live day times one symbol's measured ratio of on-disk growth to kept
row data. Ticks are not replayed: `retention:` in dagster.yaml bounds them by days, whatever the
history. The replay of one symbol's year takes about 7 minutes here (2 shared cores), the whole
script about 11; `--days 120` for a quicker look.

Usage: python bench/storage_growth.py [--days 365] [--retention-days 14] [--first-maintenance-day N]
                                      [--symbols-50-days 4] [--symbols-50-retention-days 1]
"""

import argparse
import os
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
import yaml

from xau_pipeline.defs.automation.schedules import tick_request
from xau_pipeline.defs.candles.asset_factory import build_candle_asset
from xau_pipeline.defs.candles.partitions import daily_partitions
from xau_pipeline.defs.maintenance.dagster_tables import PRUNED_TABLES, prune, table_figures
from xau_pipeline.defs.resources import CandleStoreResource, TwelveDataResource
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.settings import apply_dagster_environment
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline_dev.testing import temporary_database

apply_dagster_environment()  # as `make run` does

SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_KEY = "bench-storage-key"
SYMBOL = Symbol("XAU/USD")
RECORDED_DAY = "2025-03-12"  # a Wednesday
PARTITIONS = daily_partitions("2024-01-01")
MB = 1024 * 1024
REPLAYED = ("runs", "run_tags", "event_logs", "asset_event_tags", "asset_check_executions")


def dagster_storage(url: str) -> dict[str, Any]:
    storage = yaml.safe_load(Path(ROOT, "dagster.yaml").read_text())["storage"]
    storage["custom"]["config"] = {"postgres_url": url}
    return storage


def record(dagster_url: str, candles_url: str) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[dict]]:
    """One live-shaped run per timeframe (the second of two, as a live run finds the day stored),
    and its rows, by timeframe and table."""
    from xau_pipeline_dev.twelvedata_standin import StandIn, StandInConfig

    CandleStore(candles_url).migrate()
    recorded: dict[str, dict[str, list[dict[str, Any]]]] = {}
    overrides = {"storage": dagster_storage(dagster_url), "telemetry": {"enabled": False}}
    with (
        tempfile.TemporaryDirectory() as home,
        dg.instance_for_test(overrides=overrides, temp_dir=home) as instance,
        StandIn(StandInConfig(api_key=API_KEY, credits_per_minute=None, credits_per_day=None)) as stand_in,
    ):
        resources = {
            "twelvedata": TwelveDataResource(
                api_key=API_KEY, base_url=stand_in.url, credits_per_minute=10_000, credits_per_day=100_000
            ),
            "candle_store": CandleStoreResource(database_url=candles_url),
        }
        engine = sa.create_engine(dagster_url, poolclass=sa.pool.NullPool)
        for timeframe in TIMEFRAMES:
            asset = build_candle_asset(SYMBOL, timeframe, PARTITIONS)
            for _ in range(2):
                result = dg.materialize(
                    [asset],
                    instance=instance,
                    resources=resources,
                    partition_key=RECORDED_DAY,
                    tags={"xau/bar_open": f"{RECORDED_DAY}T12:00:00+00:00"},
                )
                assert result.success
            with engine.connect() as connection:
                recorded[timeframe.name] = {
                    table: [
                        dict(row._mapping)
                        for row in connection.execute(
                            sa.text(f"SELECT * FROM {table} WHERE run_id = :run ORDER BY id"), {"run": result.run_id}
                        )
                    ]
                    for table in ("runs", "run_tags", "event_logs", "asset_check_executions")
                }
                ids = [row["id"] for row in recorded[timeframe.name]["event_logs"]]
                recorded[timeframe.name]["asset_event_tags"] = [
                    dict(row._mapping)
                    for row in connection.execute(
                        sa.text("SELECT * FROM asset_event_tags WHERE event_id = ANY(:ids) ORDER BY id"), {"ids": ids}
                    )
                ]
        with engine.connect() as connection:
            # The job and plan snapshots the runs name (a foreign key), copied once into the replay.
            snapshots = [dict(row._mapping) for row in connection.execute(sa.text("SELECT * FROM snapshots"))]
        engine.dispose()
    return recorded, snapshots


def widen(recorded: dict[str, list[dict[str, Any]]], symbols: int) -> dict[str, list[dict[str, Any]]]:
    """The run as one carrying `symbols` symbols' assets: its per-asset rows copied under other keys."""
    if symbols == 1:
        return recorded
    wide = dict(recorded)
    events = []
    copies_of: dict[int, list[int]] = defaultdict(list)
    next_id = -1
    for row in recorded["event_logs"]:
        if row["step_key"] is None and row["asset_key"] is None:
            events.append(row)
            continue
        for n in range(symbols):
            copy = _renamed(row, n)
            if n:
                copy["id"] = next_id
                copies_of[row["id"]].append(next_id)
                next_id -= 1
            events.append(copy)
    wide["event_logs"] = events
    for table in ("asset_check_executions", "asset_event_tags"):
        rows = []
        for row in recorded[table]:
            for n in range(symbols):
                copy = _renamed(row, n)
                for column in ("evaluation_event_storage_id", "materialization_event_storage_id", "event_id"):
                    if n and copy.get(column) in copies_of:
                        copy[column] = copies_of[copy[column]][n - 1]
                rows.append(copy)
        wide[table] = rows
    return wide


def _renamed(row: dict[str, Any], n: int) -> dict[str, Any]:
    if not n:
        return dict(row)
    return {k: v.replace("xauusd", f"s{n:02d}usd") if isinstance(v, str) else v for k, v in row.items()}


def live_runs(day: date) -> list[tuple[str, datetime]]:
    """(timeframe, bar close) of each run the schedules start for bars closing on `day` (UTC grid)."""
    runs = []
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    for timeframe in TIMEFRAMES:
        close = start + timeframe.bar
        while close <= start + timedelta(days=1):
            decision = tick_request(SYMBOL, timeframe, close + timedelta(minutes=1), PARTITIONS)
            if isinstance(decision, dg.RunRequest):
                runs.append((timeframe.name, close))
            close += timeframe.bar
    return runs


class Replayer:
    """Copies of the recorded runs into a Dagster database, a day at a time."""

    def __init__(self, url: str, recorded: dict[str, dict[str, list[dict[str, Any]]]], snapshots: list[dict]) -> None:
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.recorded = recorded
        meta = sa.MetaData()
        self.tables = {name: sa.Table(name, meta, autoload_with=self.engine) for name in (*REPLAYED, "snapshots")}
        with self.engine.begin() as connection:
            connection.execute(
                self.tables["snapshots"].insert(), [{k: v for k, v in r.items() if k != "id"} for r in snapshots]
            )
        self.rows = 0

    def replay_day(self, day: date) -> int:
        runs = live_runs(day)
        if not runs:
            return 0
        batch: dict[str, list[dict[str, Any]]] = defaultdict(list)
        event_keys: list[tuple[int, int]] = []  # (run index, recorded id) per event row
        plans = []
        for index, (timeframe, close) in enumerate(runs):
            source = self.recorded[timeframe]
            run_id = str(uuid.uuid4())
            old_run = source["runs"][0]["run_id"]
            finished = close + timedelta(minutes=1, seconds=20)
            shift = finished - source["runs"][0]["update_timestamp"].replace(tzinfo=UTC)

            def moved(row: dict[str, Any], run_id: str = run_id, old_run: str = old_run, shift=shift) -> dict:
                copy = {}
                for key, value in row.items():
                    if key == "id":
                        continue
                    if isinstance(value, str):
                        value = value.replace(old_run, run_id).replace(RECORDED_DAY, day.isoformat())
                    elif isinstance(value, datetime):
                        value = value + shift
                    copy[key] = value
                return copy

            run = moved(source["runs"][0])
            run["start_time"], run["end_time"] = (finished - timedelta(seconds=20)).timestamp(), finished.timestamp()
            batch["runs"].append(run)
            batch["run_tags"] += [moved(r) for r in source["run_tags"]]
            for row in source["event_logs"]:
                batch["event_logs"].append(moved(row))
                event_keys.append((index, row["id"]))
            plans.append((source, moved))
        with self.engine.begin() as connection:
            connection.execute(self.tables["runs"].insert(), batch["runs"])
            connection.execute(self.tables["run_tags"].insert(), batch["run_tags"])
            ids = (
                connection.execute(
                    self.tables["event_logs"]
                    .insert()
                    .returning(self.tables["event_logs"].c.id, sort_by_parameter_order=True),
                    batch["event_logs"],
                )
                .scalars()
                .all()
            )
            new_id = dict(zip(event_keys, ids, strict=True))
            for index, (source, moved) in enumerate(plans):
                for table, columns in (
                    ("asset_check_executions", ("evaluation_event_storage_id", "materialization_event_storage_id")),
                    ("asset_event_tags", ("event_id",)),
                ):
                    for row in source[table]:
                        copy = moved(row)
                        for column in columns:
                            if copy.get(column) is not None:
                                copy[column] = new_id.get((index, copy[column]), copy[column])
                        batch[table].append(copy)
            for table in ("asset_check_executions", "asset_event_tags"):
                if batch[table]:
                    connection.execute(self.tables[table].insert(), batch[table])
        self.rows += sum(len(rows) for rows in batch.values())
        return len(runs)


def figures(url: str) -> dict[str, Any]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        tables = table_figures(connection)
    engine.dispose()
    return tables


def total(tables: dict[str, Any]) -> int:
    return sum(f.bytes for f in tables.values())


def print_tables(title: str, tables: dict[str, Any], live_days: int | None = None) -> None:
    print(f"\n{title}")
    print(f"  {'table':24} {'rows':>10} {'MB':>9}" + (f" {'rows/day':>9} {'KB/day':>8}" if live_days else ""))
    for table in PRUNED_TABLES:
        f = tables[table]
        per_day = f" {f.rows / live_days:9.0f} {f.bytes / live_days / 1024:8.0f}" if live_days else ""
        print(f"  {table:24} {f.rows:10,} {f.bytes / MB:9.2f}" + per_day)
    print(f"  {'total':24} {'':10} {total(tables) / MB:9.2f}")


# What stays of the runs past the age, by table (and event type): row data, without indexes.
KEPT_EVENTS = sa.text(
    "SELECT coalesce(dagster_event_type, '(log line)'), count(*), sum(pg_column_size(e.*)) FROM event_logs e "
    "WHERE e.run_id IN (SELECT run_id FROM runs WHERE end_time < :cutoff) GROUP BY 1 ORDER BY 3 DESC"
)
KEPT_ROWS = {
    "asset_check_executions": "SELECT count(*), sum(pg_column_size(c.*)) FROM asset_check_executions c "
    "WHERE c.run_id IN (SELECT run_id FROM runs WHERE end_time < :cutoff)",
    "runs": "SELECT count(*), sum(pg_column_size(r.*)) FROM runs r WHERE end_time < :cutoff",
    "run_tags": "SELECT count(*), sum(pg_column_size(t.*)) FROM run_tags t "
    "WHERE t.run_id IN (SELECT run_id FROM runs WHERE end_time < :cutoff)",
}


# Where a table's bytes are: its heap, its TOAST (long payloads) and its indexes.
LAYOUT = sa.text(
    "SELECT c.relname, pg_relation_size(c.oid), coalesce(pg_total_relation_size(c.reltoastrelid), 0), "
    "pg_indexes_size(c.oid) FROM pg_class c WHERE c.relname IN "
    "('event_logs', 'asset_check_executions', 'runs', 'run_tags', 'asset_event_tags') ORDER BY 2 DESC"
)


def kept(url: str, cutoff: datetime) -> list[tuple[str, int, int]]:
    """(what, rows, bytes of row data) of the runs finished before `cutoff`: what maintenance kept."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        params = {"cutoff": cutoff.timestamp()}
        rows = [("event_logs " + str(k), int(n), int(b or 0)) for k, n, b in connection.execute(KEPT_EVENTS, params)]
        for table, query in KEPT_ROWS.items():
            n, b = connection.execute(sa.text(query), params).one()
            rows.append((table, int(n), int(b or 0)))
    engine.dispose()
    return rows


def simulate(
    recorded: dict[str, dict[str, list[dict[str, Any]]]],
    snapshots: list[dict],
    symbols: int,
    days: int,
    retention_days: int,
    first_maintenance_day: int,
    first: date,
) -> dict[str, Any]:
    wide = {tf: widen(rows, symbols) for tf, rows in recorded.items()}
    result: dict[str, Any] = {"months": [], "maintenance_seconds": []}
    with temporary_database(SERVER, "xau_bench_storage_year") as url:
        with tempfile.TemporaryDirectory() as home:
            overrides = {"storage": dagster_storage(url), "telemetry": {"enabled": False}}
            with dg.instance_for_test(overrides=overrides, temp_dir=home):
                pass  # creates Dagster's tables
        replayer = Replayer(url, wide, snapshots)
        live_days = runs = 0
        cutoff = None
        live_before: list[date] = []
        began = time.perf_counter()
        for offset in range(days):
            day = first + timedelta(days=offset)
            count = replayer.replay_day(day)
            runs += count
            live_days += bool(count)
            if count:
                live_before.append(day)
            if offset + 1 == retention_days:
                result["unpruned"] = (figures(url), live_days, runs)
            if offset + 1 >= first_maintenance_day:
                cutoff = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1 - retention_days)
                report = prune(url, cutoff)
                result["maintenance_seconds"].append(report.seconds)
                if "first_report" not in result:
                    result["first_report"] = report
            tomorrow = day + timedelta(days=1)
            if tomorrow.day == 1 or offset + 1 == days:
                result["months"].append((day, total(figures(url))))
        result.update(replay_seconds=time.perf_counter() - began, runs=runs, live_days=live_days, rows=replayer.rows)
        result["final"] = figures(url)
        with replayer.engine.connect() as connection:
            result["layout"] = [tuple(row) for row in connection.execute(LAYOUT)]
        if cutoff is not None:
            pruned_days = sum(
                1 for d in live_before if datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1) <= cutoff
            )
            result["kept"] = (kept(url, cutoff), max(1, pruned_days))
        replayer.engine.dispose()
    return result


def report(label: str, result: dict[str, Any], retention_days: int, year_live_days: int) -> None:
    print(f"\n=== {label} ===")
    print(
        f"replayed {result['runs']:,} runs ({result['rows']:,} rows) over {result['live_days']} live days "
        f"in {result['replay_seconds']:.0f} s"
    )
    unpruned, live_days, _ = result["unpruned"]
    print_tables(
        f"after the first {retention_days} days, nothing old enough to prune (= without maintenance)",
        unpruned,
        live_days,
    )
    per_day = total(unpruned) / live_days
    print(
        f"  without maintenance: {per_day / MB:.2f} MB per live day -> {per_day * year_live_days / MB:,.0f} MB a year ({year_live_days} live days)"
    )
    first = result.get("first_report")
    if first:
        print_tables("first maintenance pass: before", first.before)
        print_tables("first maintenance pass: after", first.after)
        print("  deleted: " + ", ".join(f"{t} {n:,}" for t, n in first.deleted.items()))
    seconds = result["maintenance_seconds"]
    if seconds:
        print(
            f"maintenance pass: first {seconds[0]:.2f} s, later median {sorted(seconds)[len(seconds) // 2]:.2f} s, max {max(seconds):.2f} s"
        )
    print_tables(f"after {result['live_days']} live days, maintenance on", result["final"])
    if "kept" in result:
        rows, pruned_days = result["kept"]
        print(f"kept of the {pruned_days} live days past the age, per live day (row data, without indexes):")
        for what, n, b in rows:
            print(f"  {what:52} {n / pruned_days:8.1f} rows {b / pruned_days / 1024:8.1f} KB")
        print(
            f"  {'total':52} {sum(n for _, n, _ in rows) / pruned_days:8.1f} rows {sum(b for _, _, b in rows) / pruned_days / 1024:8.1f} KB"
        )
    print("  where the bytes are (MB): table heap, TOAST, indexes")
    for name, heap, toast, indexes in result.get("layout", []):
        print(f"    {name:24} {heap / MB:8.2f} {toast / MB:8.2f} {indexes / MB:8.2f}")
    print("month by month (total MB of the six tables, maintenance on):")
    previous = None
    for day, size in result["months"]:
        change = f" ({(size - previous) / MB:+.2f})" if previous is not None else ""
        print(f"  {day:%Y-%m-%d}: {size / MB:8.2f}{change}")
        previous = size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--retention-days", type=int, default=14)
    parser.add_argument(
        "--first-maintenance-day",
        type=int,
        default=None,
        help="the simulated day of the first pass, then daily (default: the first day anything is past the age, "
        "as with the job's schedule on from the start; later: a backlog first)",
    )
    parser.add_argument("--symbols-50-days", type=int, default=4, help="days replayed for 50 symbols (0: skip)")
    parser.add_argument("--symbols-50-retention-days", type=int, default=1)
    args = parser.parse_args()
    if args.first_maintenance_day is None:
        args.first_maintenance_day = args.retention_days + 1

    with (
        temporary_database(SERVER, "xau_bench_storage_rec") as dagster_url,
        temporary_database(SERVER, "xau_bench_storage_candles") as candles_url,
    ):
        recorded, snapshots = record(dagster_url, candles_url)
    for tf, rows in recorded.items():
        payload = sum(len(r["event"]) for r in rows["event_logs"])
        print(f"recorded {tf} live run: {len(rows['event_logs'])} event rows, {payload / 1024:.1f} KB of event payload")
    year_live_days = sum(1 for n in range(365) if live_runs(date(2025, 1, 1) + timedelta(days=n)))
    one = simulate(recorded, snapshots, 1, args.days, args.retention_days, args.first_maintenance_day, date(2025, 1, 1))
    report(
        f"1 symbol, {args.days} days, retention {args.retention_days} days", one, args.retention_days, year_live_days
    )

    if args.symbols_50_days:
        r50 = args.symbols_50_retention_days
        # Monday 2025-01-06 on: full trading days only, the first pass once the first is past the age.
        many = simulate(recorded, snapshots, 50, args.symbols_50_days, r50, r50 + 2, date(2025, 1, 6))
        report(f"50 symbols, {args.symbols_50_days} days, retention {r50} day(s)", many, r50, year_live_days)
        unpruned, live_days, _ = many["unpruned"]
        full = total(unpruned) / live_days
        kept_many, days_many = many["kept"]
        kept_one, days_one = one["kept"]
        kept_50 = sum(b for _, _, b in kept_many) / days_many
        # What a kept day's row data costs on disk (indexes, free space), from one symbol's year: the
        # growth per live day after the first pass against the row data kept per live day.
        months = one["months"]
        after_first = [
            (d, size) for d, size in months if d >= date(2025, 1, 1) + timedelta(days=args.first_maintenance_day)
        ]
        slope = (after_first[-1][1] - after_first[0][1]) / max(
            1,
            sum(
                1
                for n in range((after_first[-1][0] - after_first[0][0]).days)
                if live_runs(after_first[0][0] + timedelta(days=n + 1))
            ),
        )
        overhead = slope / (sum(b for _, _, b in kept_one) / days_one)
        print("\n50 symbols, a year extrapolated from these per-day figures:")
        print(f"  without maintenance: {full / MB:.1f} MB per live day -> {full * year_live_days / MB:,.0f} MB a year")
        print(
            f"  kept per live day past the age: {kept_50 / 1024:.0f} KB of row data, x{overhead:.2f} on disk "
            f"(one symbol's ratio) = {kept_50 * overhead / MB:.2f} MB"
        )
        for retention in sorted({args.retention_days, 3, 1}, reverse=True):
            size = full * retention * 5 / 7 + kept_50 * overhead * year_live_days
            print(f"  maintenance on, {retention} day(s) kept whole: ~{size / MB:,.0f} MB after a year")


if __name__ == "__main__":
    main()
