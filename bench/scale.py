"""Fifty symbols on a paid plan: the definitions, the UI's asset graph, one tick of every schedule and
sensor, and a one-year backfill of all 200 assets against its credit floor.

Each figure has a reference timed in the same run (the machine is shared and noisy):
- definitions: `import xau_pipeline.definitions` and the repository snapshot a code server serves,
  in a fresh process, 50 symbols against 1 (alternated, the median of --repeat each);
- asset graph: the UI's LocationWorkspaceAssetsQuery (bench/asset_graph.graphql) over a running
  `dagster-webserver` of each code location, 50 symbols against 1 (alternated, median of 9);
- backfill: `make run`'s launcher (the UI and its daemon) with 50 symbols and XAU_HISTORY_START a
  year back, the stand-in in its own process at the paid plan's 610 credits a minute serving every
  symbol; the history catch-up sensors do the work. From the UI's first answer to the end of the
  last catch-up run, against the credit floor (the minimum credits, ceil(bars / 5000) per series,
  over the credits a minute), with the pool limits the launcher derived and the asset graph's
  latency through that UI while it ran;
- tick: every schedule (at the last :01, when all four tick) and every sensor evaluated once
  in-process on the backfill's candle store and Dagster instance, as the daemon has the code server
  do, 50 symbols against 1 (the median of --repeat each): first with no sensor cursor (a daemon's
  first tick), then each sensor from the cursor its first evaluation left (the daemon's next ones).
- CPU: while the backfill runs, the machine's busy CPU seconds, PostgreSQL's and the stand-in's. With --steady, instead of the backfill, a
  year of every series is stored directly (`ingest`, no Dagster) and the tick timed on that: the
  steady state, every history complete.

Usage: python bench/scale.py [--symbols 50] [--per-minute 610] [--backfill-minutes 40] [--no-backfill | --steady]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dagster as dg
import requests
import sqlalchemy as sa
import yaml
from first_start import free_port, launched, percentile, wait_for
from run_shape import stand_in_process

from xau_pipeline.definitions import build_definitions
from xau_pipeline.defs.automation.catch_up_sensor import history_progress
from xau_pipeline.defs.candles.partitions import CATCH_UP_TAG
from xau_pipeline.ingest import ingest
from xau_pipeline.market.symbols import parse_symbols
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.settings import Settings
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline.twelvedata.windows import MAX_BARS_PER_CALL
from xau_pipeline_dev.testing import temporary_database

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
# The key run_shape.stand_in_process has its stand-in accept.
API_KEY = "bench-key"
ASSET_GRAPH_QUERY = (Path(__file__).resolve().parent / "asset_graph.graphql").read_text()
LOCATIONS_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
# Twelve Data FX pairs and metals, with a price level for the stand-in; metals on CME hours, FX 24x5.
METALS = {
    "XAU/USD": "2050",
    "XAG/USD": "23",
    "XPT/USD": "900",
    "XPD/USD": "1000",
    "XAU/EUR": "1900",
    "XAU/GBP": "1620",
    "XAU/JPY": "305000",
    "XAU/AUD": "3100",
    "XAU/CHF": "1800",
    "XAG/EUR": "21",
}
FX = {
    "EUR/USD": "1.08",
    "GBP/USD": "1.27",
    "USD/JPY": "148",
    "USD/CHF": "0.88",
    "AUD/USD": "0.66",
    "USD/CAD": "1.35",
    "NZD/USD": "0.61",
    "EUR/GBP": "0.86",
    "EUR/JPY": "160",
    "GBP/JPY": "187",
    "EUR/CHF": "0.95",
    "AUD/JPY": "97",
    "CAD/JPY": "110",
    "CHF/JPY": "168",
    "EUR/AUD": "1.64",
    "EUR/CAD": "1.46",
    "EUR/NZD": "1.77",
    "GBP/AUD": "1.92",
    "GBP/CAD": "1.71",
    "GBP/CHF": "1.12",
    "GBP/NZD": "2.07",
    "AUD/CAD": "0.89",
    "AUD/CHF": "0.58",
    "AUD/NZD": "1.08",
    "NZD/JPY": "91",
    "NZD/CAD": "0.82",
    "NZD/CHF": "0.54",
    "CAD/CHF": "0.65",
    "USD/SEK": "10.4",
    "USD/NOK": "10.5",
    "USD/DKK": "6.9",
    "USD/SGD": "1.34",
    "USD/HKD": "7.8",
    "USD/MXN": "17.0",
    "USD/ZAR": "18.7",
    "USD/TRY": "30.0",
    "USD/PLN": "4.0",
    "USD/CNH": "7.2",
    "EUR/SEK": "11.3",
    "EUR/NOK": "11.4",
}
STORED_BY_SERIES = sa.text("SELECT symbol, timeframe, count(*) FROM candles GROUP BY symbol, timeframe")
CREDITS_BY_KIND = sa.text("SELECT kind, coalesce(sum(credits), 0) FROM api_calls GROUP BY kind")
# Each schedule and sensor tick the daemon stored: its seconds from start to end.
TICK_SECONDS = sa.text(
    """
    SELECT type, (tick_body::json->>'end_timestamp')::float - (tick_body::json->>'timestamp')::float AS seconds
    FROM job_ticks WHERE tick_body::json->>'end_timestamp' IS NOT NULL
    """
)
LAST_CATCH_UP_END = sa.text(
    "SELECT count(*), max(r.end_time) FROM runs r JOIN run_tags t ON t.run_id = r.run_id WHERE t.key = :tag"
)


def symbols_setting(count: int) -> str:
    """XAU_SYMBOLS for the first `count` of the table (metals first)."""
    table = [f"{s}:cme_gold" for s in METALS] + [f"{s}:fx_24x5" for s in FX]
    return ",".join(table[:count])


def stand_in_prices(count: int) -> dict[str, str]:
    return dict(list({**METALS, **FX}.items())[:count])


def median_ratio(many: list[float], one: list[float]) -> tuple[float, float, str]:
    m, o = statistics.median(many), statistics.median(one)
    return m, o, f"{m / o:.2f}x" if o else "-"


# ---- definitions -----------------------------------------------------------------------------------

LOAD = """
import time
began = time.perf_counter()
import xau_pipeline.definitions as module
from dagster._core.remote_representation.external_data import RepositorySnap
repository = module.defs.get_repository_def()
loaded = time.perf_counter()
RepositorySnap.from_def(repository)
print(loaded - began, time.perf_counter() - began)
"""


def load_seconds(symbols: str) -> tuple[float, float]:
    """(import and repository, and with its snapshot) seconds in a fresh process."""
    env = {**os.environ, "XAU_SYMBOLS": symbols, "TWELVE_DATA_API_KEY": API_KEY}
    out = subprocess.run([sys.executable, "-c", LOAD], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    loaded, snapped = out.stdout.split()
    return float(loaded), float(snapped)


def definitions(many: str, one: str, repeat: int) -> list[str]:
    loads: dict[str, list[tuple[float, float]]] = {"many": [], "one": []}
    load_seconds(one)  # untimed: the first process pays for cold files
    for _ in range(repeat):
        loads["many"].append(load_seconds(many))
        loads["one"].append(load_seconds(one))
    lines = []
    for index, what in enumerate(("import and repository", "with the repository snapshot")):
        m, o, ratio = median_ratio([x[index] for x in loads["many"]], [x[index] for x in loads["one"]])
        lines.append(f"definitions load, {what}: {m:.2f} s against {o:.2f} s for 1 symbol ({ratio}; goal < 5 s)")
    return lines


# ---- the asset graph over a webserver ----------------------------------------------------------------


@contextmanager
def webserver(symbols: str, home: Path) -> Iterator[str]:
    """`dagster-webserver -m xau_pipeline.definitions` with these symbols: its GraphQL URL."""
    port = free_port()
    env = {
        **os.environ,
        "XAU_SYMBOLS": symbols,
        "TWELVE_DATA_API_KEY": API_KEY,
        "XAU_DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
        "DAGSTER_HOME": str(home),
    }
    command = [Path(sys.executable).parent / "dagster-webserver", "-m", "xau_pipeline.definitions"]
    with open(home / "webserver.log", "w") as log:
        process = subprocess.Popen(
            [*map(str, command), "-h", "127.0.0.1", "-p", str(port)], env=env, cwd=ROOT, stdout=log, stderr=log
        )
        try:
            if not wait_for(f"http://127.0.0.1:{port}/server_info", 180):
                raise SystemExit(f"the webserver did not answer within 3 minutes (see {home}/webserver.log)")
            yield f"http://127.0.0.1:{port}/graphql"
        finally:
            process.terminate()
            process.wait(timeout=30)


def asset_graph_seconds(graphql: str) -> tuple[float, int]:
    """One asset graph query: (seconds, asset nodes answered), waiting for the location to load first."""
    for _ in range(120):
        names = requests.post(graphql, json={"query": LOCATIONS_QUERY}, timeout=60).json()
        entries = names["data"]["workspaceOrError"].get("locationEntries") or []
        if entries:
            break
        time.sleep(1)
    variables = {"name": entries[0]["name"]}
    while True:
        began = time.perf_counter()
        answer = requests.post(graphql, json={"query": ASSET_GRAPH_QUERY, "variables": variables}, timeout=120)
        seconds = time.perf_counter() - began
        entry = answer.json()["data"]["workspaceLocationEntryOrError"]
        location = entry.get("locationOrLoadError") or {}
        if "repositories" in location:
            return seconds, sum(len(r["assetNodes"]) for r in location["repositories"])
        time.sleep(1)  # still loading


def asset_graph(many: str, one: str, samples: int = 9) -> list[str]:
    with (
        tempfile.TemporaryDirectory() as a,
        tempfile.TemporaryDirectory() as b,
        webserver(many, Path(a)) as many_url,
        webserver(one, Path(b)) as one_url,
    ):
        asset_graph_seconds(many_url), asset_graph_seconds(one_url)  # untimed: first answers
        times: dict[str, list[float]] = {"many": [], "one": []}
        nodes = {}
        for _ in range(samples):
            for label, url in (("many", many_url), ("one", one_url)):
                seconds, nodes[label] = asset_graph_seconds(url)
                times[label].append(seconds)
    m, o, ratio = median_ratio(times["many"], times["one"])
    return [
        f"UI asset graph (LocationWorkspaceAssetsQuery, {nodes['many']} nodes): {m * 1000:.0f} ms against "
        f"{o * 1000:.0f} ms for {nodes['one']} nodes ({ratio}); p99 of {samples}: {max(times['many']) * 1000:.0f} ms"
    ]


# ---- the backfill ------------------------------------------------------------------------------------


def backfill(
    symbols: str, count: int, per_minute: int, minutes: float, candles_url: str, dagster_url: str, home: Path
) -> list[str]:
    """The history catch-up of a year for every symbol through `make run`'s launcher."""
    history_start = date.today() - timedelta(days=365)
    ui_port = free_port()
    options = ["--paid-plan", "--credits-per-minute", str(per_minute), "--credits-per-day", "1000000"]
    with stand_in_process(options=options) as stand_in_url:
        configured = requests.post(
            f"{stand_in_url}/__standin__/config",
            json={"symbols": stand_in_prices(count)},
            headers={"Authorization": f"apikey {API_KEY}"},
            timeout=10,
        )
        configured.raise_for_status()
        env = {
            **os.environ,
            "TWELVE_DATA_API_KEY": API_KEY,
            "TWELVE_DATA_BASE_URL": stand_in_url,
            "TWELVE_DATA_CREDITS_PER_MINUTE": str(per_minute),
            "TWELVE_DATA_CREDITS_PER_DAY": "1000000",
            "XAU_SYMBOLS": symbols,
            "XAU_HISTORY_START": history_start.isoformat(),
            "XAU_DATABASE_URL": candles_url,
            "XAU_DAGSTER_PG_URL": dagster_url,
            "XAU_UI_PORT": str(ui_port),
            "XAU_API_PORT": str(free_port()),
            "DAGSTER_HOME": str(home),
        }
        with launched(env, home):
            if not wait_for(f"http://127.0.0.1:{ui_port}/server_info", 300):
                raise SystemExit(f"the UI did not answer within 5 minutes (see {home}/launch.log)")
            ui_up = time.time()
            lines = watch_backfill(candles_url, ui_port, history_start, count, ui_up, minutes)
    return lines + backfill_figures(candles_url, dagster_url, count, per_minute, ui_up, home)


