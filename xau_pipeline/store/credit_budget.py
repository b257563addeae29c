"""One Twelve Data credit budget for every process that uses the key, kept in PostgreSQL.

Twelve Data limits credits per API key, not per process: 8 a minute and 800 a day on the free
plan, the day resetting at 00:00 UTC. Every call first takes its credits here, under a
transaction-scoped advisory lock, and is written to the `api_calls` ledger.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from xau_pipeline.clock import day_start, next_utc_midnight
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.store.errors import StoreUnavailableError
from xau_pipeline.store.tables import api_calls
from xau_pipeline.twelvedata.errors import TwelveDataError

KINDS = ("schedule", "backfill", "repair")
# Any constant shared by every xau_pipeline process.
BUDGET_LOCK_KEY = 0x7861755F637264  # "xau_crd"
# Counted over a sliding 61 s, not a calendar minute: then no calendar minute of any clock
# (Twelve Data's included, skewed or not, 1 s of latency allowed) sees more than the limit.
MINUTE_WINDOW = timedelta(seconds=61)
# A schedule's run calls the API within about a minute of its tick (launch, queue, worker start).
SCHEDULE_CALL_LATENCY = timedelta(seconds=60)

LOCK_BUDGET = sa.text("SELECT pg_advisory_xact_lock(:key)")
USAGE = sa.text(
    """
    WITH clock AS (
        SELECT clock_timestamp() AS now,
               date_trunc('day', clock_timestamp() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS day_start
    )
    SELECT
        clock.now,
        coalesce(sum(credits) FILTER (WHERE at > clock.now - :minute_window), 0) AS minute_used,
        min(at) FILTER (WHERE at > clock.now - :minute_window) AS minute_oldest,
        coalesce(sum(credits) FILTER (WHERE at >= clock.day_start), 0) AS day_used,
        coalesce(sum(credits) FILTER (WHERE at >= clock.day_start AND kind <> 'schedule'), 0) AS day_used_unscheduled,
        coalesce(sum(credits) FILTER (WHERE at >= clock.day_start AND kind = 'repair'), 0) AS day_used_repair
    FROM clock
    LEFT JOIN api_calls ON at >= least(clock.day_start, clock.now - :minute_window)
    GROUP BY clock.now
    """
)
RUN_CREDITS = sa.text("SELECT coalesce(sum(credits), 0) FROM api_calls WHERE run_id = :run_id AND interval = :interval")
USAGE_BY_KIND = sa.text(
    """
    SELECT kind, coalesce(sum(credits), 0) AS credits, count(*) AS calls
    FROM api_calls
    WHERE at >= :day_start AND at < :day_start + interval '1 day'
    GROUP BY kind ORDER BY kind
    """
)


# A `pending` row is settled as lost once the backend that took it is gone (its process died), or
# after this long in any case (no call lasts it: every attempt has a total deadline).
ABANDONED_AFTER = timedelta(minutes=30)
LOST_OUTCOME = "lost: the process ended before the answer was stored (credit counted)"
SETTLE_ABANDONED = sa.text(
    """
    UPDATE api_calls SET outcome = :outcome
    WHERE outcome = 'pending'
      AND (at < clock_timestamp() - :after
           OR backend_pid IS NULL
           OR backend_pid NOT IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database()))
    RETURNING id
    """
)


def settle_call(connection: sa.Connection, ledger_id: int, outcome: str, credits: int) -> None:
    """Record how a call ended and what it really cost, in the caller's transaction."""
    connection.execute(
        api_calls.update().where(api_calls.c.id == ledger_id).values(outcome=outcome[:200], credits=credits)
    )


def settle_abandoned(connection: sa.Connection) -> int:
    """Settle as lost the `pending` rows of processes that died; their credits stay counted."""
    return len(list(connection.execute(SETTLE_ABANDONED, {"outcome": LOST_OUTCOME, "after": ABANDONED_AFTER})))


class CreditBudgetExhausted(TwelveDataError):
    """This kind of work has spent its share of today's credits."""

    def __init__(self, message: str, resets_at: datetime):
        super().__init__(message)
        self.resets_at = resets_at


