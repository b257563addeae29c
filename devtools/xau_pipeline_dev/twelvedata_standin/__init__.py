"""A local stand-in for the Twelve Data REST API, for tests and offline demos."""

from __future__ import annotations

from .server import Fault, RequestRecord, StandIn, StandInConfig

__all__ = ["Fault", "RequestRecord", "StandIn", "StandInConfig"]
