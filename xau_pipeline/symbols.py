"""The instruments we keep, read from configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_SYMBOLS = "XAU/USD"
DEFAULT_CALENDAR = "cme_gold"


@dataclass(frozen=True)
class Symbol:
    """An instrument: Twelve Data's symbol (`XAU/USD`), the name we store (`XAUUSD`), its trading calendar."""

    api_symbol: str
    calendar: str = DEFAULT_CALENDAR

    @property
    def name(self) -> str:
        return self.api_symbol.replace("/", "").upper()

    @property
    def key_prefix(self) -> str:
        return self.name.lower()


def parse_symbol(text: str) -> Symbol:
    """`XAU/USD` or `XAU/USD:fx_24x5` (a Twelve Data symbol, optionally with its calendar policy)."""
    api_symbol, _, calendar_name = text.strip().partition(":")
    return Symbol(api_symbol.strip().upper(), calendar_name.strip() or DEFAULT_CALENDAR)


def configured_symbols(value: str | None = None) -> tuple[Symbol, ...]:
    """Symbols from `XAU_SYMBOLS` (comma-separated, e.g. `XAU/USD,XAG/USD:fx_24x5`), default `XAU/USD`."""
    raw = value if value is not None else os.environ.get("XAU_SYMBOLS", DEFAULT_SYMBOLS)
    symbols = tuple(parse_symbol(part) for part in raw.split(",") if part.strip())
    if not symbols:
        raise ValueError("XAU_SYMBOLS names no symbol")
    return symbols
