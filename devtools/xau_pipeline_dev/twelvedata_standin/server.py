"""A local HTTP stand-in for the Twelve Data REST API (``/time_series``), errors and limits included."""

from __future__ import annotations

import dataclasses
import hmac
import json
import math
import socket
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from . import prices

UTC = UTC
EXCHANGE_TZ = ZoneInfo("America/New_York")

# Messages as the real API words them.
MSG_APIKEY = (
    "**apikey** parameter is incorrect or not specified. You can get your free API key instantly following this "
    "link: https://twelvedata.com/pricing. If you believe that everything is correct, you can contact us at "
    "https://twelvedata.com/contact/customer"
)
MSG_DAY_LIMIT = (
    "You have run out of API credits for the day. {used} API credits were used, with the current limit being "
    "{limit}. Wait for the next day or consider switching to a higher tier plan at https://twelvedata.com/pricing"
)
# Both wordings have been captured ("being 8" and, in 2026, "of 8"); refusals alternate between them.
MSG_MINUTE_LIMITS = (
    "You have run out of API credits for the current minute. {used} API credits were used, with the current limit "
    "being {limit}. Wait for the next minute or consider switching to a higher tier plan at "
    "https://twelvedata.com/pricing",
    "You have run out of API credits for the current minute. {used} API credits were used, with the current limit "
    "of {limit}. Wait for the next minute or consider switching to a higher tier plan at "
    "https://twelvedata.com/pricing",
)
MSG_SYMBOL = (
    "**symbol** or **figi** parameter is missing or invalid. Please provide a valid symbol according to API "
    "documentation: https://twelvedata.com/docs#reference-data"
)
# Only the start is captured (XAG/USD on the free plan, code 404); the rest is this stand-in's.
MSG_PLAN = (
    "This symbol is available starting with the {plans} plan. Consider upgrading your API key at "
    "https://twelvedata.com/pricing"
)
MSG_NO_DATA = "No data is available on the specified dates. Try setting different start/end dates."
VALID_INTERVALS = ("1min", "5min", "15min", "30min", "45min", "1h", "2h", "4h", "8h", "1day", "1week", "1month")
MSG_INTERVAL = "Invalid **interval** provided: {value}. Supported intervals: " + ", ".join(VALID_INTERVALS)

_META = {
    "XAU/USD": ("Gold Spot", "US Dollar"),
    "XAG/USD": ("Silver Spot", "US Dollar"),
}
# meta.type: XAU/USD's is "Precious Metal" since 2025-12 ("Physical Currency" before, and for FX).
_METALS = ("XAU/USD", "XAG/USD")
# The plan each gated symbol needs (XAG/USD: "Grow or Venture" on the free plan).
_GATED_PLANS = {"XAG/USD": "Grow or Venture"}
_HTML_ERROR = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1>"
    "</center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {502: "Bad Gateway", 520: "Web Server Returned an Unknown Error"}
FAULT_KINDS = ("html_502", "html_520", "bad_json", "error", "slow", "reset")
BEFORE_PUBLICATION = ("absent", "provisional")


def _default_symbols() -> dict[str, Decimal]:
    return {"XAU/USD": Decimal("2050"), "XAG/USD": Decimal("23")}


