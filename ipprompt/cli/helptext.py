"""Defaults for help texts, read from where they are defined so ``--help`` can never drift from them.

Most ``story run`` options default to None ("the story decides"), so typer has no default to show;
their help ends with ``[default: the story's, else X]``, X read from ``Generation``.
"""

from __future__ import annotations

from typing import Any


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value in (None, [], ()):
        return "none"
    text = str(value)
    owner, _, name = text.partition("/")
    if name and "/" not in name and len(text) > 24:
        # a Hub id too long for an 80-column help table: "FLUX.1-Fill-dev (black-forest-labs)"
        return f"{name} ({owner})"
    return text


def story_default(field: str) -> str:
    """``[default: as remembered, else the story's, else 28]`` for a ``[generation]`` key (escaped for rich markup)."""
    from ipprompt.story.schema import Generation

    value = Generation.model_fields[field].default
    return f"\\[default: as remembered, else the story's, else {_shown(value)}]"


def default(text: str) -> str:
    """``[default: TEXT]`` for an option whose default typer cannot show (None means 'not written')."""
    return f"\\[default: {text}]"
