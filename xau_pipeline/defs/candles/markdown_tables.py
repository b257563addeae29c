"""Markdown tables for the metadata the Dagster UI shows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# The UI shows at most this many rows of any list (missing bars, invalid bars, ledger lines).
ROWS_SHOWN = 50


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str = "none") -> str:
    """A markdown table of the first ROWS_SHOWN `rows` (with a line saying how many more), or `empty`."""
    rows = list(rows)
    if not rows:
        return empty
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows[:ROWS_SHOWN]]
    if len(rows) > ROWS_SHOWN:
        lines.append(f"\n… and {len(rows) - ROWS_SHOWN} more")
    return "\n".join(lines)