@dataclass
class StandInConfig:
    """Behaviour of a stand-in; every field can be changed at runtime with ``StandIn.configure``."""

    api_key: str = "demo-key"
    host: str = "127.0.0.1"
    port: int = 0
    symbols: dict[str, Decimal] = field(default_factory=_default_symbols)
    credits_per_minute: int | None = 8
    credits_per_day: int | None = 800
    error_status: str = "http"
    end_inclusive: bool = True
    # A 24/7 feed, as Twelve Data's forex/metals feed v2: bars outside CME metals hours (weekends,
    # the daily break) that move a little. False serves CME hours only.
    weekend_bars: bool = True
    # Symbols outside the key's plan (the free plan by default): answered 404 with the plan they need.
    plan_gated: tuple[str, ...] = ("XAG/USD",)
    holes: list[tuple[datetime, datetime]] = field(default_factory=list)
    revisions: dict[datetime, Decimal] = field(default_factory=dict)
    time_offset_seconds: float = 0.0
    delay_seconds: float = 0.0
    h4_phase_hours: int = 0
    # "utc" (4h at h4_phase_hours + 4k h, 1day at 00:00 UTC) or "new_york" (4h and 1day anchored at
    # 17:00 New York, moving an hour in UTC at each US DST switch; 1day bars then carry a time).
    bar_anchor: str = "utc"
    # Where a 1day bar opens when it is not where bar_anchor puts it: "utc" (00:00 UTC), "utc+10"
    # (00:00 UTC+10, i.e. 14:00 UTC, as GBP/USD in 2022) or "new_york" (17:00 New York). None: bar_anchor's.
    day_boundary: str | None = None
    # "date": a 1day bar carries a bare date (as real answers do, even with timezone=UTC): the UTC
    # date of its middle, which is its open date for a UTC day. "open": its open time.
    daily_stamp: str = "date"
    credit_headers: bool = True
    max_outputsize: int = 5000
    # Over REST "the typical delay after a candle closes is 0.3 to 2 minutes" (support article 5203307),
    # and "typical" is not a bound: each closed bar is published at its close plus a delay drawn per
    # (symbol, interval, open) from publication_delay_seconds, or for publication_late_share of the
    # bars from publication_late_seconds. (0.0, 0.0) with no late share: published at its close.
    publication_delay_seconds: tuple[float, float] = (18.0, 120.0)
    publication_late_share: float = 0.02
    publication_late_seconds: tuple[float, float] = (150.0, 420.0)
    publication_seed: int = 0
    # What is served for a closed bar before its publication (undocumented; both readings fit the
    # article): "absent" (the answer ends with the bar before it) or "provisional" (the bar with the
    # values the feed had the delay earlier, as if its last ticks were not in yet).
    before_publication: str = "absent"

    def __post_init__(self) -> None:
        if self.bar_anchor not in prices.ANCHORS:
            raise ValueError(f"bar_anchor must be one of {prices.ANCHORS}, not {self.bar_anchor!r}")
        if self.day_boundary is not None and self.day_boundary not in prices.DAY_BOUNDARIES:
            raise ValueError(f"day_boundary must be one of {prices.DAY_BOUNDARIES} or None, not {self.day_boundary!r}")
        if self.daily_stamp not in ("date", "open"):
            raise ValueError(f"daily_stamp must be 'date' or 'open', not {self.daily_stamp!r}")
        if not 0 <= self.h4_phase_hours < 4:
            raise ValueError(f"h4_phase_hours must be 0 to 3, not {self.h4_phase_hours!r}")
        self.plan_gated = tuple(self.plan_gated)
        if self.error_status not in ("http", "body200"):
            raise ValueError(f"error_status must be 'http' or 'body200', not {self.error_status!r}")
        for when in [t for hole in self.holes for t in hole] + list(self.revisions):
            if when.tzinfo is None:
                raise ValueError(f"naive datetime in holes/revisions: {when!r}; use UTC-aware datetimes")
        self.publication_delay_seconds = _delay_range("publication_delay_seconds", self.publication_delay_seconds)
        self.publication_late_seconds = _delay_range("publication_late_seconds", self.publication_late_seconds)
        if not 0.0 <= self.publication_late_share <= 1.0:
            raise ValueError(f"publication_late_share must be 0 to 1, not {self.publication_late_share!r}")
        self.publication_late_share = float(self.publication_late_share)
        if self.before_publication not in BEFORE_PUBLICATION:
            raise ValueError(f"before_publication must be one of {BEFORE_PUBLICATION}, not {self.before_publication!r}")

    def publication(self) -> prices.Publication:
        """The publication delays and what is served before, for ``prices.publish``."""
        return prices.Publication(
            typical=self.publication_delay_seconds,
            late_share=self.publication_late_share,
            late=self.publication_late_seconds,
            seed=self.publication_seed,
            provisional=self.before_publication == "provisional",
        )


