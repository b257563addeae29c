"""The fence around Dagster's internals (xau_pipeline/dagster_internals/): a guard per internal, which
says what to do when an upgrade moves or changes it, and the code location loading and running with
each one taken away in turn.

The guards look the internals up through the fence's registry: a moved name fails its guard with
its message, not the test file's collection with a bare ImportError."""

import inspect
import json
import os
import re
import subprocess
import sys

import dagster as dg
import pytest
import sqlalchemy as sa

from xau_pipeline.dagster_internals import registry
from xau_pipeline.dagster_internals.registry import INTERNALS, Internal, resolve, what_to_do
from xau_pipeline_dev.testing import temporary_database
from xau_pipeline_tests.conftest import REPO, TEST_API_KEY

BY_NAME = {internal.name: internal for internal in INTERNALS}


def parameters(value) -> list[str]:
    return list(inspect.signature(value).parameters)


def target_type(found) -> None:
    target = found(storage_id=42, run_id="run", timestamp=1.5)
    evaluation = dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("a"),
        check_name="c",
        passed=True,
        partition="2024-03-12",
        target_materialization_data=target,
    )
    stored = evaluation.target_materialization_data
    assert (stored.storage_id, stored.run_id, stored.timestamp) == (42, "run", 1.5)
    assert "target_materialization_data" in (dg.AssetCheckEvaluation.__doc__ or "")


def batch_metadata(found) -> None:
    marks = found("batch", True)
    assert (marks.id, marks.is_end) == ("batch", True)


def partition_key_filter(found) -> None:
    assert found(key="2024-03-13").key == "2024-03-13"


def batch_id(found) -> None:
    assert isinstance(found(), str) and found() != found()


def from_step(found) -> None:
    assert parameters(found)[:5] == ["event_type", "step_context", "event_specific_data", "message", "batch_metadata"]


def step_events(found) -> None:
    raise AssertionError("checked on a live step: test_the_step_events_are_what_log_event_appends_to")


def table(columns: set[str]):
    def check(found) -> None:
        assert isinstance(found, sa.Table) and columns <= set(found.c.keys()), sorted(found.c.keys())

    return check


def event_to_row(found) -> None:
    assert parameters(found) == ["self", "event"]


def index_transaction(found) -> None:
    assert parameters(found) == ["self"]


def store_check_event(found) -> None:
    assert parameters(found) == ["self", "event", "event_id"]


STORAGE_ATTRIBUTES = {
    "postgres_url",
    "should_autocreate_tables",
    "_inst_data",
    "_run_storage",
    "_event_log_storage",
    "_schedule_storage",
}


def storage_init(found) -> None:
    """What the parent's __init__ sets is what the pooled storage sets or overrides (inst_data and the three storages)."""
    assert set(re.findall(r"self\.(\w+) =", inspect.getsource(found))) == STORAGE_ATTRIBUTES


def config_reader(found) -> None:
    assert parameters(found) == ["config_value"]


SHAPES = {
    registry.TARGET_TYPE: target_type,
    registry.BATCH_METADATA: batch_metadata,
    registry.BATCH_ID: batch_id,
    registry.FROM_STEP: from_step,
    registry.STEP_EVENTS: step_events,
    registry.EVENTS_TABLE: table(
        {"id", "run_id", "event", "dagster_event_type", "timestamp", "asset_key", "partition"}
    ),
    registry.EXECUTIONS_TABLE: table(
        {
            "id",
            "asset_key",
            "check_name",
            "run_id",
            "partition",
            "execution_status",
            "evaluation_event",
            "evaluation_event_timestamp",
            "evaluation_event_storage_id",
            "materialization_event_storage_id",
        }
    ),
    registry.EVENT_TO_ROW: event_to_row,
    registry.INDEX_TRANSACTION: index_transaction,
    registry.STORE_CHECK_EVENT: store_check_event,
    registry.STORAGE_INIT: storage_init,
    registry.PG_CONFIG: config_reader,
    registry.PG_TOKEN: config_reader,
    registry.PARTITION_KEY_FILTER: partition_key_filter,
}


def test_every_internal_has_a_guard():
    assert set(SHAPES) == set(INTERNALS)


@pytest.mark.parametrize("internal", [i for i in INTERNALS if not i.instance_attribute], ids=lambda i: i.name)
def test_the_internal_is_where_and_what_the_fence_expects(internal: Internal):
    found = resolve(internal)
    assert found is not None, what_to_do(internal)
    try:
        SHAPES[internal](found)
    except (AssertionError, TypeError, ValueError) as exc:
        raise AssertionError(f"{what_to_do(internal)} ({exc})") from None


def test_the_step_events_are_what_log_event_appends_to():
    seen = []

    @dg.asset
    def probe(context: dg.AssetExecutionContext) -> None:
        events = resolve(registry.STEP_EVENTS, context.op_execution_context)
        before = list(events) if isinstance(events, list) else None
        context.log_event(dg.AssetObservation("probe"))
        seen.append((before, events))

    assert dg.materialize([probe]).success
    ((before, events),) = seen
    message = what_to_do(registry.STEP_EVENTS)
    assert isinstance(events, list), message
    assert len(events) == len(before) + 1 and events[-1].event_type == dg.DagsterEventType.ASSET_OBSERVATION, message


@pytest.mark.slow
@pytest.mark.process
def test_with_each_internal_taken_away_the_code_location_loads_and_a_run_completes_on_the_public_path(
    database_url, store, stand_in
):
    """One process, a case per internal (and one with none taken away): a ranged M15 run on dagster.yaml's
    storage judges both days, with one warning line; batched in one transaction only with every internal."""
    with temporary_database(database_url, "xau_test_fence") as dagster_url:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "xau_pipeline_tests.fence_cases",
                dagster_url,
                store.url,
                stand_in.url,
                TEST_API_KEY,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-4000:]
    cases = {case["hidden"]: case for case in map(json.loads, done.stdout.splitlines())}
    assert set(cases) == {None, *BY_NAME}
    for hidden, case in cases.items():
        internal = BY_NAME.get(hidden) if hidden else None
        evaluation_side = internal in registry.EVALUATION_INTERNALS
        if internal in registry.ALERT_INTERNALS:  # not used by a run: the location loads, the run is as usual
            internal = None
        assert case["success"], case
        assert case["day_evaluations"] == ["2024-03-12", "2024-03-13"], case
        assert case["stored"] == case["evaluations"] > 0, case
        assert case["pooled_storage"] == (internal is None or evaluation_side), case
        assert (case["run_warnings"], case["storage_warnings"]) == (
            (0, 0) if internal is None else (1, 0) if evaluation_side else (0, 1)
        ), case
        assert case["transactions"] == (1 if internal is None else case["stored"]), case
        assert case["targeted"] == (0 if internal == registry.TARGET_TYPE else case["evaluations"]), case
