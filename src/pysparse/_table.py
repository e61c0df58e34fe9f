"""Plain-text tables and byte sizes for the reports (convert, prune, the runtime's summary)."""

from __future__ import annotations

from typing import Any, Sequence


def render(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Left-aligned columns as wide as their widest cell: header, rule, rows (no trailing spaces)."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(str(h).ljust(w) for h, w in zip(head, widths)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def size(n: int) -> str:
    """Bytes for people: '1.20 MB', '3.40 kB', '12 B'."""
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"
