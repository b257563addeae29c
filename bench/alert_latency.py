"""How long a failed check takes to reach a person, under a real Dagster daemon.

A daemon runs bench/alert_defs.py (the alert sensor alone, every 60 s, as in production) with a
webhook channel pointed at a local HTTP receiver. The bench then records, by real runs of an asset
with the alerted checks on the same instance, a failed `no_gaps` verdict on today's partition,
waits for the FAILING notice, records a passed one, waits for the RESOLVED notice, --cycles times.
It prints each latency (verdict stored -> notice received) and the notices received per incident
(the goal: within 2 minutes, exactly one opening and one resolution each).

Usage: python bench/alert_latency.py [--cycles 3]
"""

# No `from __future__ import annotations`: Dagster reads annotations at definition time.
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg

from xau_pipeline.defs.alerts.sensor import ALERTED_CHECKS
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline_dev.testing import temporary_database

SERVER = os.environ.get("XAU_BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
DAEMON = Path(sys.executable).parent / "dagster-daemon"
KEY = dg.AssetKey(["xauusd", "candles_m15"])
TIMEOUT = 300
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


class Receiver(ThreadingHTTPServer):
    def __init__(self):
        self.received: list[tuple[float, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.received.append((time.monotonic(), body["text"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def checks_job(verdict: dict[str, bool]) -> dg.JobDefinition:
    partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC", end_offset=1)

    @dg.multi_asset(
        name="xauusd__candles_m15",
        specs=[dg.AssetSpec(KEY)],
        check_specs=[dg.AssetCheckSpec(name, asset=KEY, partitions_def=partitions) for name in ALERTED_CHECKS],
        partitions_def=partitions,
    )
    def candles():
        yield dg.MaterializeResult(asset_key=KEY)
        for name in ALERTED_CHECKS:
            yield dg.AssetCheckResult(check_name=name, passed=verdict["passed"] or name != "no_gaps")

    return dg.Definitions(assets=[candles], jobs=[dg.define_asset_job("j", selection=[KEY])]).resolve_job_def("j")


def wait_for(receiver: Receiver, count: int, word: str) -> float:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if len(receiver.received) >= count:
            at, text = receiver.received[count - 1]
            assert word in text.split("\n")[0], text
            return at
        time.sleep(0.2)
    raise SystemExit(f"no {word} notice within {TIMEOUT} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with (
        temporary_database(SERVER, "xau_bench_alerts") as url,
        tempfile.TemporaryDirectory(prefix="xau_bench_alerts_") as home,
    ):
        CandleStore(url).migrate()
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        Path(home, "workspace.yaml").write_text(
            f"load_from:\n  - python_file:\n      relative_path: {ROOT / 'bench' / 'alert_defs.py'}\n"
            f"      working_directory: {ROOT}\n"
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("XAU_ALERT_")},
            "DAGSTER_HOME": home,
            "XAU_DATABASE_URL": url,
            "XAU_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{receiver.server_address[1]}/hook/b3nchT0ken",
        }
        os.environ["DAGSTER_HOME"] = home
        daemon = subprocess.Popen(
            [str(DAEMON), "run", "-w", str(Path(home, "workspace.yaml"))],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        verdict = {"passed": True}
        job = checks_job(verdict)
        today = f"{datetime.now(UTC):%Y-%m-%d}"
        latencies: list[float] = []
        try:
            with dg.DagsterInstance.get() as instance:
                time.sleep(20)  # the daemon up and its first tick
                for cycle in range(args.cycles):
                    for passed, word in ((False, "FAILING"), (True, "RESOLVED")):
                        verdict["passed"] = passed
                        assert job.execute_in_process(instance=instance, partition_key=today, run_config=QUIET).success
                        stored = time.monotonic()
                        arrived = wait_for(receiver, len(latencies) + 1, word)
                        latencies.append(arrived - stored)
                        print(f"cycle {cycle + 1}: {word:<8} {arrived - stored:5.1f} s after the verdict", flush=True)
                time.sleep(70)  # one more tick: nothing more may arrive
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(30)
    notices = len(receiver.received)
    print(
        f"{args.cycles} incident(s): {notices} notice(s) received (expected {2 * args.cycles}); latency "
        f"median {statistics.median(latencies):.1f} s, max {max(latencies):.1f} s (goal: within 120 s)"
    )
    assert all("b3nchT0ken" not in text for _, text in receiver.received)


if __name__ == "__main__":
    main()