def _delay_range(name: str, value: Any) -> tuple[float, float]:
    """``(min, max)`` seconds, 0 <= min <= max, from a pair of numbers."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of seconds (min, max), not {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
        raise ValueError(f"{name} must be (min, max) with 0 <= min <= max, not {value!r}")
    return (lo, hi)


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour, consumed by the next ``/time_series`` request."""

    kind: str
    status: int | None = None
    code: int | None = None
    message: str | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")


@dataclass(frozen=True)
class RequestRecord:
    """One request the stand-in received and what it answered."""

    at: datetime
    path: str
    params: dict[str, str]
    status: int
    code: int
    credits: int
    values: int

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (``at`` as an ISO string)."""
        return {**dataclasses.asdict(self), "at": self.at.isoformat()}


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False


class _ParamError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _epoch(when: datetime) -> int:
    return math.floor(when.timestamp())


def _series(cfg: StandInConfig, symbol: str) -> prices.Series:
    return prices.Series(
        symbol=symbol,
        level=cfg.symbols[symbol],
        holes=tuple((_epoch(a), _epoch(b)) for a, b in cfg.holes),
        revisions=tuple(sorted((_epoch(t), Decimal(d)) for t, d in cfg.revisions.items())),
        weekend_bars=cfg.weekend_bars,
    )


def anchor_of(cfg: StandInConfig, interval: str) -> str:
    """Where ``interval`` bars are anchored: the day boundary for 1day, bar_anchor otherwise."""
    if interval == "1day" and cfg.day_boundary is not None:
        return cfg.day_boundary
    return cfg.bar_anchor


def _find_symbol(cfg: StandInConfig, value: str) -> str | None:
    for symbol in cfg.symbols:
        if symbol.upper() == value.strip().upper():
            return symbol
    return None


def _parse_date(name: str, value: str, tz: ZoneInfo | timezone) -> tuple[int, bool]:
    """A ``start_date``/``end_date`` as (Unix seconds, whether a time of day was given)."""
    text = value.strip().replace("T", " ")
    for fmt, has_time in (("%Y-%m-%d %H:%M:%S", True), ("%Y-%m-%d %H:%M", True), ("%Y-%m-%d", False)):
        try:
            naive = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return _epoch(naive.replace(tzinfo=tz)), has_time
    raise _ParamError(400, f"Invalid **{name}** provided: {value}. Use the format YYYY-MM-DD or YYYY-MM-DD HH:MM:SS")


def _parse_timezone(value: str | None) -> ZoneInfo | timezone:
    # Twelve Data's default timezone is "Exchange"; the stand-in takes it as New York time.
    if value is None or value.strip() == "" or value.strip().lower() == "exchange":
        return EXCHANGE_TZ
    if value.strip().upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(value.strip())
    except (ValueError, KeyError, OSError):
        raise _ParamError(400, f"Invalid **timezone** provided: {value}. Use UTC, Exchange or an IANA name") from None


class StandIn:
    """A running Twelve Data stand-in: an HTTP server on a real socket plus a Python control API."""

    def __init__(self, config: StandInConfig | None = None) -> None:
        self._config = dataclasses.replace(config) if config is not None else StandInConfig()
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._log: list[RequestRecord] = []
        self._minute_used: dict[int, int] = {}
        self._day_used: dict[int, int] = {}
        self._minute_refusals = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> StandIn:
        """Start serving in a background thread (no-op if already started)."""
        if self._httpd is not None:
            return self
        httpd = _Server((self._config.host, self._config.port), _Handler)
        httpd.stand_in = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="twelvedata-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._httpd.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"

    @property
    def config(self) -> StandInConfig:
        """A copy of the current configuration."""
        with self._lock:
            return dataclasses.replace(self._config)

    def configure(self, **fields: Any) -> None:
        """Change configuration fields at runtime; an unknown field raises ``TypeError``."""
        with self._lock:
            self._config = dataclasses.replace(self._config, **fields)

    def push_fault(self, fault: Fault) -> None:
        """Queue a fault for the next ``/time_series`` request (FIFO)."""
        with self._lock:
            self._faults.append(fault)

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request received (control endpoints excluded)."""
        with self._lock:
            return list(self._log)

    def time_series_calls(self) -> int:
        """Number of ``/time_series`` requests received, whatever their outcome."""
        with self._lock:
            return sum(1 for r in self._log if r.path == "/time_series")

    def reset(self) -> None:
        """Clear the request log, credit counters and queued faults (the configuration stays)."""
        with self._lock:
            self._log.clear()
            self._minute_used.clear()
            self._day_used.clear()
            self._minute_refusals = 0
            self._faults.clear()

    def restore_defaults(self, **overrides: Any) -> None:
        """Every setting back to ``StandInConfig``'s default, then ``overrides``; and ``reset()``.

        The identity of the server (``api_key``, ``host``, ``port``) stays as it is: clients keep
        their key and URL. An unknown field, or one of those three, raises ``TypeError``.
        """
        kept = ("api_key", "host", "port")
        if clash := sorted(set(overrides) & set(kept)):
            raise TypeError(f"restore_defaults keeps {', '.join(kept)}; cannot override {', '.join(clash)}")
        with self._lock:
            identity = {name: getattr(self._config, name) for name in kept}
            self._config = StandInConfig(**identity, **overrides)
        self.reset()

    def now(self) -> datetime:
        """The stand-in's clock: real UTC now plus ``time_offset_seconds``."""
        with self._lock:
            offset = self._config.time_offset_seconds
        return datetime.now(UTC) + timedelta(seconds=offset)

    def bars(
        self, symbol: str, interval: str, start: datetime, end: datetime, *, final: bool = False
    ) -> list[dict[str, Any]]:
        """Closed bars opening in [start, end), as the server would serve them now, ascending.

        Ignores faults and limits; honours holes, revisions, weekend_bars, the clock and publication:
        a closed bar not yet published is left out, or has its provisional values. With ``final``,
        every closed bar with its final (published) values. ``datetime`` is the time a client reads
        off the bar (a bare date read as 00:00 UTC), ``opens`` its true open, ``published`` whether
        it is published at the stand-in's ``now()``.
        """
        cfg = self.config
        found = self._symbol(cfg, symbol, interval)
        now = self.now().timestamp()
        anchor = anchor_of(cfg, interval)
        first, stop = _widened(cfg, interval, _epoch(start), _epoch(end))
        series = _series(cfg, found)
        rows = prices.series_bars(series, interval, first or 0, stop, math.floor(now), cfg.h4_phase_hours, anchor)
        rows = _by_label(cfg, interval, anchor, rows, _epoch(start), _epoch(end))
        closed = [row for row in rows if prices.next_bar_open(interval, row[0], cfg.h4_phase_hours, anchor) <= now]
        served = prices.publish(
            series, interval, closed, now, cfg.publication(), cfg.h4_phase_hours, anchor, final=final
        )
        return [
            {
                "datetime": _served_time(t, interval, cfg, anchor),
                "opens": datetime.fromtimestamp(t, UTC),
                **{k: Decimal(prices.render_price(v)) for k, v in zip(("open", "high", "low", "close"), (o, h, lo, c))},
                "published": is_published,
            }
            for (t, o, h, lo, c), is_published in served
        ]

    def published_at(self, symbol: str, interval: str, open_time: datetime) -> datetime:
        """When the ``interval`` bar opening at ``open_time`` (its true open, ``opens`` in ``bars``)
        is or was published: its close plus its publication delay (UTC)."""
        cfg = self.config
        found = self._symbol(cfg, symbol, interval)
        if open_time.tzinfo is None:
            raise ValueError(f"naive open_time {open_time!r}; use a UTC-aware datetime")
        t = _epoch(open_time)
        anchor = anchor_of(cfg, interval)
        if prices.bar_open(interval, t, cfg.h4_phase_hours, anchor) != t or open_time.microsecond:
            raise ValueError(f"no {interval} bar opens at {open_time.isoformat()}")
        close = prices.next_bar_open(interval, t, cfg.h4_phase_hours, anchor)
        return datetime.fromtimestamp(close + cfg.publication().delay(found, interval, t), UTC)

    @staticmethod
    def _symbol(cfg: StandInConfig, symbol: str, interval: str) -> str:
        if interval not in prices.INTERVAL_SECONDS:
            raise ValueError(f"the stand-in serves {', '.join(prices.INTERVAL_SECONDS)}, not {interval!r}")
        found = _find_symbol(cfg, symbol)
        if found is None:
            raise KeyError(symbol)
        return found

    def _record(
        self, at: datetime, path: str, params: dict[str, str], reply: _Reply, code: int, credits: int, values: int = 0
    ) -> _Reply:
        shown = {k: ("***" if k.lower() == "apikey" else v) for k, v in params.items()}
        record = RequestRecord(at, path, shown, 0 if reply.reset else reply.status, code, credits, values)
        with self._lock:
            self._log.append(record)
        return reply

    def _error(self, cfg: StandInConfig, code: int, message: str, status: int | None = None) -> _Reply:
        if status is None:
            status = code if cfg.error_status == "http" else 200
        return _Reply(status, _json_bytes({"code": code, "message": message, "status": "error"}))

    def _charge(self, at: datetime, n: int) -> tuple[int, int, StandInConfig]:
        """Count ``n`` credits in the day and minute windows; return (day used, minute used, config)."""
        day, minute = at.date().toordinal(), math.floor(at.timestamp()) // 60
        with self._lock:
            self._day_used = {day: self._day_used.get(day, 0) + n}
            self._minute_used = {minute: self._minute_used.get(minute, 0) + n}
            return self._day_used[day], self._minute_used[minute], self._config

    def _credit_check(self, at: datetime, n: int) -> tuple[_Reply | None, int]:
        day_used, minute_used, cfg = self._charge(at, n)
        if cfg.credits_per_day is not None and day_used > cfg.credits_per_day:
            return self._error(cfg, 429, MSG_DAY_LIMIT.format(used=day_used, limit=cfg.credits_per_day)), minute_used
        if cfg.credits_per_minute is not None and minute_used > cfg.credits_per_minute:
            with self._lock:
                wording = MSG_MINUTE_LIMITS[self._minute_refusals % len(MSG_MINUTE_LIMITS)]
                self._minute_refusals += 1
            return self._error(cfg, 429, wording.format(used=minute_used, limit=cfg.credits_per_minute)), minute_used
        return None, minute_used

    def _authorized(self, cfg: StandInConfig, params: dict[str, str], authorization: str | None) -> bool:
        sent: list[str] = []
        if authorization:
            scheme, _, key = authorization.strip().partition(" ")
            if scheme.lower() == "apikey":
                sent.append(key.strip())
        if "apikey" in params:
            sent.append(params["apikey"])
        return any(hmac.compare_digest(k.encode(), cfg.api_key.encode()) for k in sent)

    def _handle_api(self, method: str, path: str, params: dict[str, str], authorization: str | None) -> _Reply:
        """Answer one request to the public API surface (logged in ``requests``)."""
        at = self.now()
        cfg = self.config
        if method != "GET" or path not in ("/time_series", "/api_usage"):
            reply = _Reply(404, _json_bytes({"code": 404, "message": f"Not found: {path}", "status": "error"}))
            return self._record(at, path, params, reply, 404, 0)
        if path == "/api_usage":
            return self._api_usage(at, cfg, params, authorization)
        return self._time_series(at, params, authorization)

    def _api_usage(self, at: datetime, cfg: StandInConfig, params: dict[str, str], auth: str | None) -> _Reply:
        if not self._authorized(cfg, params, auth):
            return self._record(at, "/api_usage", params, self._error(cfg, 401, MSG_APIKEY), 401, 0)
        refused, minute_used = self._credit_check(at, 1)
        if refused is not None:
            return self._record(at, "/api_usage", params, refused, 429, 1)
        body = {
            "timestamp": at.strftime("%Y-%m-%d %H:%M:%S"),
            "current_usage": minute_used,
            "plan_limit": cfg.credits_per_minute,
        }
        return self._record(at, "/api_usage", params, _Reply(200, _json_bytes(body)), 200, 1)

    def _time_series(self, at: datetime, params: dict[str, str], auth: str | None) -> _Reply:
        path = "/time_series"
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            delay = self._config.delay_seconds
        if delay > 0:
            time.sleep(delay)
        if fault is not None:
            if fault.kind in ("html_502", "html_520"):
                status = fault.status or int(fault.kind[-3:])
                html = _HTML_ERROR.format(status=status, reason=_REASONS.get(status, "Error"))
                reply = _Reply(status, html.encode(), "text/html")
                return self._record(at, path, params, reply, status, 0)
            if fault.kind == "bad_json":
                reply = _Reply(fault.status or 200, b'{"meta": {"symbol": "XAU/USD", "interval": "1h", "currency_b')
                return self._record(at, path, params, reply, reply.status, 0)
            if fault.kind == "reset":
                return self._record(at, path, params, _Reply(0, reset=True), 0, 0)
            if fault.kind == "error":
                cfg = self._charge(at, 1)[2]
                code = fault.code or 500
                reply = self._error(cfg, code, fault.message or "Internal server error", fault.status)
                return self._record(at, path, params, reply, code, 1)
            time.sleep(fault.seconds)
        cfg = self.config
        if not self._authorized(cfg, params, auth):
            return self._record(at, path, params, self._error(cfg, 401, MSG_APIKEY), 401, 0)
        n_symbols = max(1, len([s for s in params.get("symbol", "").split(",") if s.strip()]))
        refused, minute_used = self._credit_check(at, n_symbols)
        if refused is not None:
            return self._record(at, path, params, refused, 429, n_symbols)
        cfg = self.config
        try:
            body, count = self._time_series_body(cfg, params)
        except _ParamError as exc:
            return self._record(at, path, params, self._error(cfg, exc.code, exc.message), exc.code, n_symbols)
        headers = {}
        if cfg.credit_headers:
            headers["api-credits-used"] = str(minute_used)
            if cfg.credits_per_minute is not None:
                headers["api-credits-left"] = str(max(0, cfg.credits_per_minute - minute_used))
        reply = _Reply(200, _json_bytes(body), headers=headers)
        return self._record(at, path, params, reply, 200, n_symbols, count)

    def _time_series_body(self, cfg: StandInConfig, params: dict[str, str]) -> tuple[dict[str, Any], int]:
        raw_symbol = params.get("symbol", "")
        if "," in raw_symbol:
            raise _ParamError(400, "Batch requests (comma-separated symbols) are not supported by this stand-in")
        symbol = _find_symbol(cfg, raw_symbol) if raw_symbol.strip() else None
        if symbol is None:
            raise _ParamError(404, MSG_SYMBOL)
        if symbol in cfg.plan_gated:
            raise _ParamError(404, MSG_PLAN.format(plans=_GATED_PLANS.get(symbol, "Grow or Venture")))
        interval = params.get("interval", "")
        if interval not in VALID_INTERVALS:
            raise _ParamError(400, MSG_INTERVAL.format(value=interval))
        if interval not in prices.INTERVAL_SECONDS:
            raise _ParamError(
                400,
                f"Interval {interval} is not served by this Twelve Data stand-in "
                f"(it serves {', '.join(prices.INTERVAL_SECONDS)})",
            )
        outputsize: int | None = None
        if "outputsize" in params:
            try:
                outputsize = int(params["outputsize"])
            except ValueError:
                outputsize = -1
            if not 1 <= outputsize <= cfg.max_outputsize:
                raise _ParamError(
                    400,
                    f"Invalid **outputsize** provided: {params['outputsize']}. "
                    f"It must be between 1 and {cfg.max_outputsize}",
                )
        order = params.get("order", "desc").lower()
        if order not in ("asc", "desc"):
            raise _ParamError(400, f"Invalid **order** provided: {params['order']}. Supported values: asc, desc")
        tz = _parse_timezone(params.get("timezone"))
        start = end = None
        if params.get("start_date"):
            start, _ = _parse_date("start_date", params["start_date"], tz)
        if params.get("end_date"):
            end, has_time = _parse_date("end_date", params["end_date"], tz)
            # A date-only end_date is exclusive (as observed); a datetime one per configuration.
            if has_time and cfg.end_inclusive:
                end += 1
        dated = start is not None or end is not None
        count = outputsize or (cfg.max_outputsize if dated else 30)
        clock = self.now().timestamp()
        now = math.floor(clock)
        anchor = anchor_of(cfg, interval)
        stop = end if end is not None else now + 1
        wide_start, wide_stop = _widened(cfg, interval, start, stop)
        series = _series(cfg, symbol)
        publication = cfg.publication()
        # Room for the bars left out as not yet published (at most this many of the newest).
        hidden = (
            0 if publication.provisional else math.ceil(publication.longest / prices.INTERVAL_SECONDS[interval]) + 1
        )
        rows = prices.newest_bars(
            series, interval, wide_start, wide_stop, now, count + 2 + hidden, cfg.h4_phase_hours, anchor
        )
        rows = [
            bar for bar, _ in prices.publish(series, interval, rows, clock, publication, cfg.h4_phase_hours, anchor)
        ]
        rows = _by_label(cfg, interval, anchor, rows, start, stop)[-count:]
        if not rows:
            raise _ParamError(400, MSG_NO_DATA)
        if order == "desc":
            rows.reverse()
        base, quote = _META.get(symbol, tuple(symbol.split("/", 1)) if "/" in symbol else (symbol, ""))
        meta = {
            "symbol": symbol,
            "interval": interval,
            "currency_base": base,
            "currency_quote": quote,
            "type": "Precious Metal" if symbol in _METALS else "Physical Currency",
        }
        values = [
            {
                "datetime": _render_time(t, interval, tz, cfg, anchor),
                "open": prices.render_price(o),
                "high": prices.render_price(h),
                "low": prices.render_price(lo),
                "close": prices.render_price(c),
            }
            for t, o, h, lo, c in rows
        ]
        return {"meta": meta, "values": values, "status": "ok"}, len(values)

    def _handle_control(
        self, method: str, path: str, params: dict[str, str], authorization: str | None, body: bytes
    ) -> _Reply:
        """Answer a ``/__standin__/...`` control request (the API key required; no credits, not logged)."""
        if not self._authorized(self.config, params, authorization):
            return _Reply(401, _json_bytes({"code": 401, "message": MSG_APIKEY, "status": "error"}))
        try:
            if method == "GET" and path == "/__standin__/requests":
                return _Reply(200, _json_bytes([r.to_json() for r in self.requests]))
            if method == "GET" and path == "/__standin__/config":
                # The caller holds the key already; it is not echoed back.
                shown = {k: v for k, v in config_to_json(self.config).items() if k != "api_key"}
                return _Reply(200, _json_bytes(shown))
            if method == "POST" and path == "/__standin__/config":
                self.configure(**config_from_json(json.loads(body or b"{}")))
                return _Reply(200, _json_bytes({"status": "ok"}))
            if method == "POST" and path == "/__standin__/reset":
                self.reset()
                return _Reply(200, _json_bytes({"status": "ok"}))
            if method == "POST" and path == "/__standin__/fault":
                self.push_fault(Fault(**json.loads(body or b"{}")))
                return _Reply(200, _json_bytes({"status": "ok"}))
        except (TypeError, ValueError, InvalidOperation, AttributeError) as exc:
            return _Reply(400, _json_bytes({"status": "error", "message": f"{type(exc).__name__}: {exc}"}))
        return _Reply(404, _json_bytes({"status": "error", "message": f"unknown control endpoint {method} {path}"}))


