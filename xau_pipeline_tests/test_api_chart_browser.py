"""The chart page in headless Chromium (Debian's, driven by Playwright; nothing downloaded).

A week of M15 backfilled from the stand-in with a one-hour provider hole, plus one bar on a
Saturday (off-session). The default page (the newest 500 bars) must draw every stored candle,
the off-session one apart, and one marker per missing bar; the page loads nothing but itself and
the plotly.js the API serves. The screenshot is kept in test-artifacts/api-chart-m15.png.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from xau_pipeline.ingest import ingest
from xau_pipeline.market.bars import Bar
from xau_pipeline.market.symbols import Symbol
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.gaps import PROVIDER_EMPTY
from xau_pipeline.store.upsert import upsert_bars
from xau_pipeline.twelvedata.client import TwelveDataClient
from xau_pipeline_dev.testing import serving_in_thread
from xau_pipeline_tests.conftest import TEST_API_KEY
from xau_pipeline_tests.test_ui_browser import ARTIFACTS, chromium, open_browser, png_size

M15 = TIMEFRAMES_BY_NAME["M15"]
HOLE = (datetime(2024, 2, 7, 10, tzinfo=UTC), datetime(2024, 2, 7, 11, tzinfo=UTC))
SATURDAY_BAR = datetime(2024, 2, 10, 12, tzinfo=UTC)
SCREENSHOT = ARTIFACTS / "api-chart-m15.png"

TRACES = "() => document.getElementById('chart').data.map(t => ({type: t.type, name: t.name, x: t.x}))"
DRAWN = """() => ({
    candles: document.querySelectorAll('#chart .boxlayer .trace path').length,
    markers: document.querySelectorAll('#chart .scatterlayer .trace .points path').length,
    legend: Array.from(document.querySelectorAll('#chart .legendtext')).map(e => e.textContent),
})"""


@pytest.mark.browser
@pytest.mark.slow
def test_the_chart_draws_the_candles_and_marks_the_gaps(store, stand_in, tmp_path):
    chromium_path = chromium()
    from playwright.sync_api import sync_playwright

    stand_in.configure(holes=[HOLE], weekend_bars=False)  # CME hours: the one off-session bar is stored below
    report = ingest(
        TwelveDataClient(TEST_API_KEY, stand_in.url),
        store,
        Symbol("XAU/USD"),
        M15,
        datetime(2024, 2, 5, tzinfo=UTC),
        datetime(2024, 2, 10, tzinfo=UTC),
    )
    assert report.complete
    price = Decimal("2130.5")
    with store.engine.begin() as connection:
        upsert_bars(connection, "XAUUSD", "M15", [Bar(SATURDAY_BAR, price, price + 1, price - 1, price)])
    stored, _, _ = store.summary("XAUUSD", M15, datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    assert 400 < stored < 500  # all of them on the default page
    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)

    with serving_in_thread(store.url) as api, sync_playwright() as playwright:
        browser = open_browser(playwright, chromium_path, tmp_path / "chromium-profile")
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            requested: list[str] = []
            errors: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            response = page.goto(f"{api}/chart/M15")
            assert response is not None and response.status == 200
            page.wait_for_selector("#chart .main-svg")
            page.wait_for_function(
                "() => document.querySelectorAll('#chart .scatterlayer .trace .points path').length > 0"
            )
            traces = page.evaluate(TRACES)
            drawn = page.evaluate(DRAWN)
            summary = page.inner_text("#summary")
            page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()

    assert not errors, errors
    assert all(url.startswith(api) for url in requested), requested  # plotly.js from the API, no CDN
    assert [(t["type"], t["name"]) for t in traces] == [
        ("candlestick", f"bars ({stored - 1})"),
        ("candlestick", "off-session bars (1)"),
        ("scatter", f"missing: {PROVIDER_EMPTY} (4)"),
    ]
    assert [datetime.fromisoformat(x) for x in traces[1]["x"]] == [SATURDAY_BAR]
    assert [datetime.fromisoformat(x) for x in traces[2]["x"]] == [HOLE[0] + k * M15.bar for k in range(4)]
    # Drawn, not only handed to Plotly: one box per candle, one marker per missing bar.
    assert drawn["candles"] == stored and drawn["markers"] == 4
    assert drawn["legend"] == [t["name"] for t in traces]
    assert f"{stored} bars from 2024-02-05T00:00:00Z" in summary and "4 missing" in summary
    assert "1 off-session" in summary
    assert png_size(SCREENSHOT) == (1440, 900) and SCREENSHOT.stat().st_size > 30_000
