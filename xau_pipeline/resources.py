"""Dagster resources: the Twelve Data API and the candle store."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

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

    def client(self, log=None) -> TwelveDataClient:
        return TwelveDataClient(
            self.api_key,
            self.base_url,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            log=log,
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
    return {
        "twelvedata": TwelveDataResource(
            api_key=dg.EnvVar("TWELVE_DATA_API_KEY"),
            base_url=os.environ.get("TWELVE_DATA_BASE_URL") or DEFAULT_BASE_URL,
        ),
        "candle_store": CandleStoreResource(database_url=_env_or_default("XAU_DATABASE_URL", DEFAULT_DATABASE_URL)),
    }