def watch_backfill(
    candles_url: str, ui_port: int, history_start: date, count: int, ui_up: float, minutes: float
) -> list[str]:
    """Until every series is complete (or `minutes` have passed): the asset graph's latency meanwhile."""
    store = CandleStore(candles_url)
    start = datetime.combine(history_start, datetime.min.time(), UTC)
    waiting = list(parse_symbols(symbols_setting(count)))
    graphql = f"http://127.0.0.1:{ui_port}/graphql"
    latencies: list[float] = []
    deadline = ui_up + minutes * 60
    last_look = 0.0
    cpu_before = cpu_seconds()
    shares: dict[str, tuple[int, int]] = {}  # per symbol: (stored, expected) bars at the last look
    while len(shares) < count or any(stored < expected for stored, expected in shares.values()):
        if time.time() > deadline:
            break
        time.sleep(15)
        latencies.append(asset_graph_seconds(graphql)[0])
        if time.time() - last_look < 60:
            continue  # reading every series' progress is work of its own: once a minute
        last_look = time.time()
        try:
            for symbol in waiting:
                progress = history_progress(store, symbol, start, now())
                shares[symbol.name] = (
                    sum(p.stored for p in progress),
                    sum(p.expected for p in progress) if not all(p.complete for p in progress) else 0,
                )
        except Exception:  # the launcher migrates the schema after the UI may first answer
            continue
        waiting = [s for s in waiting if shares[s.name][0] < shares[s.name][1]]
        print(f"  {time.time() - ui_up:6.0f} s: {count - len(waiting)} of {count} symbols complete", flush=True)
    cpu = cpu_line(cpu_before, cpu_seconds(), time.time() - ui_up)
    store.engine.dispose()
    elapsed = (time.time() - ui_up) / 60
    stored = sum(s for s, _ in shares.values())
    expected = stored + sum(max(e - s, 0) for s, e in shares.values())
    done = (
        "all complete"
        if not waiting
        else f"{count - len(waiting)} of {count} symbols complete after {elapsed:.1f} min (stopped watching), "
        f"{stored / max(expected, 1):.0%} of the expected bars stored: at that pace all in about "
        f"{elapsed * expected / max(stored, 1):.0f} min"
    )
    return [
        f"backfill: {done}; UI asset graph meanwhile p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms over {len(latencies)} requests",
        cpu,
    ]


