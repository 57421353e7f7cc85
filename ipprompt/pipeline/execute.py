"""Execution: one ``PanelJob`` over a loaded backend and scorer gives a ``PanelResult``.

Nothing here writes a file or knows about run folders: the result (images and scores) goes back
to whoever commits it. That is what lets the same function run in this process, in another process
sharing the run folder, or on a Ray worker on another machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ipprompt.backends.base import Backend
from ipprompt.dvp.grid import GridSpec
from ipprompt.dvp.methods import method_of
from ipprompt.dvp.search import PanelPrompt, SearchProgress, SearchResult, SearchSettings
from ipprompt.errors import IppromptError
from ipprompt.pipeline.plan import PanelJob
from ipprompt.dvp.scoring import Scorer

if TYPE_CHECKING:
    from ipprompt.pipeline.settings import RunSettings


@dataclass
class PanelResult:
    """A made panel: its job, every candidate's pixels and scores, and what it cost."""

    job: PanelJob
    search: SearchResult
    seconds: float
    peak_gpu_bytes: int | None
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return self.job.number


@contextlib.contextmanager
def out_of_memory_is_a_user_error(doing: str) -> Iterator[None]:
    """Turn CUDA OOM (loading, encoding or generating) into advice on the memory options.

    torch is only consulted when something already imported it: the preview backend never pays
    for importing torch.
    """
    try:
        yield
    except Exception as exc:
        torch = sys.modules.get("torch")
        # torch.OutOfMemoryError is torch >= 2.5; torch.cuda.OutOfMemoryError is the same class.
        oom = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
        if oom is None or not isinstance(exc, oom):
            raise
        raise IppromptError(
            f"The GPU ran out of memory ({doing}).",
            "Try `--offload model --quantize fp8` (24 GB cards), `--offload model` (32 GB and more), or "
            "`--offload sequential` (least memory, slowest); `ipprompt doctor` suggests a mode for your GPU. "
            "Finished panels are kept: run the command again with the new options.",
        ) from None


def grid_spec(job: PanelJob) -> GridSpec:
    return GridSpec(job.settings.grid, job.settings.tile, job.shape)


def search_settings(settings: "RunSettings") -> SearchSettings:
    """The search's share of the run settings, read by field name (no copy to keep in step);
    only the LoRAs change form (fingerprints: what a calibration profile is keyed by)."""
    import json

    from ipprompt.backends.lora import lora_fingerprint

    shared = {f.name for f in dataclasses.fields(SearchSettings)} - {"rungs", "loras"}
    return SearchSettings(
        **{name: getattr(settings, name) for name in shared},
        rungs=tuple(settings.rungs) if settings.rungs is not None else None,
        loras=tuple(json.dumps(lora_fingerprint(spec), sort_keys=True) for spec in settings.lora_specs),
    )


def panel_prompt(job: PanelJob) -> PanelPrompt:
    return PanelPrompt(
        text=job.text,
        element_texts=tuple(e.text for e in job.elements),
        ranked=job.ranked,
        pinned=job.pinned,
        seed=job.seed,
        label=job.label,
        description=job.description,
        # The previous panel is scored by image similarity, never by its placeholder text.
        element_images=tuple(refs[0] if e.kind == "continuity" and refs else None for e, refs in zip(job.elements, job.ranked)),
    )


def _device_index(backend: Backend) -> Any:
    device = getattr(backend, "device", None)
    return device if getattr(device, "type", None) == "cuda" else None


def execute(job: PanelJob, backend: Backend, scorer: Scorer, progress: SearchProgress | None = None) -> PanelResult:
    """Make one panel: the candidate search of its method over the backend, scored by ``scorer``."""
    if job.waiting:
        raise ValueError(f"panel {job.number} still waits for panel {job.continuity_from}'s image (call with_previous first)")
    device = _device_index(backend)
    if device is not None:
        import torch

        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    search_class = method_of(job.settings.method).search_class()
    search = search_class(backend, scorer, grid_spec(job), search_settings(job.settings), progress)
    with out_of_memory_is_a_user_error(f"panel {job.number}"):
        result = search.run(panel_prompt(job))
    seconds = time.perf_counter() - started
    peak = int(sys.modules["torch"].cuda.max_memory_allocated(device)) if device is not None else None
    return PanelResult(job, result, round(seconds, 3), peak, backend.stats())
