"""A small TOML writer for the stories the ViStoryBench import makes.

The benchmark's texts hold quotes, backslashes, newlines and Chinese; a story file must keep every
one of them exactly. Strings are written as TOML basic strings with every character TOML forbids
there escaped, and keys that are not bare are quoted, so ``tomllib`` reads back what was written
(the tests check the round trip).
"""

from __future__ import annotations

import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def key(name: str) -> str:
    """A key as written: bare when TOML allows it, else quoted."""
    return name if _BARE_KEY.match(name) else string(name)


def value(v: Any) -> str:
    """A value: strings, integers, booleans, floats and lists of them."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as a TOML value")


def table_lines(values: dict[str, Any]) -> list[str]:
    """``key = value`` lines for the entries that are set (None is left out)."""
    return [f"{key(k)} = {value(v)}" for k, v in values.items() if v is not None]