def now() -> datetime:
    return datetime.now(UTC)


# ---- where the machine's CPU went (Linux /proc) ---------------------------------------------------------

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_seconds(pid: str, reaped: bool = False) -> float:
    """CPU seconds of a process (`reaped`: with those of the children it has waited for, as the
    postmaster waits for every backend that ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # proc(5): utime, stime, cutime, cstime are fields 14-17; fields[0] is field 3.
    used = sum(int(x) for x in fields[11:13]) + (sum(int(x) for x in fields[13:15]) if reaped else 0)
    return used / TICKS_PER_SECOND


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far: the whole machine (busy, all cores), PostgreSQL (the postmaster, its
    live processes and every backend it reaped) and the stand-in (its process)."""
    busy = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    machine = (sum(busy[:8]) - busy[3] - busy[4]) / TICKS_PER_SECOND  # all but idle and iowait
    postgres = stand_in = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if "xau_pipeline_dev.twelvedata_standin" in command:
            stand_in += _process_seconds(entry.name)
        elif name == "postgres":
            parent_name = Path(f"/proc/{parent}/comm").read_text().strip() if Path(f"/proc/{parent}").exists() else ""
            postmaster = parent_name != "postgres"
            postgres += _process_seconds(entry.name, reaped=postmaster)
    return {"machine": machine, "postgres": postgres, "stand-in": stand_in}


