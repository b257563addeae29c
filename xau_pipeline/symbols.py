"""The instruments we keep, read from configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_SYMBOLS = "XAU/USD"


@dataclass(frozen=True)
class Symbol:
    """An instrument: Twelve Data's symbol (`XAU/USD`) and the name we store (`XAUUSD`)."""

    api_symbol: str

    @property
    def name(self) -> str:
        return self.api_symbol.replace("/", "").upper()

    @property
    def key_prefix(self) -> str:
        return self.name.lower()


def configured_symbols(value: str | None = None) -> tuple[Symbol, ...]:
    """Symbols from `XAU_SYMBOLS` (comma-separated Twelve Data symbols), default `XAU/USD`."""
    raw = value if value is not None else os.environ.get("XAU_SYMBOLS", DEFAULT_SYMBOLS)
    symbols = tuple(Symbol(part.strip().upper()) for part in raw.split(",") if part.strip())
    if not symbols:
        raise ValueError("XAU_SYMBOLS names no symbol")
    return symbols