@dataclass(frozen=True)
class BudgetSettings:
    """The plan's limits and the share of each day kept for the schedules."""

    per_minute: int = 8
    per_day: int = 800
    schedule_share: float = 0.2
    repair_share: float = 0.1
    # How many symbols' schedules tick together (each symbol: one call per timeframe ticking).
    scheduled_symbols: int = 1

    def __post_init__(self) -> None:
        if (
            self.per_minute < 1
            or self.per_day < 1
            or not 0 <= self.schedule_share < 1
            or not 0 <= self.repair_share <= 1 - self.schedule_share
            or self.scheduled_symbols < 0
        ):
            raise ValueError(
                f"credit budget settings out of range: {self.per_minute} a minute, {self.per_day} a day "
                f"(both at least 1), schedule share {self.schedule_share} (0 to below 1), repair share "
                f"{self.repair_share} (0 to 1 - schedule share)"
            )

    @property
    def reserved_for_schedules(self) -> int:
        return math.ceil(self.per_day * self.schedule_share)

    @property
    def repair_cap(self) -> int:
        """Most credits a day for repairs: at least one whenever repair is on at all."""
        if self.repair_share <= 0:
            return 0
        return max(1, math.floor(self.per_day * self.repair_share))


def _tick_minutes(cron: str) -> set[int]:
    return {int(minute) for minute in cron.split()[0].split(",")}


def schedule_minute_reserve(settings: BudgetSettings, now: datetime) -> tuple[int, datetime]:
    """Credits of the sliding minute that other work leaves free around a schedule tick.

    A credit taken at t counts until t + MINUTE_WINDOW, and a schedule's run calls within
    SCHEDULE_CALL_LATENCY of its tick: from a minute before each tick to a minute after it,
    backfills and repairs leave room for one call per series whose schedule ticks then, so a
    schedule never waits for a credit behind a catch-up. Returns the credits kept and until when.
    """
    first = (now - SCHEDULE_CALL_LATENCY).replace(second=0, microsecond=0)
    reserve, until = 0, now
    for minutes in range(4):
        tick = first + timedelta(minutes=minutes)
        ticking = sum(tick.minute in _tick_minutes(tf.schedule_cron) for tf in TIMEFRAMES)
        if ticking and tick - MINUTE_WINDOW < now <= tick + SCHEDULE_CALL_LATENCY:
            reserve = max(reserve, ticking * settings.scheduled_symbols)
            until = max(until, tick + SCHEDULE_CALL_LATENCY)
    return min(reserve, settings.per_minute), until


def minute_limit(settings: BudgetSettings, kind: str, now: datetime) -> tuple[int, datetime]:
    """Most credits of the sliding minute that `kind` of work may bring the total to at `now`, and
    until when a lower limit holds (schedules: the plan's; other work: less the room kept for a tick)."""
    if kind == "schedule":
        return settings.per_minute, now
    reserve, until = schedule_minute_reserve(settings, now)
    return settings.per_minute - reserve, until


