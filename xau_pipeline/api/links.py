"""Where the HTTP API is served, from XAU_API_HOST / XAU_API_PORT, and the chart page URLs."""

from __future__ import annotations

import os
from urllib.parse import quote, urlencode

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# A server bound to every address is reached, on this machine, through loopback.
_WILDCARDS = {"0.0.0.0", "::", ""}


def api_host() -> str:
    return (os.environ.get("XAU_API_HOST") or DEFAULT_HOST).strip()


def api_port(text: str | None = None) -> int:
    """`text`, else XAU_API_PORT, else 8000, as a port number (ValueError if it is none)."""
    text = (text or os.environ.get("XAU_API_PORT") or str(DEFAULT_PORT)).strip()
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"XAU_API_PORT must be a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"XAU_API_PORT must be from 0 to 65535, got {port}")
    return port


def api_base_url() -> str:
    """http://host:port of the API as configured (a wildcard bind shown as 127.0.0.1)."""
    host = api_host()
    host = DEFAULT_HOST if host in _WILDCARDS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    try:
        port = api_port()
    except ValueError:
        port = DEFAULT_PORT
    return f"http://{host}:{port}"


def chart_url(symbol: str, timeframe: str) -> str:
    """The chart page of one series, e.g. http://127.0.0.1:8000/chart/H1?symbol=XAUUSD."""
    return f"{api_base_url()}/chart/{quote(timeframe)}?{urlencode({'symbol': symbol})}"
