"""``eval.json``: the stored results of ``ipprompt eval``, and the view the storyboard shows.

Kept apart from the evaluation itself so that rendering a storyboard reads results without
importing numpy, Pillow or any model code. The file is a cache of numbers that can be recomputed:
one that is missing, damaged or of another format is simply not shown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ipprompt.runfolder.manifest import RunManifest

# Theme fidelity averages a panel's similarity to the K theme images closest to it. One
# reference is too noisy (a single near-duplicate decides everything) and the whole theme mixes
# in images of other characters and places that a panel should not resemble; five is about the
# number of references a panel's visual prompt draws on. Defined here, not in ``metrics``, so
# stored results can name it without importing numpy.
THEME_TOP_K = 5
DEFAULT_DINO = "facebook/dinov2-small"  # character consistency encoder (``--dino``)

EVAL_FILE = "eval.json"
EVAL_FORMAT = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class PanelEval(_Model):
    """One panel's numbers. Consistency values are this panel's mean similarity to its partners."""

    number: int
    characters: list[str] = []
    clip_t: float | None = None
    theme_fidelity: float | None = None
    character_consistency: float | None = None  # DINO, to panels sharing a character
    style_consistency: float | None = None  # CLIP-I, to every other panel
    preview: bool = False
    backend: str | None = None
    method: str | None = None
    search: str | None = None
    fast: bool | None = None
    nfe: int = 0
    seconds: float = 0.0
    peak_gpu_bytes: int | None = None


class Summary(_Model):
    """Run-level metrics: means over panels, and consistency over pairs of panels."""

    clip_t: float | None = None
    theme_fidelity: float | None = None
    character_consistency: float | None = None  # mean over characters of their pairwise DINO
    style_consistency: float | None = None  # mean pairwise CLIP-I over all panels
    characters: dict[str, float] = {}


class Cost(_Model):
    """What the evaluated panels cost to make, from the manifest."""

    panels: int = 0
    nfe: int = 0
    seconds: float = 0.0
    peak_gpu_bytes: int | None = None
    backend: str | None = None
    methods: list[str] = []
    search: str | None = None
    fast: bool | None = None


class RunEval(_Model):
    """Everything ``eval`` measured on one run with one (CLIP, DINO) pair."""

    run: str
    title: str = ""
    story: str | None = None
    encoder: str
    dino: str
    theme_top_k: int = THEME_TOP_K
    theme: str | None = None
    theme_images: int = 0
    preview: bool = False
    evaluated: str = ""
    manifest_updated: str = ""
    character_names: dict[str, str] = {}
    panels: list[PanelEval] = []
    summary: Summary = Summary()
    cost: Cost = Cost()
    notes: list[str] = []

    @property
    def key(self) -> str:
        return eval_key(self.encoder, self.dino)


class EvalFile(_Model):
    """``eval.json``: results keyed by encoder pair; ``latest`` is what the storyboard shows."""

    format: int = EVAL_FORMAT
    latest: str | None = None
    results: dict[str, RunEval] = {}


def eval_key(encoder: str, dino: str) -> str:
    """The key of one (CLIP, DINO) pair in ``eval.json``."""
    return f"{encoder} + {dino}"


# --------------------------------------------------------------------------- eval.json


def read_eval(run_dir: str | Path) -> EvalFile | None:
    """The run's eval.json, or None when there is none or it cannot be used (it is only a cache)."""
    try:
        text = (Path(run_dir) / EVAL_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return _parse_eval(text)


def _parse_eval(text: str | None) -> EvalFile | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != EVAL_FORMAT:
            return None
        return EvalFile.model_validate(data)
    except (json.JSONDecodeError, RecursionError, ValidationError):
        return None


def save_eval(run_dir: str | Path, result: RunEval) -> Path:
    """Add (or replace) this encoder pair's result in the run's eval.json, atomically."""
    from ipprompt.runfolder.folder import RunFolder  # the run folder is the only writer of its files

    def add(text: str | None) -> str:
        existing = _parse_eval(text) or EvalFile()
        existing.results[result.key] = result
        existing.latest = result.key
        return json.dumps(existing.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"

    return RunFolder(Path(run_dir)).write_eval(add)


def eval_for_page(run_dir: str | Path, manifest: RunManifest) -> dict[str, Any] | None:
    """The latest evaluation as the storyboard shows it, or None (the page then renders as before)."""
    stored = read_eval(run_dir)
    if stored is None or stored.latest not in stored.results:
        return None
    result = stored.results[stored.latest]
    view = result.model_dump(mode="json")
    view["panels"] = {p.number: p.model_dump(mode="json") for p in result.panels}
    view["stale"] = bool(result.manifest_updated and result.manifest_updated != manifest.updated)
    view["characters"] = [
        {"name": result.character_names.get(cid, cid), "value": value} for cid, value in result.summary.characters.items()
    ]
    return view
