"""The CLI's rich console, which never writes a control character it was given in a string."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from ipprompt.textclean import strip_controls

__all__ = ["SafeConsole", "strip_controls"]


class SafeConsole(Console):
    """A rich Console that never writes a control character it was given in a string.

    Every string rich prints (arguments to ``print``, table cells and titles) becomes ``Text``
    through ``render_str``; cleaning it there covers them all, while rich's own styling codes,
    added later, are untouched.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:  # type: ignore[override]
        return super().render_str(strip_controls(text), **kwargs)
