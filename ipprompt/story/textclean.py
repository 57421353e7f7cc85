"""Text from a story or a run folder, made safe to show: no control characters reach a terminal or a page.

A story is someone's text, and a run folder may come from someone else. ``\\x1b]0;...`` in a
panel's prompt would set the terminal's window title and ``\\x1b[2J`` would clear the screen if
printed raw; a NUL in a storyboard page makes browsers and editors treat the file as binary.
Rich strips only a few controls (bell, backspace, carriage return), so every string printed by the
CLI goes through ``ipprompt.progress.SafeConsole``, and every value a template prints through
:func:`strip_controls` (the Jinja environment's ``finalize``). No dependency here: the storyboard
renders with Jinja alone.
"""

from __future__ import annotations

from typing import Any, TypeVar

REPLACEMENT = "\ufffd"  # the Unicode replacement character: the reader sees something was there

# C0 controls except tab and newline, DEL, and the C1 controls (0x80-0x9f: 0x9b is a one-byte CSI).
_CONTROLS = {c: REPLACEMENT for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROLS[0x0D] = None  # a lone carriage return rewrites the line; drop it (Windows line ends keep their \n)

S = TypeVar("S", bound=str)


def strip_controls(text: S) -> S:
    """``text`` with every control character except tab and newline replaced (CR removed).

    Works on ``markupsafe.Markup`` too (``translate`` keeps its type), so it can finalize template
    output whether or not a value was already escaped.
    """
    return text.translate(_CONTROLS)  # type: ignore[return-value]


def has_controls(text: str) -> bool:
    """True when ``text`` holds a character ``strip_controls`` would change."""
    return any(ord(ch) in _CONTROLS for ch in text)


def finalize(value: Any) -> Any:
    """Jinja ``finalize``: strings lose their control characters, other values pass unchanged."""
    return strip_controls(value) if isinstance(value, str) else value
