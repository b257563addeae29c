"""What one tick of the alert sensor costs, for 1 symbol (4 series) and 50 symbols (200 series).

On a fresh candle database (two weeks of bars per series, up to now, on the 24x7 calendar so no
series is stale or quiet) and a fresh Dagster instance on PostgreSQL with the project's storage
(one passed evaluation per series, alerted check and watched day), the sensor is ticked in-process
--repeat times with a webhook channel to a local receiver and no incident: the steady cost every
60 s. Prints the median and the slowest tick.

Usage: python bench/alert_tick.py [--repeat 5]
"""

# No `from __future__ import annotations`: Dagster reads annotations at definition time.
import argparse
import os
import statistics
import tempfile
import threading
import time
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import yaml

from xau_pipeline.clock import day_start
from xau_pipeline.defs.alerts.sensor import ALERTED_CHECKS, Series, build_alert_sensor
from xau_pipeline.defs.resources import CandleStoreResource
from xau_pipeline.market.bars import Bar, FetchedWindow
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.settings import Settings
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline_dev.testing import temporary_database

SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


class Receiver(ThreadingHTTPServer):
    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def fill(store: CandleStore, series: list[Series], now: datetime) -> None:
    start = day_start(now) - timedelta(days=14)
    for s in series:
        bar = s.timeframe.bar
        slots = calendar(s.symbol.calendar).expected_slots(start, now - bar, bar)
        bars = [Bar(t, Decimal("2650"), Decimal("2651"), Decimal("2649"), Decimal("2650.5")) for t in slots]
        store.write(s.symbol.name, s.timeframe, bars, [FetchedWindow(start, now, now, len(bars))])


def case(symbols: int, repeat: int, receiver: Receiver) -> tuple[float, float]:
    now = datetime.now(UTC)
    series = [
        Series(symbol, tf, dg.AssetKey([symbol.key_prefix, tf.key_suffix]))
        for symbol in (Symbol(f"X{n:02d}/USD", calendar="24x7") for n in range(symbols))
        for tf in TIMEFRAMES
    ]
    settings = Settings.from_env({"XAU_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{receiver.server_address[1]}/hook"})
    with (
        temporary_database(SERVER, "xau_bench_alert_candles") as candles_url,
        temporary_database(SERVER, "xau_bench_alert_dagster") as dagster_url,
        tempfile.TemporaryDirectory(prefix="xau_bench_alert_tick_") as home,
    ):
        store = CandleStore(candles_url)
        store.migrate()
        fill(store, series, now)
        project = yaml.safe_load((ROOT / "dagster.yaml").read_text())["storage"]
        project["custom"]["config"] = {"postgres_url": dagster_url}
        Path(home, "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, "storage": project}))
        with dg.DagsterInstance.from_config(home) as instance:
            for s in series:
                for name in ALERTED_CHECKS:
                    for day in (day_start(now), day_start(now) - timedelta(days=1)):
                        instance.report_runless_asset_event(
                            dg.AssetCheckEvaluation(
                                asset_key=s.key, check_name=name, passed=True, partition=f"{day:%Y-%m-%d}"
                            )
                        )
            sensor = build_alert_sensor(settings, series)
            resources = {"candle_store": CandleStoreResource(database_url=candles_url)}
            seconds = []
            for _ in range(repeat):
                context = dg.build_sensor_context(instance=instance, resources=resources)
                began = time.perf_counter()
                result = sensor.evaluate_tick(context)
                seconds.append(time.perf_counter() - began)
                assert "0 incident(s) opened" in (result.skip_message or ""), result.skip_message
    return statistics.median(seconds), max(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    for symbols in (1, 50):
        median, slowest = case(symbols, args.repeat, receiver)
        print(
            f"{symbols:>2} symbol(s), {4 * symbols:>3} series: one alert tick {median * 1000:.0f} ms median, "
            f"{slowest * 1000:.0f} ms slowest of {args.repeat}",
            flush=True,
        )


if __name__ == "__main__":
    main()
