"""Side-by-side comparison of evaluated runs: values per run and deltas against the first.

"Did ``--method reference`` (or ``--fast``) cost me consistency?" is one question about two runs
of one story, so the first run given is the baseline and every other run gets ``value - baseline``
per metric and per panel. Nothing here loads a model: it only arranges ``RunEval`` results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ipprompt.evaluate.results import RunEval

# (key, label, higher is better?) for the quality metrics of the summary and of each panel.
QUALITY = (
    ("clip_t", "CLIP-T (text)", True),
    ("theme_fidelity", "Theme fidelity (CLIP-I)", True),
    ("character_consistency", "Character consistency (DINO)", True),
    ("style_consistency", "Style consistency (CLIP-I)", True),
)
COST = (
    ("nfe", "NFE", False),
    ("seconds", "Seconds", False),
    ("peak_gpu_bytes", "Peak GPU bytes", False),
)


def _delta(value: Any, base: Any) -> float | None:
    if isinstance(value, bool) or isinstance(base, bool):
        return None
    if not isinstance(value, (int, float)) or not isinstance(base, (int, float)):
        return None
    return round(float(value) - float(base), 6)


def _row(key: str, label: str, higher_better: bool, values: list[Any]) -> dict[str, Any]:
    base = values[0]
    return {
        "metric": key,
        "label": label,
        "higher_is_better": higher_better,
        "values": values,
        "deltas": [None] + [_delta(v, base) for v in values[1:]],
    }


def same_story(results: Sequence[RunEval]) -> bool:
    """Whether all runs come from one story, judged by its title.

    Not by file path: comparing settings often means running a copy of the story, or the same
    story on another machine, and those are still the same story.
    """
    return len({r.title for r in results}) == 1


def compare(results: Sequence[RunEval]) -> dict[str, Any]:
    """Summary rows, per-character rows, cost rows and a per-panel breakdown for two or more runs."""
    if len(results) < 2:
        raise ValueError("compare needs two or more runs")
    summary = [_row(k, label, hb, [getattr(r.summary, k) for r in results]) for k, label, hb in QUALITY]
    characters: list[str] = list(dict.fromkeys(c for r in results for c in r.summary.characters))
    names = {c: n for r in results for c, n in r.character_names.items()}
    per_character = [
        _row(c, f"DINO · {names.get(c, c)}", True, [r.summary.characters.get(c) for r in results]) for c in characters
    ]
    cost = [_row(k, label, hb, [getattr(r.cost, k) for r in results]) for k, label, hb in COST]
    numbers = sorted({p.number for r in results for p in r.panels})
    panels = []
    for number in numbers:
        found = [next((p for p in r.panels if p.number == number), None) for r in results]
        panels.append(
            {
                "number": number,
                "metrics": [
                    _row(k, label, hb, [getattr(p, k) if p is not None else None for p in found])
                    for k, label, hb in (*QUALITY, *COST)
                ],
            }
        )
    return {
        "baseline": results[0].run,
        "same_story": same_story(results),
        "same_encoders": len({r.key for r in results}) == 1,
        "summary": summary,
        "characters": per_character,
        "cost": cost,
        "settings": [
            {
                "run": r.run,
                "backend": r.cost.backend,
                "methods": r.cost.methods,
                "search": r.cost.search,
                "fast": r.cost.fast,
                "preview": r.preview,
            }
            for r in results
        ],
        "panels": panels,
    }


def report_document(results: Sequence[RunEval]) -> dict[str, Any]:
    """The whole ``--json`` document: every run in full, plus the comparison when there are two or more."""
    return {
        "format": 1,
        "runs": [r.model_dump(mode="json") for r in results],
        "comparison": compare(results) if len(results) >= 2 else None,
    }
