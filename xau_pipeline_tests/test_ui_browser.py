"""The Dagster UI in a real browser.

`dagster dev` runs against the Twelve Data stand-in and this test run's own database; headless
Chromium (Debian's `chromium`, driven by Playwright, which downloads no browser) checks that
the asset graph shows the four candle assets and their checks; a partition backfill is launched
the way the UI launches one (its GraphQL API) over two days, one of them with a hole the provider
never fills, and once it has finished its check results are read back through the UI's GraphQL
API (one result per check for the range, failed for no_gaps, and each day's own evaluation), and
the check's Partitions tab, in the browser, counts the backfilled days as one passed and one failed
(the holed day); a one-day run of each day then supersedes them. Screenshots of the asset page with
its check results (test-artifacts/ui-asset-checks.png), of the check's Partitions tab after the
backfill (ui-check-partitions-after-backfill.png) and of a check's page (ui-check-partitions.png)
are kept.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import requests

from xau_pipeline_tests.check_statuses import CHECK_PARTITION_STATUSES, statuses_by_check
from xau_pipeline_tests.conftest import TEST_API_KEY
from xau_pipeline_tests.launch_graphql import BACKFILL_STATUS, LAUNCH_BACKFILL, LAUNCH_RUN

# Starts the Dagster webserver and drives Chromium against it.
pytestmark = [pytest.mark.browser, pytest.mark.process, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
DAGSTER = Path(sys.executable).parent / "dagster"
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOT = ARTIFACTS / "ui-asset-checks.png"
GRAPH_SCREENSHOT = ARTIFACTS / "ui-asset-graph.png"
CHECK_SCREENSHOT = ARTIFACTS / "ui-check-partitions.png"
BACKFILL_PARTITIONS_SCREENSHOT = ARTIFACTS / "ui-check-partitions-after-backfill.png"

# As root, on a machine with no internet: no sandbox, no GPU, and none of Chromium's own
# background connections (they would be refused, many at a time).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BASE_CHECKS = {"no_gaps", "ohlc_valid", "quarantine_empty", "fresh"}
CHECKS = {
    "candles_m15": BASE_CHECKS,
    "candles_h1": BASE_CHECKS | {"consistent_with_m15"},
    "candles_h4": BASE_CHECKS | {"consistent_with_m15"},
    "candles_d1": BASE_CHECKS | {"consistent_with_m15"},
}
BACKFILLED = ("candles_h1", "candles_m15")
# The provider never has the bars of this hour of the backfill's last day: that day's no_gaps fails.
HOLE_HOURS = (10, 11)
HISTORY_START = "2016-01-01"
# The asset's Partitions page with 3,650+ partitions must open within this (measured: see the output).
PARTITIONS_PAGE_SECONDS = 20
STARTUP_TIMEOUT = 60
BACKFILL_TIMEOUT = 150
TERMINAL_BACKFILL = {"COMPLETED_SUCCESS", "COMPLETED_FAILED", "COMPLETED", "FAILED", "CANCELED"}

INSTANCE_YAML = """\
telemetry:
  enabled: false
# Dequeue queued runs every second instead of every five: the test waits for them.
run_queue:
  dequeue_interval_seconds: 1
"""


def open_browser(playwright, chromium_path: str, profile: Path):
    """Headless Chromium on a fresh, empty profile, with this project's flags and window size."""
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=chromium_path,
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1440, "height": 900},
    )


