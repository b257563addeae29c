"""The retry policy of a Twelve Data call: what is retried, how often, and how long between.

- A transient failure (a 5xx, a timeout, a dropped connection: `TransientError`) is retried with
  exponential backoff, `max_attempts` attempts in all, then `ServiceUnavailableError`.
- An answer that arrived whole but cannot be read (`MalformedAnswerError`) is asked for once more.
- A minute limit (429, `MinuteLimitError`) is waited out until the next minute starts (Twelve Data's
  credits are per clock minute), not counted as a failed attempt, at most `max_minute_waits` times.
- Everything else (401/403/400/404, the daily limit, a redirect) fails at once: retrying cannot help.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from xau_pipeline.twelvedata.errors import (
    MalformedAnswerError,
    MinuteLimitError,
    ServiceUnavailableError,
    TransientError,
    TwelveDataError,
)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, and the pauses between them."""

    # Attempts in all for a transient failure: a 5xx, a timeout, a dropped connection.
    max_attempts: int = 5
    # The first pause, doubled after each failed attempt up to the longest.
    first_pause: timedelta = timedelta(seconds=2)
    longest_pause: timedelta = timedelta(seconds=60)
    # Minutes waited out for a 429 before giving up: by then another process uses the same key.
    max_minute_waits: int = 10
    # An answer that arrived whole but cannot be read is asked for once more.
    malformed_attempts: int = 2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts >= 1 is required")

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt `attempt` (1, 2, ...): doubling, capped."""
        return min(self.first_pause * 2 ** (attempt - 1), self.longest_pause).total_seconds()


def until_next_minute(now: datetime) -> float:
    """Seconds until one second past the next clock minute, when a minute's credits are back."""
    next_minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return (next_minute - now).total_seconds() + 1.0


def with_retries(
    call: Callable[[int], T],
    policy: RetryPolicy,
    *,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
    log: logging.Logger | logging.LoggerAdapter,
) -> T:
    """`call(attempt)` until it returns, retrying what the policy retries; the last error otherwise."""
    attempt = malformed = minute_waits = 0
    while True:
        attempt += 1
        try:
            return call(attempt)
        except MalformedAnswerError as exc:
            malformed += 1
            if malformed >= policy.malformed_attempts or attempt >= policy.max_attempts:
                raise MalformedAnswerError(f"{exc} ({attempt} attempts; not retried further)") from None
            error: TwelveDataError = exc
        except TransientError as exc:
            if attempt >= policy.max_attempts:
                raise ServiceUnavailableError(
                    f"Twelve Data kept failing after {policy.max_attempts} attempts: {exc}"
                ) from None
            error = exc
        except MinuteLimitError as exc:
            minute_waits += 1
            attempt -= 1  # the minute limit is waited out, not counted as a failed attempt
            if minute_waits > policy.max_minute_waits:
                raise MinuteLimitError(
                    f"{exc} Still limited after waiting {policy.max_minute_waits} minutes: "
                    "another process is probably using the same key."
                ) from None
            pause = until_next_minute(clock())
            log.warning(f"Twelve Data minute limit reached; waiting {pause:.1f} s for the next minute")
            sleep(pause)
            continue
        pause = policy.backoff(attempt)
        log.warning(f"{error}; retry {attempt} of {policy.max_attempts - 1} in {pause:.1f} s")
        sleep(pause)
