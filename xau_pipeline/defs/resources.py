"""Dagster resources: the Twelve Data API and the candle store."""

from __future__ import annotations

import logging
from datetime import timedelta

import dagster as dg
from pydantic import Field

from xau_pipeline.settings import Settings
from xau_pipeline.store.candle_store import CandleStore
from xau_pipeline.store.credit_budget import BudgetSettings, CreditBudget
from xau_pipeline.twelvedata.client import DEFAULT_BASE_URL, DEFAULT_MAX_RESPONSE_BYTES, TwelveDataClient
from xau_pipeline.twelvedata.retry_policy import RetryPolicy

# The budget's defaults are Settings' (XAU_* and TWELVE_DATA_* unset).
DEFAULT_BUDGET = Settings(database_url="").budget


class TwelveDataResource(dg.ConfigurableResource):
    """Twelve Data REST API; the key travels only in the Authorization header."""

    api_key: str = Field(repr=False, description="Set from TWELVE_DATA_API_KEY; never pass it as run config.")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="TWELVE_DATA_BASE_URL, e.g. the local stand-in.")
    timeout_seconds: float = Field(
        default=30.0, description="Total deadline of one attempt: connect, send and the whole body."
    )
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES, description="Largest answer read (a full 5000-bar page is about 0.7 MB)."
    )
    max_attempts: int = Field(
        default=5, description="Attempts for transient failures (5xx, HTML, deadlines); unreadable answers get 2."
    )
    backoff_seconds: float = Field(default=2.0, description="First backoff between attempts; doubles each time.")
    credits_per_minute: int = Field(
        default=DEFAULT_BUDGET.per_minute, description="TWELVE_DATA_CREDITS_PER_MINUTE: the plan's minute limit."
    )
    credits_per_day: int = Field(
        default=DEFAULT_BUDGET.per_day, description="TWELVE_DATA_CREDITS_PER_DAY: the plan's daily limit."
    )
    schedule_credit_share: float = Field(
        default=DEFAULT_BUDGET.schedule_share,
        description="XAU_SCHEDULE_CREDIT_SHARE: share of each day's credits kept for the schedules.",
    )
    repair_credit_share: float = Field(
        default=DEFAULT_BUDGET.repair_share,
        description="XAU_REPAIR_CREDIT_SHARE: most of each day's credits gap repair may spend.",
    )

    scheduled_symbols: int = Field(
        default=1, description="XAU_SYMBOLS' count: each ticking schedule's call is kept room in the minute."
    )

    def budget_settings(self) -> BudgetSettings:
        return BudgetSettings(
            self.credits_per_minute,
            self.credits_per_day,
            self.schedule_credit_share,
            self.repair_credit_share,
            self.scheduled_symbols,
        )

    def client(
        self, log: logging.Logger | logging.LoggerAdapter | None = None, budget: CreditBudget | None = None
    ) -> TwelveDataClient:
        return TwelveDataClient(
            self.api_key,
            self.base_url,
            timeout_seconds=self.timeout_seconds,
            max_response_bytes=self.max_response_bytes,
            retry=RetryPolicy(max_attempts=self.max_attempts, first_pause=timedelta(seconds=self.backoff_seconds)),
            log=log,
            budget=budget,
        )


class CandleStoreResource(dg.ConfigurableResource):
    """PostgreSQL candle store at XAU_DATABASE_URL; its schema must be migrated (make run does it)."""

    database_url: str = Field(repr=False, description="SQLAlchemy URL of the candle database (XAU_DATABASE_URL).")

    def store(self) -> CandleStore:
        """The store, once its schema is known to be current (SchemaNotCurrentError otherwise)."""
        store = CandleStore(self.database_url)
        store.require_current_schema()
        return store


def default_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Resources wired to the settings; values that may hold a secret arrive as EnvVar (only the name is shown)."""
    budget = settings.budget
    return {
        "twelvedata": TwelveDataResource(
            api_key=dg.EnvVar("TWELVE_DATA_API_KEY"),
            base_url=settings.api_base_url,
            credits_per_minute=budget.per_minute,
            credits_per_day=budget.per_day,
            schedule_credit_share=budget.schedule_share,
            repair_credit_share=budget.repair_share,
            scheduled_symbols=len(settings.symbols),
        ),
        "candle_store": CandleStoreResource(
            database_url=dg.EnvVar("XAU_DATABASE_URL") if settings.database_url_from_env else settings.database_url
        ),
    }