def credits_by_kind(usage: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """The credits of a day's (credits, calls) by kind of work (usage_today)."""
    return {kind: credits for kind, (credits, _calls) in usage.items()}


def credits_left(settings: BudgetSettings, used: Mapping[str, int]) -> dict[str, int]:
    """Credits each kind of work may still spend today, given the credits `used` today by kind.

    Schedules may spend the whole day; backfills and repairs leave the schedules' reserve; repairs
    also stop at their cap.
    """
    total = sum(used.values())
    left = max(settings.per_day - total, 0)
    unscheduled_left = max(settings.per_day - settings.reserved_for_schedules - (total - used.get("schedule", 0)), 0)
    repair_left = max(settings.repair_cap - used.get("repair", 0), 0)
    return {
        "schedule": left,
        "backfill": min(left, unscheduled_left),
        "repair": min(left, unscheduled_left, repair_left),
    }


class CreditBudget:
    """Takes credits for one kind of work (schedule, backfill or repair) on behalf of one run."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: BudgetSettings,
        kind: str,
        run_id: str | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        run_allotment: int | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown kind of API work {kind!r}: expected one of {', '.join(KINDS)}")
        self.engine = engine
        self.settings = settings
        self.kind = kind
        self.run_id = run_id
        self.sleep = sleep
        self.log = log or logging.getLogger(__name__)
        # A history catch-up run spends at most this many credits on this series; the next run goes on.
        self.run_allotment = run_allotment

    def acquire(
        self, credits: int, symbol: str, interval: str, window_start: datetime | None, window_end: datetime | None
    ) -> int:
        """Take `credits` now, waiting while this minute's are spent; returns the ledger id."""
        try:
            return self._acquire(credits, symbol, interval, window_start, window_end)
        except sa.exc.OperationalError as exc:
            raise StoreUnavailableError(
                f"the candle database was lost while taking a credit: {str(exc.orig).strip()}"
            ) from None

    def _acquire(
        self, credits: int, symbol: str, interval: str, window_start: datetime | None, window_end: datetime | None
    ) -> int:
        s = self.settings
        while True:
            with self.engine.begin() as connection:
                connection.execute(LOCK_BUDGET, {"key": BUDGET_LOCK_KEY})
                usage = connection.execute(USAGE, {"minute_window": MINUTE_WINDOW}).one()
                now = usage.now
                used = {
                    "schedule": usage.day_used - usage.day_used_unscheduled,
                    "backfill": usage.day_used_unscheduled - usage.day_used_repair,
                    "repair": usage.day_used_repair,
                }
                if self.run_allotment is not None:
                    spent = connection.execute(RUN_CREDITS, {"run_id": self.run_id, "interval": interval}).scalar_one()
                    if spent + credits > self.run_allotment:
                        raise CreditBudgetExhausted(
                            f"this catch-up run's allotment of {self.run_allotment} credit(s) for {interval} is spent; "
                            "the next catch-up run goes on from here",
                            now,
                        )
                if credits > credits_left(s, used)[self.kind]:
                    resets_at = next_utc_midnight(now)
                    raise CreditBudgetExhausted(
                        f"the {self.kind} share of today's Twelve Data credits is spent "
                        f"({usage.day_used} of {s.per_day} used today, {s.reserved_for_schedules} kept for schedules, "
                        f"repairs capped at {s.repair_cap}); "
                        f"it resets at {resets_at:%Y-%m-%d %H:%M} UTC",
                        resets_at,
                    )
                limit, reserve_until = minute_limit(s, self.kind, now)
                if usage.minute_used + credits <= limit:
                    return connection.execute(
                        api_calls.insert().values(backend_pid=sa.func.pg_backend_pid()).returning(api_calls.c.id),
                        {
                            "at": now,
                            "credits": credits,
                            "kind": self.kind,
                            "symbol": symbol,
                            "interval": interval,
                            "window_start": window_start,
                            "window_end": window_end,
                            "outcome": "pending",
                            "run_id": self.run_id,
                        },
                    ).scalar_one()
                # Until the oldest credit of the minute falls out, or the room kept for a schedule is released.
                waits = [reserve_until - now] if limit < s.per_minute else []
                if usage.minute_oldest is not None:
                    waits.append(usage.minute_oldest + MINUTE_WINDOW - now)
                pause = max(min(waits).total_seconds(), 0.05)
            kept = f" ({s.per_minute - limit} kept for a schedule tick)" if limit < s.per_minute else ""
            self.log.info(
                f"credit budget: {usage.minute_used} of {s.per_minute} credits used in the last minute{kept}; "
                f"waiting {pause:.1f} s"
            )
            self.sleep(pause)

    def settle(self, ledger_id: int, outcome: str, credits: int) -> None:
        """Record how the call ended and what it really cost (a transport failure costs nothing)."""
        try:
            with self.engine.begin() as connection:
                settle_call(connection, ledger_id, outcome, credits)
        except sa.exc.OperationalError as exc:
            raise StoreUnavailableError(
                f"the candle database was lost while settling a call: {str(exc.orig).strip()}"
            ) from None


LEDGER_CLOCK = sa.text("SELECT clock_timestamp()")


def ledger_usage(connection: sa.Connection) -> tuple[datetime, dict[str, tuple[int, int]]]:
    """The ledger's time (the database's clock, which stamps and gates every call) and usage_today of its day."""
    now = connection.execute(LEDGER_CLOCK).scalar_one()
    return now, usage_today(connection, now)


def usage_today(connection: sa.Connection, now: datetime) -> dict[str, tuple[int, int]]:
    """(credits, calls) by kind of work for the UTC day of `now`."""
    rows = connection.execute(USAGE_BY_KIND, {"day_start": day_start(now)})
    return {row.kind: (int(row.credits), int(row.calls)) for row in rows}


def calls_of_run(connection: sa.Connection, run_id: str, symbol: str, interval: str) -> list[sa.Row]:
    """The ledger rows of one run's calls for one series, oldest first."""
    query = (
        sa.select(
            api_calls.c.at, api_calls.c.window_start, api_calls.c.window_end, api_calls.c.credits, api_calls.c.outcome
        )
        .where(api_calls.c.run_id == run_id, api_calls.c.symbol == symbol, api_calls.c.interval == interval)
        .order_by(api_calls.c.id)
    )
    return list(connection.execute(query))