def cpu_line(before: dict[str, float], after: dict[str, float], wall: float) -> str:
    spent = {key: after[key] - before[key] for key in before}
    rest = spent["machine"] - spent["postgres"] - spent["stand-in"]
    cores = os.cpu_count() or 1
    return (
        f"CPU meanwhile: {spent['machine']:.0f} s on {cores} cores in {wall:.0f} s "
        f"({spent['machine'] / (wall * cores):.0%} busy): PostgreSQL {spent['postgres']:.0f} s, the stand-in "
        f"{spent['stand-in']:.0f} s (the real API's own work), Dagster and the runs {rest:.0f} s; "
        f"all of it on {cores} cores takes at least {spent['machine'] / cores:.0f} s, "
        f"{rest / cores:.0f} s without the stand-in and PostgreSQL"
    )


def backfill_figures(
    candles_url: str, dagster_url: str, symbols: int, per_minute: int, ui_up: float, home: Path
) -> list[str]:
    candles = sa.create_engine(candles_url)
    with candles.connect() as connection:
        stored = connection.execute(STORED_BY_SERIES).all()
        by_kind = {kind: int(n) for kind, n in connection.execute(CREDITS_BY_KIND)}
    candles.dispose()
    dagster = sa.create_engine(dagster_url)
    with dagster.connect() as connection:
        runs, last_end = connection.execute(LAST_CATCH_UP_END, {"tag": CATCH_UP_TAG}).one()
        tick_times = [seconds for _, seconds in connection.execute(TICK_SECONDS)]
    dagster.dispose()
    minimum = sum(math.ceil(bars / MAX_BARS_PER_CALL) for _, _, bars in stored)
    # The stand-in's 24/7 feed serves a bar in every slot: a year of each series, in pages of 5000.
    year_minimum = symbols * sum(math.ceil(timedelta(days=365) / tf.bar / MAX_BARS_PER_CALL) for tf in TIMEFRAMES)
    floor = year_minimum / per_minute * 60
    concurrency = yaml.safe_load((home / "dagster.yaml").read_text())["concurrency"]
    limits = (
        f"pool {concurrency['pools']['default_limit']} runs at a time, catch-up "
        f"{concurrency['runs']['tag_concurrency_limits'][-1]['limit']}, "
        f"max_concurrent_runs {concurrency['runs']['max_concurrent_runs']}"
    )
    # Complete or not, the time to the end of the last catch-up run so far.
    took = (last_end - ui_up) if last_end else float("nan")
    return [
        f"backfill: {len(stored)} series, {sum(b for _, _, b in stored):,} bars, {runs} catch-up runs ({limits})",
        f"backfill: {by_kind.get('backfill', 0)} catch-up credits against the minimum {minimum} for the bars stored"
        + "".join(f", {n} {kind}" for kind, n in sorted(by_kind.items()) if kind != "backfill")
        + "; last catch-up run ended "
        f"{took:.0f} s after the UI answered; credit floor of the whole year {year_minimum} / {per_minute} a minute "
        f"= {floor:.0f} s; ratio {took / floor:.1f}x (goal <= 1.5x; if not complete, see the projection above)",
        f"daemon meanwhile: {len(tick_times)} schedule and sensor ticks, each p50 {percentile(tick_times, 0.5):.1f} s, "
        f"p90 {percentile(tick_times, 0.9):.1f} s, max {max(tick_times, default=float('nan')):.1f} s",
    ]


