"""The chart page: a Plotly candlestick figure with every missing expected bar marked.

All drawing is Plotly's; this module only chooses traces and colours. The page loads plotly.js
from the API itself (`/static/plotly-<version>.min.js`, the script the plotly package ships), so
it needs no internet.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from urllib.parse import quote

import plotly  # type: ignore[import-untyped]
import plotly.graph_objects as go  # type: ignore[import-untyped]

from xau_pipeline.interfaces.http.models import iso_utc
from xau_pipeline.store.gaps import NEVER_FETCHED, NOT_PUBLISHED, PROVIDER_EMPTY, GapReport

PLOTLY_JS_ROUTE = f"/static/plotly-{plotly.__version__}.min.js"
CHART_DIV_ID = "chart"
ON_SESSION = "bars"
OFF_SESSION = "off-session bars"
NOT_FINAL = "not final yet"
REASON_COLOURS = {NEVER_FETCHED: "#d62728", PROVIDER_EMPTY: "#ff7f0e", NOT_PUBLISHED: "#7f7f7f"}
# More markers than this would make a page of many megabytes; the newest are marked, and the page says so.
MAX_MARKERS = 20_000
REASON_SYMBOLS = {NEVER_FETCHED: "x", PROVIDER_EMPTY: "triangle-down", NOT_PUBLISHED: "circle-open"}


def missing_trace_name(reason: str, count: int) -> str:
    return f"missing: {reason} ({count})"


def _candles(rows: Sequence, name: str, up: str, down: str) -> go.Candlestick:
    return go.Candlestick(
        x=[row.timestamp for row in rows],
        open=[row.open for row in rows],
        high=[row.high for row in rows],
        low=[row.low for row in rows],
        close=[row.close for row in rows],
        name=f"{name} ({len(rows)})",
        increasing={"line": {"color": up}},
        decreasing={"line": {"color": down}},
    )


def figure(
    symbol: str,
    timeframe: str,
    rows: Sequence,
    off_session: set[datetime],
    report: GapReport | None,
    closures: Sequence[tuple[datetime, datetime]] = (),
) -> go.Figure:
    """Candles oldest first (on-session, off-session and not final yet apart), one marker trace per
    reason a bar is missing, the last price as a line; the market's closures left out of the time axis."""
    provisional = [row for row in rows if not getattr(row, "final", True)]
    final = [row for row in rows if getattr(row, "final", True)]
    on = [row for row in final if row.timestamp not in off_session]
    off = [row for row in final if row.timestamp in off_session]
    fig = go.Figure()
    fig.add_trace(_candles(on, ON_SESSION, "#26a69a", "#ef5350"))
    if off:
        fig.add_trace(_candles(off, OFF_SESSION, "#9e9e9e", "#616161"))
    if provisional:
        fig.add_trace(_candles(provisional, NOT_FINAL, "#ffb74d", "#ff9800"))
    if rows:
        last = rows[-1]
        state = "final" if getattr(last, "final", True) else "not final yet"
        fig.add_hline(
            y=float(last.close),
            line={"dash": "dot", "width": 1, "color": "#555"},
            annotation_text=f"last {last.close} ({state})",
            annotation_position="top left",
        )
    for trace in _missing_traces(rows, report.gaps[-MAX_MARKERS:] if report else []):
        fig.add_trace(trace)
    fig.update_layout(
        template="plotly_white",
        xaxis={
            "rangeslider": {"visible": False},
            "title": "bar open (UTC)",
            # Weekends, holidays and daily breaks take no width (no flat stretches).
            "rangebreaks": [{"bounds": [iso_utc(start), iso_utc(end)]} for start, end in closures],
        },
        yaxis={"title": "price", "tickformat": ".2f"},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
        hovermode="x",
    )
    return fig