def _day_label(t: int, cfg: StandInConfig, anchor: str) -> datetime:
    """The bare date of the 1day bar opening at ``t``: the UTC date of its middle, which is its open
    date for a UTC day. GBP/USD's bar opening 2022-03-04 14:00 UTC was dated 2022-03-05."""
    middle = (t + prices.next_bar_open("1day", t, cfg.h4_phase_hours, anchor)) // 2
    return datetime.fromtimestamp(middle, UTC).replace(hour=0, minute=0, second=0)


def _dated(cfg: StandInConfig, interval: str) -> bool:
    return interval == "1day" and cfg.daily_stamp == "date"


def _widened(cfg: StandInConfig, interval: str, lo: int | None, hi: int) -> tuple[int | None, int]:
    """The open times to look at for bars whose bare date lies in [lo, hi): a day either side."""
    if not _dated(cfg, interval):
        return lo, hi
    return (None if lo is None else lo - prices.DAY), hi + prices.DAY


def _by_label(
    cfg: StandInConfig, interval: str, anchor: str, rows: list[prices.Bar], lo: int | None, hi: int
) -> list[prices.Bar]:
    """Bare-dated bars are picked by their date, as if the provider filed them so (an assumption)."""
    if not _dated(cfg, interval):
        return rows
    labels = [_epoch(_day_label(row[0], cfg, anchor)) for row in rows]
    return [row for row, label in zip(rows, labels) if (lo is None or lo <= label) and label < hi]


