"""HTTP client for Twelve Data's /time_series: one credit a call, every answer classified."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import requests
import tenacity
import urllib3

from xau_pipeline.bars import Bar, FetchedWindow, Interval
from xau_pipeline.redact import redact
from xau_pipeline.timeframes import Timeframe
from xau_pipeline.twelvedata.errors import (
    AuthenticationError,
    DailyLimitError,
    InvalidRequestError,
    MinuteLimitError,
    PlanNotAllowedError,
    ServiceUnavailableError,
    TransientError,
    TwelveDataError,
    UnknownSymbolError,
)
from xau_pipeline.twelvedata.windows import MAX_BARS_PER_CALL, WindowPlanner, merge_gaps
from xau_pipeline.utc import next_utc_midnight, utc_now

if TYPE_CHECKING:
    from xau_pipeline.credit_budget import CreditBudget
    from xau_pipeline.trading_calendar import TradingCalendar

DEFAULT_BASE_URL = "https://api.twelvedata.com"
NO_DATA_MESSAGE = "No data is available"
API_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ONE_SECOND = timedelta(seconds=1)
# A bar counts as closed only if it had closed this long before we asked: the provider's clock
# and publishing may lag ours, and a bar sent while still forming must never be taken as final.
CLOSE_MARGIN = timedelta(seconds=30)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    """One answered call: its bars (ascending, deduplicated) and whether it hit outputsize."""

    bars: list[Bar]
    full: bool


@dataclass
class SeriesFetch:
    """Closed bars for a set of windows, with the cost of getting them."""

    bars: list[Bar] = field(default_factory=list)
    windows: list[FetchedWindow] = field(default_factory=list)
    calls: int = 0
    credits: int = 0
    forming_dropped: int = 0
    error: Exception | None = None

    def raise_for_error(self) -> SeriesFetch:
        """Self, or the error that stopped the fetch."""
        if self.error is not None:
            raise self.error
        return self


def _request_was_sent(exc: requests.RequestException) -> bool:
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


def parse_datetime(text: str) -> datetime:
    """A Twelve Data `datetime` (`YYYY-MM-DD HH:MM:SS`, or `YYYY-MM-DD` for 1day) read as UTC."""
    fmt = API_TIME_FORMAT if len(text) > 10 else "%Y-%m-%d"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def parse_bars(values: list[dict]) -> tuple[list[Bar], int]:
    """Bars from a `values` array, ascending, the first of any repeated datetime kept; and the repeats."""
    by_time: dict[datetime, Bar] = {}
    repeats = 0
    for value in values:
        try:
            open_time = parse_datetime(value["datetime"])
            volume = value.get("volume")
            bar = Bar(
                open_time,
                Decimal(value["open"]),
                Decimal(value["high"]),
                Decimal(value["low"]),
                Decimal(value["close"]),
                Decimal(volume) if volume not in (None, "") else None,
            )
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise TransientError(f"Twelve Data sent a malformed bar {value!r}: {exc}") from None
        if not all(p.is_finite() for p in (bar.open, bar.high, bar.low, bar.close)):
            raise TransientError(f"Twelve Data sent a non-finite price in {value!r}")
        if open_time in by_time:
            repeats += 1
            continue
        by_time[open_time] = bar
    return [by_time[t] for t in sorted(by_time)], repeats


def classify_error(status: int, body: object, now: datetime, symbol: str = "") -> TwelveDataError | None:
    """The error an answer stands for, by the body's `code` first and then the HTTP status; None if ok."""
    code, message = status, ""
    if isinstance(body, dict) and (body.get("status") == "error" or "code" in body):
        code = int(body.get("code") or status)
        message = str(body.get("message") or "")
    elif status == 200:
        return None
    lowered = message.lower()
    if code == 401:
        return AuthenticationError(
            "Twelve Data rejected the API key (401). Check TWELVE_DATA_API_KEY; retrying cannot help."
        )
    if code == 403:
        return PlanNotAllowedError(f"Twelve Data refused the request for this plan (403): {message}")
    if code == 429:
        if "for the day" in lowered:
            resets_at = next_utc_midnight(now)
            return DailyLimitError(
                f"Twelve Data's daily API credits are used up: {message} "
                f"The allowance resets at {resets_at:%Y-%m-%d %H:%M} UTC.",
                resets_at,
            )
        return MinuteLimitError(f"Twelve Data's per-minute credits are used up: {message}")
    if code == 404 or (code == 400 and "symbol" in lowered):
        return UnknownSymbolError(f"Twelve Data does not know the symbol {symbol!r} (code {code}): {message}")
    if code >= 500:
        return TransientError(f"Twelve Data had a server error (code {code}): {message or 'no message'}")
    if 400 <= code < 500:
        return InvalidRequestError(f"Twelve Data rejected the request (code {code}): {message}")
    return TransientError(f"Twelve Data answered with unexpected code {code}: {message}")


