"""Dagster resources: the Twelve Data API and the candle store."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from xau_pipeline.credit_budget import BudgetSettings, CreditBudget
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.database import DEFAULT_DATABASE_URL
from xau_pipeline.twelvedata.client import DEFAULT_BASE_URL, TwelveDataClient


class TwelveDataResource(dg.ConfigurableResource):
    """Twelve Data REST API; the key travels only in the Authorization header."""

    api_key: str = Field(repr=False, description="Set from TWELVE_DATA_API_KEY; never pass it as run config.")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="TWELVE_DATA_BASE_URL, e.g. the local stand-in.")
    timeout_seconds: float = Field(default=30.0, description="Per-request timeout.")
    max_attempts: int = Field(default=5, description="Attempts for transient failures (5xx, HTML, timeouts).")
    backoff_seconds: float = Field(default=2.0, description="First backoff between attempts; doubles each time.")
    credits_per_minute: int = Field(default=8, description="TWELVE_DATA_CREDITS_PER_MINUTE: the plan's minute limit.")
    credits_per_day: int = Field(default=800, description="TWELVE_DATA_CREDITS_PER_DAY: the plan's daily limit.")
    schedule_credit_share: float = Field(
        default=0.2, description="XAU_SCHEDULE_CREDIT_SHARE: share of each day's credits kept for the schedules."
    )
    repair_credit_share: float = Field(
        default=0.1, description="XAU_REPAIR_CREDIT_SHARE: most of each day's credits gap repair may spend."
    )

    def budget_settings(self) -> BudgetSettings:
        return BudgetSettings(
            self.credits_per_minute, self.credits_per_day, self.schedule_credit_share, self.repair_credit_share
        )

    def client(self, log=None, budget: CreditBudget | None = None) -> TwelveDataClient:
        return TwelveDataClient(
            self.api_key,
            self.base_url,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            log=log,
            budget=budget,
        )


class CandleStoreResource(dg.ConfigurableResource):
    """PostgreSQL candle store at XAU_DATABASE_URL, migrated to the newest schema on first use."""

    database_url: str = Field(repr=False, description="SQLAlchemy URL of the candle database.")

    def store(self) -> CandleStore:
        return CandleStore(self.database_url)


def _env_or_default(name: str, default: str) -> str | dg.EnvVar:
    # EnvVar keeps the value out of the UI and run config; only its name is shown.
    return dg.EnvVar(name) if os.environ.get(name) else default


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources wired to the environment (see README: configuration)."""
    budget = BudgetSettings.from_env()
    return {
        "twelvedata": TwelveDataResource(
            api_key=dg.EnvVar("TWELVE_DATA_API_KEY"),
            base_url=os.environ.get("TWELVE_DATA_BASE_URL") or DEFAULT_BASE_URL,
            credits_per_minute=budget.per_minute,
            credits_per_day=budget.per_day,
            schedule_credit_share=budget.schedule_share,
            repair_credit_share=budget.repair_share,
        ),
        "candle_store": CandleStoreResource(database_url=_env_or_default("XAU_DATABASE_URL", DEFAULT_DATABASE_URL)),
    }
