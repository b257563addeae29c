"""The candle store's typed failures (here so that the ledger, the store and ingest share them)."""

from __future__ import annotations


class StoreUnavailableError(RuntimeError):
    """The database could not be reached, or was lost mid-run (nothing half-written: each write is one
    transaction)."""


class SchemaNotCurrentError(RuntimeError):
    """The database's schema is not at this version's head revision: run `xau-pipeline migrate`."""
