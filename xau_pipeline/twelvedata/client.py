"""HTTP client for Twelve Data's /time_series: one call at a time, every answer classified.

The client makes one call: the HTTP request under a total deadline and a size cap, the
classification of the answer, retries of what can pass, and the credit budget hook. Which
windows to ask for, and storing what comes back, is `ingest`'s business.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import urllib3

from xau_pipeline.clock import utc_now
from xau_pipeline.market.bars import Bar, Interval
from xau_pipeline.market.quarantine_rule import API_TIME_FORMAT, parse_values, screen
from xau_pipeline.redact import redact
from xau_pipeline.twelvedata.errors import (
    AuthenticationError,
    InvalidRequestError,
    MalformedAnswerError,
    RedirectRefusedError,
    TransientError,
    TwelveDataError,
    classify_error,
)
from xau_pipeline.twelvedata.retry_policy import RetryPolicy, with_retries
from xau_pipeline.twelvedata.windows import MAX_BARS_PER_CALL


class CreditBudget(Protocol):
    """What the client needs of a credit budget (store/credit_budget.py has the ledger's)."""

    def acquire(
        self, credits: int, symbol: str, interval: str, window_start: datetime | None, window_end: datetime | None
    ) -> int:
        """Take `credits` now (waiting while this minute's are spent); returns the ticket to settle."""
        ...

    def settle(self, ledger_id: int, outcome: str, credits: int) -> None:
        """Record how the call ended and what it really cost."""
        ...


DEFAULT_BASE_URL = "https://api.twelvedata.com"
NO_DATA_MESSAGE = "No data is available"
ONE_SECOND = timedelta(seconds=1)
# A bar is asked for only once it closed this long before we ask: the provider's clock may lag ours,
# and no bar is published sooner (0.3 min at the earliest). When it is final: publication.py.
CLOSE_MARGIN = timedelta(seconds=30)
# A full page of 5000 bars is about 0.7 MB of JSON; anything far beyond is not an answer to us.
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
DEFAULT_DEADLINE_SECONDS = 30.0
CHUNK_BYTES = 64 * 1024


logger = logging.getLogger(__name__)


@dataclass
class Page:
    """One answered call: the raw `values` (as sent), whether they filled outputsize, and, when the
    caller settles the budget itself, the ledger id of the paid attempt."""

    values: list[Any]
    full: bool
    ticket: int | None = None
    credits: int = 0
    attempts: int = 0

    @property
    def bars(self) -> list[Bar]:
        """The readable, valid bars (grid not checked: ingest does that, knowing the series)."""
        good, _rejected, _repeats = screen(parse_values(self.values)[0], None)
        return good


def _request_was_sent(exc: BaseException) -> bool:
    """Whether a failed request got as far as Twelve Data (a read timeout or a dropped answer),
    rather than failing to connect."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        return not isinstance(getattr(reason, "reason", reason), urllib3.exceptions.NewConnectionError)
    return True


def _api_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime(API_TIME_FORMAT)


@dataclass
class _Exchange:
    """One HTTP exchange run on a worker thread, so that the caller can give up at the deadline."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: BaseException | None = None
    too_large: bool = False
    response: requests.Response | None = None
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)


