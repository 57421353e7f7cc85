"""What a run's recorded search really was. No dependency: the storyboard and ``eval`` use it.

``search = "pruned"`` prunes only where the panel's canvas and steps leave a rung before the last
step (``ipprompt.dvp.rungs.place_rungs``): with 2 steps at 1536² no step's prediction reaches
σ 0.95, so every candidate runs to the end and the search was exhaustive. A panel records the
rungs it used, so the label is read from that record; ``--dry-run`` (which knows the schedule),
the storyboard and ``eval`` all say so alike.
"""

from __future__ import annotations

from typing import Any


def search_label(settings: Any, rungs: Any = None) -> str | None:
    """The search a panel (or run) really made: ``settings`` is the recorded settings dict.

    ``rungs``: the rungs the panel recorded (for a run: whether any panel used rungs); None when
    not known (nothing made yet), then the recorded setting is shown as it is. Manifests of
    ipprompt <= 0.3 recorded ``preview_step`` instead: pruning needed a preview before the last step.
    """
    if not hasattr(settings, "get"):
        return None
    search = settings.get("search")
    if search != "pruned":
        return search
    if rungs is not None:
        return "pruned" if rungs else "exhaustive"
    try:
        pruned = int(settings.get("preview_step")) < int(settings.get("steps"))
    except (TypeError, ValueError):  # no preview step recorded: show what the settings say
        return search
    return "pruned" if pruned else "exhaustive"