# ---- one tick of every schedule and sensor -------------------------------------------------------------


def fill_directly(symbols: str, count: int, candles_url: str) -> str:
    """A year of every series stored by `ingest` from the stand-in (no limits, no Dagster): how long it took."""
    store = CandleStore(candles_url)
    end = now().replace(minute=0, second=0, microsecond=0)
    start = datetime.combine(date.today() - timedelta(days=365), datetime.min.time(), UTC)
    began = time.perf_counter()
    with stand_in_process(options=["--paid-plan", "--no-limits"]) as stand_in_url:
        requests.post(
            f"{stand_in_url}/__standin__/config",
            json={"symbols": stand_in_prices(count)},
            headers={"Authorization": f"apikey {API_KEY}"},
            timeout=10,
        ).raise_for_status()
        client = TwelveDataClient(API_KEY, stand_in_url)
        for symbol in parse_symbols(symbols):
            for tf in TIMEFRAMES:
                ingest(client, store, symbol, tf, start, end)
        client.close()
    store.engine.dispose()
    return f"steady state: a year of {count * 4} series stored directly in {time.perf_counter() - began:.0f} s"


def tick_seconds(
    defs: dg.Definitions, instance: dg.DagsterInstance, tick: datetime, cursors: dict[str, str | None] | None = None
) -> dict[str, float]:
    """Seconds to evaluate every schedule (at `tick`), repair sensor and catch-up sensor once; with
    `cursors`, each sensor starts from the cursor its last evaluation left there, as in the daemon."""
    repository = defs.get_repository_def()
    resources = defs.resources
    spent = {"schedules": 0.0, "repair sensors": 0.0, "catch-up sensors": 0.0}
    for schedule in defs.schedules or []:
        began = time.perf_counter()
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=repository, resources=resources
        )
        schedule.evaluate_tick(context)
        spent["schedules"] += time.perf_counter() - began
    for sensor in defs.sensors or []:
        began = time.perf_counter()
        cursor = cursors.get(sensor.name) if cursors is not None else None
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, repository_def=repository, resources=resources
        )
        result = sensor.evaluate_tick(context)
        if cursors is not None:
            cursors[sensor.name] = result.cursor
        kind = "repair sensors" if sensor.name.endswith("_gap_repair") else "catch-up sensors"
        spent[kind] += time.perf_counter() - began
    return spent


