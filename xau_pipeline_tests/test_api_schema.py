"""Schemathesis: property-based requests to the running API, generated from its own OpenAPI schema.

A bounded run (MAX_EXAMPLES per operation) against a real server and database holding a few
weeks of candles. Every check schemathesis runs by default must pass: no server error, status
codes, content types, headers and bodies as the schema documents them, invalid input rejected
with a 4xx. One is left out: `positive_data_acceptance` (every schema-valid request answered
2xx), because some rules hold between parameters or need a calendar (start <= end, a window of
at most 3660 days, 2024-02-30 is no day), which OpenAPI cannot state; those requests get a
documented 400 with one line saying why, which test_api.py checks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from xau_pipeline.market.bars import Bar
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.timeframes import TIMEFRAMES
from xau_pipeline.store.upsert import upsert_bars
from xau_pipeline_dev.testing import serving_in_thread

MAX_EXAMPLES = 40
FIRST = datetime(2024, 1, 1, tzinfo=UTC)
LAST = datetime(2024, 1, 22, tzinfo=UTC)


@pytest.fixture(scope="module")
def served(database_url, session_store):
    with serving_in_thread(database_url) as url:
        yield url


@pytest.fixture
def api_schema(served, store):
    """Three weeks of every timeframe (every 50th expected bar left out), and the served schema."""
    cme = calendar("cme_gold")
    with store.engine.begin() as connection:
        for tf in TIMEFRAMES:
            price = Decimal("2050.125")
            bars = [
                Bar(slot, price, price + 2, price - 1, price + Decimal("0.5"), Decimal("3.25") if i % 3 else None)
                for i, slot in enumerate(cme.expected_slots(FIRST, LAST, tf.bar))
                if i % 50 != 7
            ]
            upsert_bars(connection, "XAUUSD", tf.name, bars)
    return schemathesis.openapi.from_url(f"{served}/openapi.json")


OPERATIONS = ("/candles/{timeframe}", "/candles/{timeframe}/gaps", "/chart/{timeframe}", "/health")


# Hypothesis directly (schemathesis's strategies), rather than the `schema.parametrize` pytest
# plugin, whose lazy fixture loader does not work with this pytest.
@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("path", OPERATIONS)
def test_the_api_keeps_to_its_schema(api_schema, path, mode):
    if path == "/health" and mode == GenerationMode.NEGATIVE:
        pytest.skip("/health takes no parameter: there is no invalid request to make")
    operation = api_schema[path]["GET"]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def check(case):
        case.call_and_validate(timeout=30, excluded_checks=[positive_data_acceptance])

    check()
