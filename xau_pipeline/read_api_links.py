"""Where the read API is served, and the URLs of its chart pages (nothing heavy is imported here)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# A server bound to every address is reached, on this machine, through loopback.
_WILDCARDS = {"0.0.0.0", "::", ""}


def parse_port(text: str) -> int:
    """A port number from text (ValueError if it is none)."""
    try:
        port = int(text.strip())
    except ValueError:
        raise ValueError(f"must be a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"must be from 0 to 65535, got {port}")
    return port


def api_base_url(host: str, port: int) -> str:
    """http://host:port of the API (a wildcard bind shown as 127.0.0.1)."""
    host = DEFAULT_HOST if host in _WILDCARDS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def chart_url(base_url: str, symbol: str, timeframe: str) -> str:
    """The chart page of one series, e.g. http://127.0.0.1:8000/chart/H1?symbol=XAUUSD."""
    return f"{base_url}/chart/{quote(timeframe)}?{urlencode({'symbol': symbol})}"