def ticks(
    many: str, one: str, per_minute: int, candles_url: str, instance: dg.DagsterInstance, repeat: int
) -> list[str]:
    base = {"TWELVE_DATA_API_KEY": API_KEY, "XAU_DATABASE_URL": candles_url}
    base |= {"TWELVE_DATA_CREDITS_PER_MINUTE": str(per_minute), "TWELVE_DATA_CREDITS_PER_DAY": "1000000"}
    base["XAU_HISTORY_START"] = (date.today() - timedelta(days=365)).isoformat()
    os.environ.update(base)  # the resources read the key and the database URL as EnvVars
    defs = {
        label: build_definitions(Settings.from_env({**base, "XAU_SYMBOLS": symbols}))
        for label, symbols in (("many", many), ("one", one))
    }
    tick = now().replace(minute=1, second=0, microsecond=0)
    tick -= timedelta(hours=1) if tick > now() else timedelta(0)
    for each in defs.values():
        each.get_repository_def()  # resolved once, up front (cached), as a code server does at load
    tick_seconds(defs["one"], instance, tick)  # untimed: the first evaluation warms caches
    counts = {label: (len(d.schedules or []), len(d.sensors or [])) for label, d in defs.items()}
    first = timed_ticks(defs, instance, tick, repeat)
    # The daemon's next tick: each sensor from the cursor its first evaluation left (a complete
    # history's catch-up waits 15 min; a repair scan starts where something changed).
    cursors: dict[str, dict[str, str | None]] = {"many": {}, "one": {}}
    for label in ("many", "one"):
        tick_seconds(defs[label], instance, tick, cursors[label])
    following = timed_ticks(defs, instance, tick, repeat, cursors)
    # Later, nothing fetched meanwhile (the schedules' fetches would add only today's windows): a tick
    # an hour on (untimed; the store's windows were fetched within LEDGER_MARGIN of the first scan, so
    # it scans them all again), then the timed ones two hours on, from the cursors it left: the repair
    # scans start at today, and each complete history's catch-up looks again (every 15 min).
    with sensors_clock_ahead(LATER / 2):
        for label in ("many", "one"):
            tick_seconds(defs[label], instance, tick, cursors[label])
    with sensors_clock_ahead(LATER):
        later = timed_ticks(defs, instance, tick, repeat, cursors)
    return [
        f"one tick of {counts['many'][0]} schedules and {counts['many'][1]} sensors (at {tick:%H:%M} UTC), each sensor "
        f"with no cursor (a daemon's first; the reference: 1 symbol's {counts['one'][0]} and {counts['one'][1]}): {first}",
        f"the next tick, each sensor from the cursor the first left: {following}",
        f"a tick {LATER.seconds // 3600} h on, from the cursors one an hour on left (the sensors' clock moved on): {later}",
    ]