def chromium() -> str:
    """Debian's Chromium; a missing browser fails the test, it never skips it."""
    path = os.environ.get("XAU_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            "Chromium is not installed: the browser test needs Debian's chromium package "
            "(apt-get update && apt-get install -y --no-install-recommends chromium; .ci/run does this), "
            f"or set XAU_CHROMIUM to its path (XAU_CHROMIUM={os.environ.get('XAU_CHROMIUM', '')!r})",
            pytrace=False,
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the Python package playwright is missing: pip install -e '.[test]'", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backfill_days(today: date) -> tuple[str, str]:
    """The two most recent consecutive weekdays, both before today (closed UTC days)."""
    day = today - timedelta(days=1)
    while day.weekday() >= 5 or (day - timedelta(days=1)).weekday() >= 5:
        day -= timedelta(days=1)
    return (day - timedelta(days=1)).isoformat(), day.isoformat()


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


class Dagster:
    """`dagster dev` in its own process group, and its GraphQL API."""

    def __init__(self, home: Path, workspace: Path, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "dagster-dev.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(DAGSTER), "dev", "-h", "127.0.0.1", "-p", str(self.port), "-w", str(workspace)],
            cwd=home,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def graphql(self, query: str, **variables) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_until_loaded(self) -> None:
        """Until the webserver answers and the code location has loaded."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = "no answer yet"
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"dagster dev exited ({self.process.returncode}):\n{self.log_tail()}"
            try:
                data = self.graphql(
                    "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus"
                    " locationOrLoadError { __typename ... on PythonError { message } } } } } }"
                )
            except (requests.RequestException, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                entries = data["workspaceOrError"].get("locationEntries") or []
                last = repr(entries)
                for entry in entries:
                    loaded = entry["locationOrLoadError"] or {}
                    assert loaded.get("__typename") != "PythonError", (
                        f"the code location failed to load: {loaded['message']}"
                    )
                    if entry["loadStatus"] == "LOADED" and loaded.get("__typename") == "RepositoryLocation":
                        return
            time.sleep(0.5)
        pytest.fail(
            f"dagster dev did not load the code location within {STARTUP_TIMEOUT} s ({last}):\n{self.log_tail()}"
        )

    def launch_backfill(self, names, first: str, last: str, title: str) -> str:
        """A backfill as the UI's partition dialog launches it (launchPartitionBackfill with partitionsByAssets)."""
        launched = self.graphql(
            LAUNCH_BACKFILL,
            params={
                "partitionsByAssets": [
                    {"assetKey": {"path": ["xauusd", name]}, "partitions": {"range": {"start": first, "end": last}}}
                    for name in names
                ],
                "title": title,
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        return launched["backfillId"]

    def wait_for_backfill(self, backfill_id: str) -> list[dict]:
        """Until the backfill has finished; its runs, all of which succeeded."""
        deadline = time.monotonic() + BACKFILL_TIMEOUT
        status = backfill = None
        while time.monotonic() < deadline:
            backfill = self.graphql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            status = backfill["status"]
            if status in TERMINAL_BACKFILL:
                break
            assert self.process.poll() is None, self.log_tail()
            time.sleep(1)
        runs = self.graphql(BACKFILL_RUNS, id=backfill_id)["runsOrError"]["results"]
        assert status == "COMPLETED_SUCCESS", (status, backfill, runs, self.log_tail())
        assert runs and all(run["status"] == "SUCCESS" for run in runs), runs
        return runs

    def materialize_day(self, name: str, day: str) -> dict:
        """One partition in one run, as the UI's "Materialize" of one partition (and a schedule tick) runs it."""
        (location,) = self.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
        launched = self.graphql(
            LAUNCH_RUN,
            params={
                "selector": {
                    "repositoryLocationName": location["name"],
                    "repositoryName": "__repository__",
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [{"path": ["xauusd", name]}],
                },
                "mode": "default",
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + BACKFILL_TIMEOUT
        while time.monotonic() < deadline:
            run = self.graphql(RUN_STATUS, id=run_id)["runOrError"]
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                assert run["status"] == "SUCCESS", (run, self.log_tail())
                return run
            time.sleep(0.5)
        pytest.fail(f"run {run_id} did not finish within {BACKFILL_TIMEOUT} s:\n{self.log_tail()}")

    def check_executions(self, name: str, check: str, run_ids) -> list[dict]:
        executions = self.graphql(CHECK_EXECUTIONS, asset={"path": ["xauusd", name]}, check=check)
        return [e for e in executions["assetCheckExecutions"] if e["runId"] in run_ids]

    def partition_statuses(self, name: str) -> dict[str, dict[str, str]]:
        """{check: {partition key: status}} as the check's Partitions tab gets them (daily keys expanded)."""
        node = self.graphql(CHECK_PARTITION_STATUSES, asset={"path": ["xauusd", name]})["assetNodeOrError"]
        return statuses_by_check(node)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGINT)  # what Ctrl-C sends: dagster dev shuts its services down
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # anything left in the group, run workers included
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self._log.close()


BACKFILL_RUNS = """
query BackfillRuns($id: String!) {
  runsOrError(filter: { tags: [{ key: "dagster/backfill", value: $id }] }) {
    __typename
    ... on Runs { results { runId status startTime endTime } }
  }
}
"""
ASSET_CHECKS = """
{
  assetNodes {
    assetKey { path }
    assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
  }
}
"""
CHECK_EXECUTIONS = """
query Executions($asset: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $asset, checkName: $check, limit: 50) {
    runId status partition
    evaluation { success partition }
  }
}
"""
RUN_STATUS = """
query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runId status startTime endTime } } }
"""
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
# What the check's Partitions tab shows (the same selection as the UI's own query).


def test_the_ui_shows_the_assets_and_checks_and_a_backfill_records_check_results(stand_in, store, tmp_path):
    started = time.monotonic()
    chromium_path = chromium()
    from playwright.sync_api import sync_playwright

    home = tmp_path / "dagster_home"
    (home / ".nux").mkdir(parents=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")  # no "join the community" dialog over the page
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: xau_pipeline.definitions\n"
        f"      working_directory: {REPO}\n"
    )
    today = datetime.now(UTC).date()
    first_day, last_day = backfill_days(today)
    env = {**os.environ}
    env.pop("XAU_SYMBOLS", None)
    env.update(
        DAGSTER_HOME=str(home),
        TWELVE_DATA_BASE_URL=stand_in.url,
        TWELVE_DATA_API_KEY=TEST_API_KEY,
        XAU_DATABASE_URL=store.url,
        TWELVE_DATA_CREDITS_PER_MINUTE="100000",
        TWELVE_DATA_CREDITS_PER_DAY="100000",
        # Ten years and more of daily partitions (3,650+), as a long history has: the asset page must
        # still open quickly (timed below).
        XAU_HISTORY_START=HISTORY_START,
        # No repair share: the gap-repair sensors (running by default) then launch nothing
        # beside the backfill under test.
        XAU_REPAIR_CREDIT_SHARE="0",
        # Nor a history catch-up judging days beside them.
        XAU_CATCH_UP="off",
    )
    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    hole_start = datetime.combine(date.fromisoformat(last_day), datetime.min.time(), UTC).replace(hour=HOLE_HOURS[0])
    stand_in.configure(holes=[(hole_start, hole_start.replace(hour=HOLE_HOURS[1]))])

    dagster = Dagster(home, workspace, env)
    try:
        dagster.wait_until_loaded()
        loaded_at = time.monotonic()

        # The backfill first: the backfill daemon picks it up on its next pass (every 30 s),
        # and the browser checks run meanwhile.
        backfill_id = dagster.launch_backfill(BACKFILLED, first_day, last_day, "browser test backfill")

        # The check names, as the UI's GraphQL API knows them.
        nodes = dagster.graphql(ASSET_CHECKS)["assetNodes"]
        known = {
            node["assetKey"]["path"][-1]: {check["name"] for check in node["assetChecksOrError"]["checks"]}
            for node in nodes
            if node["assetKey"]["path"][0] == "xauusd"
        }
        assert known == CHECKS

        with sync_playwright() as playwright:
            browser = open_browser(playwright, chromium_path, tmp_path / "chromium-profile")
            try:
                page = browser.new_page()
                page.set_default_timeout(30_000)

                # The asset graph: every asset node, with a link to its checks showing their count.
                page.goto(f"{dagster.url}/asset-groups/candles")
                for name, checks in CHECKS.items():
                    link = page.locator(f'a[href="/assets/xauusd/{name}?view=checks"]').first
                    link.wait_for(state="visible")
                    counts = re.search(r"(\d+)\s*/\s*(\d+)", link.inner_text())
                    assert counts and int(counts.group(2)) == len(checks), (name, link.inner_text())
                text = page.inner_text("body")
                for name in CHECKS:
                    assert name in text
                assert text.count("Asset checks") >= len(CHECKS), text[:2000]
                page.screenshot(path=str(GRAPH_SCREENSHOT))

                # Wait for the backfill and its runs: one ranged run.
                runs = dagster.wait_for_backfill(backfill_id)
                run_ids = {run["runId"] for run in runs}
                finished_at = time.monotonic()

                # The backfill's check results, as the UI's GraphQL API reports them: one result per
                # check for the range (no partition), failed for no_gaps only, and each day's own
                # evaluation, the holed day's no_gaps failed. `fresh` judges only runs over today:
                # skipped (Dagster plans even an unpartitioned check once per partition of a
                # backfill's run).
                for name in BACKFILLED:
                    for check in sorted(CHECKS[name]):
                        executions = dagster.check_executions(name, check, run_ids)
                        by_partition = {e["partition"]: e["status"] for e in executions}
                        if check == "fresh":
                            expected = {first_day: "SKIPPED", last_day: "SKIPPED"}
                        elif check == "no_gaps":
                            expected = {None: "FAILED", first_day: "SUCCEEDED", last_day: "FAILED"}
                        else:
                            expected = {None: "SUCCEEDED", first_day: "SUCCEEDED", last_day: "SUCCEEDED"}
                        assert by_partition == expected, (name, check, executions)
                # The check's Partitions tab counts each backfilled day as passed or failed.
                for name in BACKFILLED:
                    statuses = dagster.partition_statuses(name)
                    assert statuses["no_gaps"].get(first_day) == "SUCCEEDED", (name, statuses)
                    assert statuses["no_gaps"].get(last_day) == "FAILED", (name, statuses)
                    for check in sorted(CHECKS[name] - {"no_gaps", "fresh"}):
                        assert statuses[check].get(first_day) == statuses[check].get(last_day) == "SUCCEEDED", (
                            name,
                            check,
                            statuses,
                        )
                page.goto(f"{dagster.url}/assets/xauusd/candles_m15?view=checks&checkDetail=no_gaps")
                # The check's own tabs (Overview, Execution history, ..., Partitions), not the asset's.
                check_tabs = page.get_by_role("tablist").filter(has=page.get_by_role("tab", name="Execution history"))
                check_tabs.get_by_role("tab", name="Partitions").click()
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(BACKFILL_PARTITIONS_SCREENSHOT))
                page.get_by_text(re.compile(r"Passed \(\d+\)")).first.wait_for(state="visible")
                tab = page.inner_text("body")
                # Each status filter reads "<status> (<count>)", on one line or two ("Execution Failed" is another).
                counts = {word: re.search(rf"(?:^|\n){word}\s*\((\d+)\)", tab) for word in ("Passed", "Failed")}
                assert counts["Passed"] and counts["Failed"], tab[:3000]
                # The backfilled days: the first passed, the holed one failed (their statuses are asserted
                # day by day above). A schedule tick during the test (the M15 schedule runs at :01, :16,
                # :31 and :46) may have judged today too: passed, so "Passed" counts at least the first day.
                assert int(counts["Failed"].group(1)) == 1 and int(counts["Passed"].group(1)) >= 1, tab[:3000]

                # Each day alone (as a schedule tick runs it): its results show in the check's partition
                # statuses, passed or failed, the holed day (only) as failed.
                single_runs = [dagster.materialize_day("candles_m15", day) for day in (first_day, last_day)]
                statuses = dagster.partition_statuses("candles_m15")
                assert statuses["no_gaps"].get(first_day) == "SUCCEEDED", statuses
                assert statuses["no_gaps"].get(last_day) == "FAILED", statuses
                for check in ("ohlc_valid", "quarantine_empty"):
                    assert statuses[check].get(first_day) == statuses[check].get(last_day) == "SUCCEEDED", statuses
                assert statuses["fresh"] == {}, statuses  # not partitioned: no per-day statuses
                fresh = dagster.check_executions("candles_m15", "fresh", {run["runId"] for run in single_runs})
                assert [e["status"] for e in fresh] == ["SKIPPED", "SKIPPED"], fresh  # past days: not judged

                # The asset page's checks tab, showing those results.
                page.goto(f"{dagster.url}/assets/xauusd/candles_h1?view=checks")
                for check in sorted(CHECKS["candles_h1"]):
                    page.get_by_text(check, exact=True).first.wait_for(state="visible")
                page.get_by_text(re.compile("^(Passed|Succeeded)$")).first.wait_for(state="visible")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(SCREENSHOT))

                # The asset's partitions page over the whole history.
                opened = time.monotonic()
                page.goto(f"{dagster.url}/assets/xauusd/candles_m15?view=partitions")
                partitions = (today - date.fromisoformat(HISTORY_START)).days + 1
                page.get_by_text(re.compile(f"{partitions:,}|{partitions}")).first.wait_for(state="visible")
                page.wait_for_load_state("networkidle")
                partitions_page_seconds = time.monotonic() - opened
                assert partitions_page_seconds < PARTITIONS_PAGE_SECONDS, partitions_page_seconds

                # A check's own page, with its per-partition results.
                opened = time.monotonic()
                page.goto(f"{dagster.url}/assets/xauusd/candles_m15?view=checks&checkDetail=no_gaps")
                page.get_by_text(re.compile("^Failed$")).first.wait_for(state="visible")
                page.wait_for_load_state("networkidle")
                check_page_seconds = time.monotonic() - opened
                page.screenshot(path=str(CHECK_SCREENSHOT))
            finally:
                browser.close()
    finally:
        stopping = time.monotonic()
        dagster.stop()
        stopped_in = time.monotonic() - stopping

    assert SCREENSHOT.exists()
    width, height = png_size(SCREENSHOT)
    assert (width, height) == (1440, 900)
    assert SCREENSHOT.stat().st_size > 30_000  # a rendered page, not a blank one
    print(
        f"\nUI browser test: loaded in {loaded_at - started:.1f} s, backfill {first_day}..{last_day} done "
        f"{finished_at - loaded_at:.1f} s after launch (runs took {[round(r['endTime'] - r['startTime'], 1) for r in runs + single_runs]} s), check page in {check_page_seconds:.1f} s, partitions page ({HISTORY_START} on) in {partitions_page_seconds:.1f} s, {time.monotonic() - started:.1f} s in all (stopping dagster dev {stopped_in:.1f} s); screenshot {SCREENSHOT}"
    )