def _missing_traces(rows: Sequence, gaps: Sequence) -> list[go.Scatter]:
    """One marker trace per reason a bar is missing. A missing bar is marked at the close of the stored
    bar before it (else after it), so it sits on the price line."""
    stamps = [row.timestamp for row in rows]
    closes = [row.close for row in rows]
    traces = []
    for reason in (NEVER_FETCHED, PROVIDER_EMPTY, NOT_PUBLISHED):
        slots = [gap.slot for gap in gaps if gap.reason == reason]
        if not slots:
            continue
        levels = []
        for slot in slots:
            i = _index_before(stamps, slot)
            levels.append(closes[i] if i >= 0 else (closes[0] if closes else 0))
        traces.append(
            go.Scatter(
                x=slots,
                y=levels,
                mode="markers",
                name=missing_trace_name(reason, len(slots)),
                marker={"color": REASON_COLOURS[reason], "symbol": REASON_SYMBOLS[reason], "size": 9},
                hovertemplate="%{x|%Y-%m-%d %H:%M} UTC<br>" + html.escape(reason) + "<extra>missing bar</extra>",
            )
        )
    return traces


def _index_before(stamps: Sequence[datetime], slot: datetime) -> int:
    """Index of the last stamp before `slot` (stamps ascending), -1 if none."""
    lo, hi = 0, len(stamps)
    while lo < hi:
        mid = (lo + hi) // 2
        if stamps[mid] < slot:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


def _summary(rows: Sequence, report: GapReport | None) -> tuple[str, str]:
    """The page's one-line summary: the bars shown, and the window's gaps."""
    if rows:
        shown = f"{len(rows)} bars from {iso_utc(rows[0].timestamp)} to {iso_utc(rows[-1].timestamp)}"
        not_final = sum(not getattr(row, "final", True) for row in rows)
        if not_final:
            shown += f" ({not_final} not final yet)"
    else:
        shown = "no candles stored in this window"
    if report is not None:
        counts = ", ".join(
            f"{reason} {report.count(reason)}" for reason in (NEVER_FETCHED, PROVIDER_EMPTY, NOT_PUBLISHED)
        )
        gaps = f"{report.expected} expected, {report.missing} missing ({counts}), {report.off_session} off-session"
        if report.missing > MAX_MARKERS:
            gaps += f"; the newest {MAX_MARKERS} missing bars are marked"
    else:
        gaps = "gaps not computed"
    return shown, gaps


def page(
    symbol: str,
    timeframe: str,
    rows: Sequence,
    off_session: set[datetime],
    report: GapReport | None,
    window: tuple[datetime, datetime],
    calendar_name: str,
    closures: Sequence[tuple[datetime, datetime]] = (),
) -> str:
    """The whole HTML page: a one-line summary, the figure, links to the same data as JSON."""
    fig = figure(symbol, timeframe, rows, off_session, report, closures)
    # A relative script URL, so the page also works behind a reverse proxy under a path prefix.
    plot = fig.to_html(
        full_html=False,
        include_plotlyjs=".." + PLOTLY_JS_ROUTE,
        div_id=CHART_DIV_ID,
        default_height="80vh",
        config={"responsive": True, "displaylogo": False},
    )
    start, end = (iso_utc(t) for t in window)
    shown, gaps = _summary(rows, report)
    query = f"symbol={quote(symbol)}&start={quote(start)}&end={quote(end)}"
    tf = quote(timeframe)
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{e(symbol)} {e(timeframe)} candles</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 12px 20px; color: #222; }}
  h1 {{ font-size: 1.2em; margin: 0 0 4px; }}
  p {{ margin: 2px 0; font-size: 0.9em; }}
</style>
</head>
<body>
<h1>{e(symbol)} {e(timeframe)}</h1>
<p id="summary">{e(shown)}; window {e(start)} to {e(end)} (calendar {e(calendar_name)}): <span id="gap-summary">{e(gaps)}</span>.</p>
<p>As data: <a href="../candles/{tf}?{e(query)}&amp;limit=5000">candles (JSON)</a>,
<a href="../candles/{tf}?{e(query)}&amp;format=csv">CSV</a>,
<a href="../candles/{tf}/gaps?{e(query)}">gaps</a>.</p>
{plot}
</body>
</html>
"""


def closures(sessions: Sequence[tuple[datetime, datetime]], bar: timedelta) -> list[tuple[datetime, datetime]]:
    """The stretches between sessions at least a bar long: the chart leaves them out of its time axis."""
    return [(close, following) for (_, close), (following, _) in pairwise(sessions) if following - close >= bar]