class TwelveDataClient:
    """Calls /time_series with the key in the Authorization header only, retrying what its
    `RetryPolicy` retries."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout_seconds: float = DEFAULT_DEADLINE_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        budget: CreditBudget | None = None,
    ):
        if not api_key:
            raise AuthenticationError(
                "No Twelve Data API key: set TWELVE_DATA_API_KEY (a free key: https://twelvedata.com/pricing)."
            )
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidRequestError(f"the Twelve Data base URL must be http:// or https://, got {base_url!r}")
        if timeout_seconds <= 0 or max_response_bytes < 1024:
            raise ValueError("timeout_seconds > 0 and max_response_bytes >= 1024 are required")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        # The total deadline of one attempt: connect, send and the whole body.
        self.timeout_seconds = timeout_seconds
        self.max_response_bytes = max_response_bytes
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.sleep = sleep
        self.log = log or logger
        self.budget = budget
        self.calls = 0
        self.credits = 0
        self._session = self._new_session()

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update({"Authorization": f"apikey {self._api_key}", "User-Agent": "xau-pipeline"})
        return session

    def __repr__(self) -> str:
        return f"TwelveDataClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    # -- one HTTP exchange, bounded in time and size ------------------------------------------

    def _exchange(self, params: dict[str, str]) -> _Exchange:
        """GET /time_series on a worker thread; the caller waits at most the deadline for all of it."""
        exchange = _Exchange()
        session = self._session
        deadline = self.timeout_seconds
        cap = self.max_response_bytes

        def work() -> None:
            try:
                response = session.get(
                    f"{self.base_url}/time_series",
                    params=params,
                    timeout=(min(10.0, deadline), deadline),
                    stream=True,
                    allow_redirects=False,
                )
                exchange.response = response
                exchange.status = response.status_code
                exchange.headers = {k.lower(): v for k, v in response.headers.items()}
                declared = response.headers.get("content-length", "")
                body = bytearray()
                if declared.isdigit() and int(declared) > cap:
                    exchange.too_large = True
                else:
                    while not exchange.cancelled.is_set():
                        chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
                        if not chunk:
                            break
                        body += chunk
                        if len(body) > cap:
                            exchange.too_large = True
                            break
                exchange.body = bytes(body)
                response.close()
            except BaseException as exc:  # handed to the caller, which classifies it
                exchange.error = exc
            finally:
                exchange.done.set()

        threading.Thread(target=work, name="twelvedata-call", daemon=True).start()
        if not exchange.done.wait(deadline):
            exchange.cancelled.set()
            self._abandon(exchange)
        return exchange

    def _abandon(self, exchange: _Exchange) -> None:
        """Cut an exchange that outlived its deadline, and never reuse its connection."""
        response = exchange.response
        sock = getattr(getattr(response.raw, "connection", None), "sock", None) if response is not None else None
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._session = self._new_session()

    # -- one call -------------------------------------------------------------------------------

    def _request(self, params: dict[str, str]) -> Page:
        """One HTTP request, classified. Raises a TwelveDataError on anything but data or 'no data'."""
        self.calls += 1
        exchange = self._exchange(params)
        if not exchange.done.is_set():
            # It reached Twelve Data (or is reaching it): count the credit, so the budget errs
            # towards fewer calls rather than a 429.
            self.credits += 1
            raise TransientError(
                f"Twelve Data did not answer in full within {self.timeout_seconds:g} s (connect, send and body)"
            )
        error = exchange.error
        if error is not None:
            if not isinstance(error, requests.RequestException) or _request_was_sent(error):
                self.credits += 1
            if isinstance(error, requests.Timeout):
                raise TransientError(f"Twelve Data did not answer within {self.timeout_seconds:g} s")
            raise TransientError(
                f"could not reach Twelve Data at {self.base_url}: {redact(type(error).__name__, self._api_key)}"
            )
        # An answer came back: assume it cost its credit (rejected ones included, as the 429
        # messages suggest).
        self.credits += 1
        status = exchange.status
        if 300 <= status < 400:
            target = urlsplit(exchange.headers.get("location", "")).netloc or "an unnamed place"
            raise RedirectRefusedError(
                f"Twelve Data answered HTTP {status}, redirecting to {target}; redirects are not followed "
                "(check TWELVE_DATA_BASE_URL)"
            )
        if exchange.too_large:
            raise MalformedAnswerError(
                f"Twelve Data's answer (HTTP {status}) is larger than {self.max_response_bytes} bytes; not read further"
            )
        try:
            # Prices arrive as strings; a JSON number must not pass through a float either.
            body = json.loads(exchange.body.decode("utf-8"), parse_float=Decimal, parse_constant=Decimal)
        except ValueError:  # not UTF-8, or not JSON
            kind = "an HTML page" if "html" in exchange.headers.get("content-type", "") else "a body that is not JSON"
            if status >= 500 or "html" in kind:
                raise TransientError(f"Twelve Data answered HTTP {status} with {kind}") from None
            raise MalformedAnswerError(f"Twelve Data answered HTTP {status} with {kind}") from None
        classified = classify_error(status, body, self.clock(), params["symbol"])
        if classified is not None:
            if isinstance(body, dict) and str(body.get("message", "")).startswith(NO_DATA_MESSAGE):
                return Page([], False)
            classified.args = (redact(str(classified), self._api_key),)
            raise classified
        if not isinstance(body, dict) or not isinstance(body.get("values"), list):
            raise MalformedAnswerError("Twelve Data answered without a `values` list")
        values = body["values"]
        return Page(values, len(values) >= int(params["outputsize"]))

    def _send(self, params: dict[str, str], window: Interval, settle: bool) -> Page:
        """One request, paid from the credit budget when there is one.

        With `settle` False a successful call's ledger row is left for the caller to settle (in the
        transaction that stores the answer); its id is the page's `ticket`.
        """
        if self.budget is None:
            page = self._request(params)
            page.credits = 1
            return page
        ticket = self.budget.acquire(1, params["symbol"], params["interval"], *window)
        credits_before = self.credits
        try:
            page = self._request(params)
        except TwelveDataError as exc:
            self.budget.settle(ticket, f"{type(exc).__name__}: {exc}", self.credits - credits_before)
            raise
        page.credits = self.credits - credits_before
        if settle:
            self.budget.settle(ticket, f"ok: {len(page.values)} bars", page.credits)
        else:
            page.ticket = ticket
        return page

    def _send_with_retries(self, params: dict[str, str], window: Interval, settle: bool) -> Page:
        """`_send` under the retry policy (retry_policy.py)."""

        def attempt(number: int) -> Page:
            page = self._send(params, window, settle)
            page.attempts = number
            return page

        return with_retries(attempt, self.retry, clock=self.clock, sleep=self.sleep, log=self.log)

    def time_series(self, symbol: str, interval: str, start: datetime, end: datetime, *, settle: bool = True) -> Page:
        """Bars opening in [start, end), one call (plus retries). `end` must be on a whole second."""
        params = {
            "symbol": symbol,
            "interval": interval,
            "start_date": _api_time(start),
            # Whether end_date is inclusive is undocumented: ask for one second before `end`,
            # which gives the same bars either way (bars open on whole minutes).
            "end_date": _api_time(end - ONE_SECOND),
            "timezone": "UTC",
            "outputsize": str(MAX_BARS_PER_CALL),
        }
        calls_before, credits_before = self.calls, self.credits
        try:
            page = self._send_with_retries(params, (start, end), settle)
        except TwelveDataError as exc:
            self._log_call(symbol, interval, start, end, f"failed: {exc}", calls_before, credits_before)
            raise
        outcome = f"{len(page.values)} bars" + (" (full page)" if page.full else "")
        self._log_call(symbol, interval, start, end, outcome, calls_before, credits_before)
        return page

    def _log_call(self, symbol, interval, start, end, outcome, calls_before, credits_before) -> None:
        self.log.info(
            f"Twelve Data time_series {symbol} {interval} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC: "
            f"{outcome}; {self.calls - calls_before} request(s), {self.credits - credits_before} credit(s)"
        )
