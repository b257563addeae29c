"""Every error text of real Twelve Data answers (../shared/reference/twelvedata-evidence.md), classified.

Each is served by the stand-in over a real socket, as an HTTP status and as HTTP 200 with the error
in the body (as older clients assume); each rejected call is booked as one credit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from xau_pipeline.store.credit_budget import BudgetSettings, CreditBudget
from xau_pipeline.store.tables import api_calls
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline.twelvedata.errors import (
    AuthenticationError,
    DailyLimitError,
    MinuteLimitError,
    PlanNotAllowedError,
    UnknownSymbolError,
)
from xau_pipeline.twelvedata.retry_policy import RetryPolicy
from xau_pipeline_dev.twelvedata_standin import Fault
from xau_pipeline_tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.usefixtures("away_from_midnight")

START = datetime(2024, 3, 13, tzinfo=UTC)
END = START + timedelta(hours=4)

# (code, the text as captured, the error it must raise (None: an empty answer), a phrase the error must carry)
EVIDENCE = {
    "apikey": (
        401,
        "**apikey** parameter is incorrect or not specified. …",
        AuthenticationError,
        "TWELVE_DATA_API_KEY",
    ),
    "minute, being": (
        429,
        "You have run out of API credits for the current minute. 18 API credits were used, with the current "
        "limit being 8. …",
        MinuteLimitError,
        "per-minute",
    ),
    "minute, of": (
        429,
        "You have run out of API credits for the current minute. 18 API credits were used, with the current "
        "limit of 8.",
        MinuteLimitError,
        "per-minute",
    ),
    "day": (
        429,
        "You have run out of API credits for the day. 1249 API credits were used, with the current limit being 800",
        DailyLimitError,
        "resets at",
    ),
    "unknown symbol": (
        404,
        "**symbol** or **figi** parameter is missing or invalid…",
        UnknownSymbolError,
        "does not know the symbol 'XAU/USD'",
    ),
    "not in the plan": (
        404,
        "This symbol is available starting with the Grow or Venture plan…",
        PlanNotAllowedError,
        "needs the Grow or Venture plan",
    ),
    "no data": (
        400,
        "No data is available on the specified dates. Try setting different start/end dates.",
        None,
        "",
    ),
}


@pytest.mark.parametrize("error_status", ["http", "body200"])
@pytest.mark.parametrize("case", EVIDENCE)
def test_each_error_text_of_the_evidence_is_classified_and_costs_a_credit(stand_in, store, case, error_status):
    code, message, error, phrase = EVIDENCE[case]
    stand_in.configure(error_status=error_status)
    stand_in.push_fault(Fault("error", code=code, message=message))
    budget = CreditBudget(store.engine, BudgetSettings(per_minute=1000, per_day=100000), "backfill", run_id="r")
    client = TwelveDataClient(
        TEST_API_KEY,
        stand_in.url,
        budget=budget,
        sleep=lambda _: None,
        retry=RetryPolicy(max_minute_waits=0, first_pause=timedelta(seconds=0.01)),
    )
    if error is None:
        page = client.time_series("XAU/USD", "1h", START, END)
        assert (page.values, page.full) == ([], False)
    else:
        with pytest.raises(error, match=phrase) as info:
            client.time_series("XAU/USD", "1h", START, END)
        assert type(info.value) is error
    assert stand_in.time_series_calls() == 1  # failed at once: nothing retried
    with store.engine.connect() as connection:
        rows = list(connection.execute(sa.select(api_calls.c.credits, api_calls.c.outcome)))
    assert [credits for credits, _ in rows] == [1]
    outcome = rows[0][1]
    assert outcome == "ok: 0 bars" if error is None else outcome.startswith(error.__name__)
