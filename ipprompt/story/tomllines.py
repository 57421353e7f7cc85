"""Where a key was written in a TOML file: tomllib parses, but tells no line numbers.

A story error is only useful when it points at the line to fix, so ``LineIndex`` recovers lines by
scanning the text the way a reader would.
"""

from __future__ import annotations

import re
from typing import Any


class LineIndex:
    """Best-effort map from a key path to the line that wrote it.

    tomllib gives no positions, so we scan the text: table headers tell which table a line is in,
    and ``key =`` lines inside that table give the line. Good enough to point a writer at the spot.
    """

    _header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _key = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")

    def __init__(self, text: str) -> None:
        """Scan ``text`` once; lookups are then cheap, one per problem found."""
        self.entries: list[tuple[tuple[str, ...], int]] = []  # (table path, line) for every key line
        self.headers: list[tuple[tuple[str, ...], int]] = []
        table: list[str] = []
        array_counts: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            m = self._header.match(line)
            if m:
                parts = tuple(p.strip().strip('"').strip("'") for p in m.group(2).split("."))
                if m.group(1) == "[[":
                    name = ".".join(parts)
                    index = array_counts.get(name, 0)
                    array_counts[name] = index + 1
                    table = (*parts, str(index))
                else:
                    table = parts
                self.headers.append((table, number))
                continue
            k = self._key.match(line)
            if k:
                keys = tuple(p.strip('"').strip("'") for p in k.group(1).split("."))
                self.entries.append(((*table, *keys), number))

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """The line of the key at ``loc`` (or of the nearest enclosing key or table), or None."""
        path = tuple(str(p) for p in loc)
        # Longest prefix of the path that some key line or header wrote.
        for cut in range(len(path), 0, -1):
            prefix = path[:cut]
            for written, number in self.entries:
                if written[:cut] == prefix and len(written) >= cut:
                    return number
            for header, number in self.headers:
                if header == prefix:
                    return number
        return None
