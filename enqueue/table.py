"""Aligned text tables, the one way every command prints them.

Invariant: every line of ``render`` has its cells in the same columns (each
column as wide as its widest cell, two spaces apart), no line ends in
spaces, and the header is the first line.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["render"]

_GAP = "  "


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The header and rows as aligned lines; a row shorter than the header gets empty cells."""
    width = len(header)
    cells = [list(header)] + [list(row) + [""] * (width - len(row)) for row in rows]
    if any(len(row) > width for row in cells):
        raise ValueError("a row has more cells than the header")
    widths = [max(len(row[i]) for row in cells) for i in range(width)]
    return [_GAP.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
