"""When a search prunes, and what a run's recorded search really was. No dependency: the storyboard uses it.

Pruning needs a preview point before the last step: ``search = "pruned"`` with ``steps`` at or
below ``preview_step`` scores nothing early, finishes every candidate, and is an exhaustive search.
``--dry-run``, the storyboard and ``eval`` all say so alike.
"""

from __future__ import annotations

from typing import Any


def is_pruned(search: str, steps: int, preview_step: int) -> bool:
    """Whether a search with these settings really prunes (the one rule, used by the search too)."""
    return search == "pruned" and preview_step < steps


def search_label(settings: Any) -> str | None:
    """The search a run really made, from its recorded settings (a manifest's ``settings`` dict)."""
    if not hasattr(settings, "get"):
        return None
    search = settings.get("search")
    if search != "pruned":
        return search
    try:
        pruned = is_pruned(search, int(settings.get("steps")), int(settings.get("preview_step")))
    except (TypeError, ValueError):  # an older or hand-edited manifest: show what it says
        return search
    return "pruned" if pruned else "exhaustive"