def timed_ticks(
    defs: dict[str, dg.Definitions],
    instance: dg.DagsterInstance,
    tick: datetime,
    repeat: int,
    cursors: dict[str, dict[str, str | None]] | None = None,
) -> str:
    """Ticks of many symbols and of one, alternated `repeat` times (each from a copy of `cursors`):
    the medians, their parts and their ratio."""
    spent: dict[str, list[dict[str, float]]] = {"many": [], "one": []}
    for _ in range(repeat):
        for label in ("many", "one"):
            start_from = dict(cursors[label]) if cursors is not None else None
            spent[label].append(tick_seconds(defs[label], instance, tick, start_from))
    many, one, ratio = median_ratio([sum(x.values()) for x in spent["many"]], [sum(x.values()) for x in spent["one"]])
    parts = ", ".join(f"{kind} {statistics.median(x[kind] for x in spent['many']):.2f} s" for kind in spent["many"][0])
    return f"{many:.2f} s ({parts}) against {one:.2f} s ({ratio}; goal < 10 s)"


LATER = timedelta(hours=2)


@contextmanager
def sensors_clock_ahead(ahead: timedelta) -> Iterator[None]:
    """The repair and catch-up sensors' clock `ahead` of the wall clock."""
    import xau_pipeline.defs.automation.catch_up_sensor
    import xau_pipeline.defs.automation.repair_sensor

    modules = (xau_pipeline.defs.automation.repair_sensor, xau_pipeline.defs.automation.catch_up_sensor)
    real = [module.utc_now for module in modules]
    for module, clock in zip(modules, real, strict=True):
        module.utc_now = lambda clock=clock: clock() + ahead  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, clock in zip(modules, real, strict=True):
            module.utc_now = clock  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50, choices=range(2, len(METALS) + len(FX) + 1))
    parser.add_argument("--per-minute", type=int, default=610, help="the paid plan's credits a minute")
    parser.add_argument("--backfill-minutes", type=float, default=30, help="stop watching the backfill after this")
    parser.add_argument("--no-backfill", action="store_true", help="tick on an empty store instead")
    parser.add_argument("--steady", action="store_true", help="tick on a year stored directly instead")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("dagster").setLevel(logging.WARNING)  # the sensors' own log lines, per evaluation
    many, one = symbols_setting(args.symbols), symbols_setting(1)
    lines = definitions(many, one, args.repeat)
    print(*lines, sep="\n", flush=True)
    lines += asset_graph(many, one)
    print(lines[-1], flush=True)
    with (
        temporary_database(SERVER, "xau_bench_scale") as candles_url,
        temporary_database(SERVER, "xau_bench_scale_dagster") as dagster_url,
        tempfile.TemporaryDirectory(prefix="xau_bench_scale_") as home,
    ):
        if args.no_backfill or args.steady:
            CandleStore(candles_url).migrate()
            if args.steady:
                lines.append(fill_directly(many, args.symbols, candles_url))
                print(lines[-1], flush=True)
            (Path(home) / "dagster.yaml").write_text(
                yaml.safe_dump({"storage": {"postgres": {"postgres_url": {"env": "XAU_DAGSTER_PG_URL"}}}})
            )
        else:
            found = backfill(
                many, args.symbols, args.per_minute, args.backfill_minutes, candles_url, dagster_url, Path(home)
            )
            lines += found
            print(*found, sep="\n", flush=True)
        os.environ["XAU_DAGSTER_PG_URL"] = dagster_url
        with dg.DagsterInstance.from_config(home) as instance:
            lines += ticks(many, one, args.per_minute, candles_url, instance, args.repeat)
    print(f"\nScale: {args.symbols} symbols ({args.symbols * 4} assets), {args.per_minute} credits a minute")
    print(*lines, sep="\n")


if __name__ == "__main__":
    main()
