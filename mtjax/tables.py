"""Plain-text tables for the terminal (no JAX: reading finished runs stays light)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A left-aligned text table with a rule under the headers."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def closest(name: str, known: Sequence[str]) -> str:
    """The hint "; did you mean 'x'?" for the known name closest to `name`, else "".

    Case is ignored; the one rule every "unknown name" message uses.
    """
    lowered = {k.lower(): k for k in known}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    return f"; did you mean {lowered[match[0]]!r}?" if match else ""
