"""The instruments we keep."""

from __future__ import annotations

from dataclasses import dataclass

from xau_pipeline.market.market_hours import CALENDAR_NAMES

DEFAULT_CALENDAR = "cme_gold"


def stored_name(symbol: str) -> str:
    """The name a symbol's candles are stored under: `XAU/USD` and `xauusd` are `XAUUSD`."""
    return symbol.replace("/", "").upper()


@dataclass(frozen=True)
class Symbol:
    """An instrument: Twelve Data's symbol (`XAU/USD`), the name we store (`XAUUSD`), its trading calendar."""

    api_symbol: str
    calendar: str = DEFAULT_CALENDAR

    @property
    def name(self) -> str:
        return stored_name(self.api_symbol)

    @property
    def key_prefix(self) -> str:
        return self.name.lower()


def parse_symbol(text: str) -> Symbol:
    """`XAU/USD` or `XAU/USD:fx_24x5` (a Twelve Data symbol, optionally with its calendar policy)."""
    api_symbol, _, calendar_name = text.strip().partition(":")
    return Symbol(api_symbol.strip().upper(), calendar_name.strip() or DEFAULT_CALENDAR)


def parse_symbols(text: str) -> tuple[Symbol, ...]:
    """Comma-separated symbols (`XAU/USD,XAG/USD:fx_24x5`), each calendar checked."""
    symbols = tuple(parse_symbol(part) for part in text.split(",") if part.strip())
    if not symbols:
        raise ValueError("names no symbol")
    for symbol in symbols:
        if symbol.calendar not in CALENDAR_NAMES:
            raise ValueError(
                f"unknown calendar {symbol.calendar!r} for {symbol.api_symbol}: expected one of {', '.join(CALENDAR_NAMES)}"
            )
    return symbols
