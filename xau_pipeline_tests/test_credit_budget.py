import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from xau_pipeline.clock import utc_now
from xau_pipeline.settings import Settings, SettingsError
from xau_pipeline.store.credit_budget import (
    LOST_OUTCOME,
    BudgetSettings,
    CreditBudget,
    CreditBudgetExhausted,
    credits_left,
)
from xau_pipeline.store.tables import api_calls

# These tests count credits or partitions of "today": keep them clear of a UTC midnight.
pytestmark = pytest.mark.usefixtures("away_from_midnight")

UTC = UTC


def budget(store, kind="backfill", **settings):
    return CreditBudget(store.engine, BudgetSettings(**settings), kind, run_id="run-1")


def take(b, n=1):
    return [b.acquire(1, "XAU/USD", "1h", None, None) for _ in range(n)]


def ledger(store):
    with store.engine.connect() as connection:
        return list(connection.execute(sa.select(api_calls).order_by(api_calls.c.id)))


def test_each_call_is_written_to_the_ledger_and_settled(store):
    b = budget(store)
    (ticket,) = take(b)
    b.settle(ticket, "ok: 24 bars", 1)
    (row,) = ledger(store)
    assert (row.kind, row.run_id, row.outcome, row.credits, row.interval) == (
        "backfill",
        "run-1",
        "ok: 24 bars",
        1,
        "1h",
    )
    assert store.credits_used_today(utc_now()) == {"backfill": (1, 1)}


@pytest.mark.slow  # waits about 3 s
def test_a_spent_minute_is_waited_out(store):
    """Three credits were used 58 s ago under a limit of 3: the next call waits about 3 s, not less."""
    with store.engine.begin() as connection:
        connection.execute(
            api_calls.insert(),
            [
                {
                    "at": datetime.now(UTC) - timedelta(seconds=58),
                    "credits": 1,
                    "kind": "schedule",
                    "symbol": "XAU/USD",
                    "interval": "1h",
                    "outcome": "ok",
                }
                for _ in range(3)
            ],
        )
    pauses = []
    b = CreditBudget(
        store.engine,
        BudgetSettings(per_minute=3, scheduled_symbols=0),
        "backfill",
        sleep=lambda s: (pauses.append(s), time.sleep(s)),
    )
    began = time.monotonic()
    take(b)
    assert 2 < time.monotonic() - began < 6
    assert pauses and 2 < sum(pauses) < 6


def test_backfills_leave_the_schedules_their_share(store):
    """800 a day with 20 % kept: backfill and repair together stop at 640, schedules go on to 800 (here 10, 2 kept)."""
    settings = {"per_minute": 100, "per_day": 10, "schedule_share": 0.2, "repair_share": 0.5}
    take(budget(store, "backfill", **settings), 5)
    take(budget(store, "repair", **settings), 3)
    with pytest.raises(CreditBudgetExhausted, match="backfill share.*resets at"):
        take(budget(store, "backfill", **settings))
    take(budget(store, "schedule", **settings), 2)
    with pytest.raises(CreditBudgetExhausted, match="schedule share") as info:
        take(budget(store, "schedule", **settings))
    assert info.value.resets_at.time() == datetime.min.time() and info.value.resets_at > datetime.now(UTC)
    assert len(ledger(store)) == 10


def test_yesterdays_credits_do_not_count(store):
    with store.engine.begin() as connection:
        connection.execute(
            api_calls.insert(),
            [
                {
                    "at": datetime.now(UTC) - timedelta(days=1, minutes=1),
                    "credits": 5,
                    "kind": "backfill",
                    "symbol": "XAU/USD",
                    "interval": "1h",
                    "outcome": "ok",
                }
            ],
        )
    take(budget(store, per_day=5, schedule_share=0), 5)


@pytest.mark.parametrize(
    ("env", "error"),
    [({"TWELVE_DATA_CREDITS_PER_MINUTE": "x"}, "bad credit"), ({"XAU_SCHEDULE_CREDIT_SHARE": "1.5"}, "out of range")],
)
def test_bad_settings_are_refused(env, error):
    with pytest.raises(SettingsError, match=error) as info:
        Settings.from_env(env)
    assert set(env) <= set(info.value.variables)


@pytest.mark.parametrize(
    ("used", "left"),
    [
        ({}, {"schedule": 100, "backfill": 80, "repair": 10}),
        ({"backfill": 75}, {"schedule": 25, "backfill": 5, "repair": 5}),
        ({"repair": 10}, {"schedule": 90, "backfill": 70, "repair": 0}),
        ({"schedule": 30, "backfill": 70}, {"schedule": 0, "backfill": 0, "repair": 0}),
    ],
)
def test_credits_left_keeps_the_schedules_reserve_and_the_repair_cap(used, left):
    """One rule for the budget, `xau-pipeline credits`, doctor and the repair sensor."""
    assert credits_left(BudgetSettings(per_day=100, schedule_share=0.2, repair_share=0.1), used) == left


def test_a_repair_share_above_zero_allows_at_least_one_credit():
    assert BudgetSettings(per_day=5, repair_share=0.1).repair_cap == 1
    assert BudgetSettings(per_day=5, repair_share=0).repair_cap == 0


def test_unknown_kind_is_refused(store):
    with pytest.raises(ValueError, match="schedule, backfill, repair"):
        budget(store, "adhoc")


def test_repairs_stop_at_their_own_cap(store):
    settings = {"per_minute": 100, "per_day": 20, "schedule_share": 0.2, "repair_share": 0.1}
    take(budget(store, "repair", **settings), 2)
    with pytest.raises(CreditBudgetExhausted, match="repairs capped at 2"):
        take(budget(store, "repair", **settings))
    take(budget(store, "backfill", **settings), 3)


def test_a_pending_row_of_a_dead_process_is_settled_as_lost_with_its_credit(store):
    live, dead = take(budget(store), 2)
    with store.engine.begin() as connection:  # `dead` was taken by a backend that no longer exists
        connection.execute(api_calls.update().where(api_calls.c.id == dead).values(backend_pid=2_000_000_000))
    assert store.settle_abandoned_calls() == 1
    rows = {row.id: row for row in ledger(store)}
    assert (rows[dead].outcome, rows[dead].credits) == (LOST_OUTCOME, 1)
    assert rows[live].outcome == "pending"  # its backend (this process's pooled connection) lives
    assert store.settle_abandoned_calls() == 0
