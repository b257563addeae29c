"""Keeping secrets (the API key, database passwords) out of every message we print or raise."""

from __future__ import annotations

from sqlalchemy.engine import make_url

MASK = "***"


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every occurrence of each non-empty secret replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def url_password(url: str | None) -> str | None:
    """The password in a database URL, if it has one (None for a URL that does not parse)."""
    if not url:
        return None
    try:
        password = make_url(url).password
    except Exception:
        return None
    return None if password is None else str(password)


def one_line(text: str, *secrets: str | None) -> str:
    """`text` redacted and folded onto one line, for error messages."""
    return " ".join(redact(text, *secrets).split())