def _served_time(t: int, interval: str, cfg: StandInConfig, anchor: str) -> datetime:
    if interval == "1day" and cfg.daily_stamp == "date":
        return _day_label(t, cfg, anchor)
    return datetime.fromtimestamp(t, UTC)


def _render_time(t: int, interval: str, tz: ZoneInfo | timezone, cfg: StandInConfig, anchor: str) -> str:
    if interval == "1day" and cfg.daily_stamp == "date":
        # A bare date, whatever the timezone asked (even UTC).
        return _day_label(t, cfg, anchor).strftime("%Y-%m-%d")
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S")


def _aware(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def config_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """Config fields from JSON: datetimes as ISO strings (naive = UTC), decimals as strings."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of config fields")
    out = dict(data)
    if "symbols" in out:
        out["symbols"] = {k: Decimal(str(v)) for k, v in out["symbols"].items()}
    if "holes" in out:
        out["holes"] = [(_aware(a), _aware(b)) for a, b in out["holes"]]
    if "revisions" in out:
        out["revisions"] = {_aware(k): Decimal(str(v)) for k, v in out["revisions"].items()}
    return out


def config_to_json(cfg: StandInConfig) -> dict[str, Any]:
    """The configuration as a JSON-ready dict (the inverse of ``config_from_json``)."""
    out = dataclasses.asdict(cfg)
    out["symbols"] = {k: str(v) for k, v in cfg.symbols.items()}
    out["holes"] = [[a.isoformat(), b.isoformat()] for a, b in cfg.holes]
    out["revisions"] = {k.isoformat(): str(v) for k, v in cfg.revisions.items()}
    out["plan_gated"] = list(cfg.plan_gated)
    out["publication_delay_seconds"] = list(cfg.publication_delay_seconds)
    out["publication_late_seconds"] = list(cfg.publication_late_seconds)
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    stand_in: StandIn

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            conns, self.connections = list(self.connections), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 120

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        stand_in = self.server.stand_in
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        authorization = self.headers.get("Authorization")
        if parts.path.startswith("/__standin__/"):
            reply = stand_in._handle_control(method, parts.path.rstrip("/"), params, authorization, body)
        else:
            reply = stand_in._handle_api(method, parts.path, params, authorization)
        if reply.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        self.send_response(reply.status)
        content_type = reply.content_type + ("; charset=utf-8" if reply.content_type == "text/html" else "")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")