class TwelveDataClient:
    """Calls /time_series with the key in the Authorization header only, retrying what can pass."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout_seconds: float = 30.0,
        max_attempts: int = 5,
        backoff_seconds: float = 2.0,
        backoff_max_seconds: float = 60.0,
        max_minute_waits: int = 10,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        budget: CreditBudget | None = None,
    ):
        if not api_key:
            raise AuthenticationError(
                "No Twelve Data API key: set TWELVE_DATA_API_KEY (a free key: https://twelvedata.com/pricing)."
            )
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.max_minute_waits = max_minute_waits
        self.clock = clock
        self.sleep = sleep
        self.log = log or logger
        self.budget = budget
        self.calls = 0
        self.credits = 0
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"apikey {api_key}", "User-Agent": "xau-pipeline"})

    def __repr__(self) -> str:
        return f"TwelveDataClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    # -- one call ---------------------------------------------------------------------------

    def _send(self, params: dict[str, str], window: Interval) -> Page:
        """One HTTP request, paid from the credit budget when there is one."""
        if self.budget is None:
            return self._request(params)
        ticket = self.budget.acquire(1, params["symbol"], params["interval"], *window)
        credits_before = self.credits
        try:
            page = self._request(params)
        except TwelveDataError as exc:
            self.budget.settle(ticket, f"{type(exc).__name__}: {exc}", self.credits - credits_before)
            raise
        self.budget.settle(ticket, f"ok: {len(page.bars)} bars", self.credits - credits_before)
        return page

    def _request(self, params: dict[str, str]) -> Page:
        """One HTTP request, classified. Raises a TwelveDataError on anything but data or 'no data'."""
        self.calls += 1
        try:
            response = self._session.get(f"{self.base_url}/time_series", params=params, timeout=self.timeout_seconds)
        except requests.RequestException as exc:
            if _request_was_sent(exc):
                # The request reached Twelve Data, which probably charged it: count it, so the
                # budget errs towards fewer calls rather than a 429.
                self.credits += 1
            if isinstance(exc, requests.Timeout):
                raise TransientError(f"Twelve Data did not answer within {self.timeout_seconds:g} s") from None
            raise TransientError(
                f"could not reach Twelve Data at {self.base_url}: {redact(type(exc).__name__, self._api_key)}"
            ) from None
        try:
            # Prices arrive as strings; a JSON number must not pass through a float either.
            body = json.loads(response.text, parse_float=Decimal)
        except ValueError:
            kind = "an HTML page" if "html" in response.headers.get("content-type", "") else "a malformed body"
            raise TransientError(f"Twelve Data answered HTTP {response.status_code} with {kind}") from None
        # Assume every answered call costs its credit (rejected ones included, as the 429
        # messages suggest).
        self.credits += 1
        error = classify_error(response.status_code, body, self.clock(), params["symbol"])
        if error is not None:
            if isinstance(body, dict) and str(body.get("message", "")).startswith(NO_DATA_MESSAGE):
                return Page([], False)
            error.args = (redact(str(error), self._api_key),)
            raise error
        if not isinstance(body, dict) or not isinstance(body.get("values"), list):
            raise TransientError("Twelve Data answered without a `values` list")
        bars, repeats = parse_bars(body["values"])
        if repeats:
            self.log.warning(f"Twelve Data repeated {repeats} datetime(s); kept the first of each")
        return Page(bars, len(body["values"]) >= int(params["outputsize"]))

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        self.log.warning(f"{error}; retry {state.attempt_number} of {self.max_attempts - 1} in {pause:.1f} s")

    def _send_with_retries(self, params: dict[str, str], window: Interval) -> Page:
        """`_send`, retrying transient failures with exponential backoff and waiting out minute limits."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_exponential(multiplier=self.backoff_seconds, max=self.backoff_max_seconds),
            sleep=self.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        minute_waits = 0
        while True:
            try:
                return retrying(self._send, params, window)
            except TransientError as exc:
                raise ServiceUnavailableError(
                    f"Twelve Data kept failing after {self.max_attempts} attempts: {exc}"
                ) from None
            except MinuteLimitError as exc:
                minute_waits += 1
                if minute_waits > self.max_minute_waits:
                    raise MinuteLimitError(
                        f"{exc} Still limited after waiting {self.max_minute_waits} minutes: "
                        "another process is probably using the same key."
                    ) from None
                now = self.clock()
                next_minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
                pause = (next_minute - now).total_seconds() + 1.0
                self.log.warning(f"Twelve Data minute limit reached; waiting {pause:.1f} s for the next minute")
                self.sleep(pause)

    def time_series(self, symbol: str, interval: str, start: datetime, end: datetime) -> Page:
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
            page = self._send_with_retries(params, (start, end))
        except TwelveDataError as exc:
            self._log_call(symbol, interval, start, end, f"failed: {exc}", calls_before, credits_before)
            raise
        outcome = f"{len(page.bars)} bars" + (" (full page)" if page.full else "")
        self._log_call(symbol, interval, start, end, outcome, calls_before, credits_before)
        return page

    def _log_call(self, symbol, interval, start, end, outcome, calls_before, credits_before) -> None:
        self.log.info(
            f"Twelve Data time_series {symbol} {interval} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC: "
            f"{outcome}; {self.calls - calls_before} request(s), {self.credits - credits_before} credit(s)"
        )

    # -- windows ----------------------------------------------------------------------------

    def fetch(
        self,
        symbol: str,
        timeframe: Timeframe,
        gaps: list[Interval],
        calendar: TradingCalendar,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> SeriesFetch:
        """Closed bars for every gap, in as few calls as the 5000-bar limit allows.

        A failure stops the fetch; what was fetched before it is returned with `error` set.

        Each window is sized by `calendar` to hold at most 5000 bars; if the feed still fills a
        page (bars outside the calendar), the next window ends where that page's oldest bar begins.
        """
        result = SeriesFetch()
        calls_before, credits_before = self.calls, self.credits
        planners = [WindowPlanner(span, timeframe.bar, calendar) for span in merge_gaps(gaps, timeframe.bar, calendar)]
        if gaps and not planners:
            self.log.info(f"{symbol} {timeframe.name}: the market is closed throughout the missing window(s); no call")
        planned = sum(p.expected_calls for p in planners)
        by_time: dict[datetime, Bar] = {}
        try:
            for planner in planners:
                end = planner.end
                while end > planner.start:
                    start, end = planner.window_ending_at(end)
                    as_of = self.clock() - CLOSE_MARGIN
                    page = self.time_series(symbol, timeframe.interval, start, end)
                    bars = [b for b in page.bars if start <= b.open_time < end]
                    covered_end = end
                    if page.full and bars:
                        # A full page may have left bars out: cover only what it spans.
                        start = max(start, bars[0].open_time)
                        covered_end = min(end, bars[-1].open_time + timeframe.bar)
                    closed = [b for b in bars if b.open_time + timeframe.bar <= as_of]
                    result.forming_dropped += len(bars) - len(closed)
                    by_time.update((b.open_time, b) for b in closed)
                    result.windows.append(FetchedWindow(start, covered_end, as_of, len(closed)))
                    if progress is not None:
                        progress(len(result.windows), max(planned, len(result.windows)), len(by_time))
                    end = start
        except Exception as exc:
            # Whole windows fetched before the failure are kept: the caller stores them.
            result.error = exc
        result.bars = [by_time[t] for t in sorted(by_time)]
        result.calls = self.calls - calls_before
        result.credits = self.credits - credits_before
        return result
