"""Typed Twelve Data failures, each with a message a data engineer can act on."""

from __future__ import annotations

from datetime import datetime


class TwelveDataError(Exception):
    """Any failure talking to Twelve Data. Messages never contain the API key."""

    retryable = False


class AuthenticationError(TwelveDataError):
    """401: the key is missing or wrong. Retrying cannot help."""


class PlanNotAllowedError(TwelveDataError):
    """The plan behind the key does not allow this request (403, or 404 "available starting with the … plan")."""


class InvalidRequestError(TwelveDataError):
    """400: a parameter we sent was rejected — a bug on our side."""


class UnknownSymbolError(InvalidRequestError):
    """400/404: Twelve Data does not know the symbol."""


class DailyLimitError(TwelveDataError):
    """429 for the day: no more credits until the daily reset at 00:00 UTC."""

    def __init__(self, message: str, resets_at: datetime):
        super().__init__(message)
        self.resets_at = resets_at


class MinuteLimitError(TwelveDataError):
    """429 for the minute: wait for the next minute, then retry."""

    retryable = True


class TransientError(TwelveDataError):
    """5xx, HTML or malformed bodies, timeouts, dropped connections: retried with backoff."""

    retryable = True


class MalformedAnswerError(TransientError):
    """A whole answer that cannot be read (not JSON, not UTF-8, no `values`, too large): tried twice at most."""


class RedirectRefusedError(TwelveDataError):
    """A 3xx answer: redirects are never followed (the key must not travel to another host)."""


class ServiceUnavailableError(TwelveDataError):
    """Transient failures that outlasted every retry."""
