"""What a run will cost before it runs: planned NFE per panel and a projected time per GPU.

``ipprompt story run --dry-run`` answers "how long will this take on my GPU?" without loading any
model (no FLUX, no CLIP, no theme index): a panel's NFE follows from its number of elements, the
search settings and its rungs, whose steps come from σ on the FLUX.1-Fill-dev scheduler configuration
shipped with the package at the panel's canvas (``ipprompt.dvp.rungs``), and time is NFE times the measured seconds
per denoising step of the GPU at the panel's canvas. Only the transformer is counted: text
encoding, VAE decodes and scoring add a few seconds per panel.

The table holds measurements only (real FLUX.1-Fill-dev shapes, random weights, bf16, batch 1);
``benchmarks/RESULTS.md`` mirrors it with the commands that produced it. A GPU not in the table
is reported as unknown rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ipprompt.backends.registry import backend_spec
from ipprompt.dvp.grid import GridSpec
from ipprompt.dvp.methods import method_of
from ipprompt.dvp.profiles import resolve_schedule
from ipprompt.dvp.rungs import Schedule
from ipprompt.story.elements import extract_elements
from ipprompt.pipeline.execute import search_settings
from ipprompt.pipeline.plan import panel_shape
from ipprompt.story.loading import Generation, Story

# GPU name fragment -> {canvas side in px: (eager s/step, compiled s/step or None)}.
SECONDS_PER_STEP: dict[str, dict[int, tuple[float, float | None]]] = {
    "H200": {
        768: (0.104, None),
        1024: (0.173, None),
        1152: (0.229, None),
        1536: (0.413, 0.323),
    },
}


@dataclass(frozen=True)
class PanelBudget:
    number: int
    elements: int
    arrangements: int  # first round
    nfe: int  # at most (refinement may stop early)
    schedule: Schedule | None = None  # the rungs at this panel's canvas (None: every candidate to the end)
    canvas: tuple[int, int] = (0, 0)
    tried: int = 0  # arrangements at most, refinements included


@dataclass(frozen=True)
class Projection:
    gpu: str | None  # the detected GPU's name, None without CUDA
    known: str | None  # the table row it matched
    seconds_per_step: float | None
    source: str  # "measured", "measured (compiled)", "interpolated", or why there is none


def panel_budgets(story: Story, settings: Generation, numbers: list[int]) -> list[PanelBudget]:
    """Each selected panel's most NFE under ``settings`` (0 for the preview backend)."""
    search = search_settings(settings)
    method = method_of(settings.method)
    out = []
    schedules: dict[tuple[int, int], Schedule] = {}
    for n in numbers:
        elements = len(extract_elements(story.panels[n - 1], story)) + (1 if settings.continuity and n > 1 else 0)
        arrangements = method.first_round(elements, settings.candidates)
        spec = GridSpec(settings.grid, settings.tile, panel_shape(story, settings, n))
        canvas = (spec.width, spec.height)
        if canvas not in schedules:
            schedules[canvas] = resolve_schedule(search, spec.width, spec.height)
        schedule = schedules[canvas]
        nfe = 0 if not backend_spec(settings.backend).denoises else method.budget(search, arrangements, schedule)
        tried = search.arrangements(arrangements) if method.rungs else arrangements
        out.append(PanelBudget(n, elements, arrangements, nfe, schedule if schedule.rungs else None, canvas, tried))
    return out


def detect_gpu(device: str = "auto") -> str | None:
    """The name of the GPU a run would use, without loading any model (None: no CUDA GPU)."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return None
    index = torch.device(device).index if device.startswith("cuda") else None
    return str(torch.cuda.get_device_name(index or 0))


def seconds_per_step(gpu: str | None, canvas: int, compiled: bool = False) -> Projection:
    """Measured seconds per step for ``gpu`` at a ``canvas``-px square canvas, or why none."""
    if gpu is None:
        return Projection(None, None, None, "no CUDA GPU found: no projection (measured GPUs: " + ", ".join(SECONDS_PER_STEP) + ")")
    row = next((k for k in SECONDS_PER_STEP if k.lower() in gpu.lower()), None)
    if row is None:
        return Projection(gpu, None, None, f"unknown GPU {gpu!r}: no measurement (measured GPUs: {', '.join(SECONDS_PER_STEP)})")
    table = SECONDS_PER_STEP[row]
    if canvas in table:
        eager, comp = table[canvas]
        if compiled and comp is not None:
            return Projection(gpu, row, comp, "measured (compiled)")
        return Projection(gpu, row, eager, "measured" + (" (eager; no compiled measurement)" if compiled else ""))
    # Between or beyond measured canvases: linear in pixel count between the two nearest.
    sides = sorted(table)
    lower = max((s for s in sides if s < canvas), default=sides[0])
    upper = min((s for s in sides if s > canvas), default=sides[-1])
    if lower == upper:
        value = table[lower][0] * (canvas * canvas) / (lower * lower)
    else:
        t = (canvas * canvas - lower * lower) / (upper * upper - lower * lower)
        value = table[lower][0] + t * (table[upper][0] - table[lower][0])
    return Projection(gpu, row, round(value, 4), f"interpolated from {lower}² and {upper}² (eager)")


def dry_run(story: Story, settings: Generation, numbers: list[int], device: str = "auto", compiled: bool = False) -> dict[str, Any]:
    """Planned NFE per panel and in total, and the projected time on this machine's GPU."""
    budgets = panel_budgets(story, settings, numbers)
    canvas = settings.grid * settings.tile
    projection = seconds_per_step(detect_gpu(device), canvas, compiled)
    total = sum(b.nfe for b in budgets)
    seconds = None if projection.seconds_per_step is None else total * projection.seconds_per_step
    # Without a known GPU, the first measured one gives a yardstick.
    reference = None if seconds is not None else seconds_per_step(next(iter(SECONDS_PER_STEP)), canvas, compiled)
    reference_seconds = None if reference is None or reference.seconds_per_step is None else total * reference.seconds_per_step
    return {
        "panels": budgets, "total_nfe": total, "canvas": canvas, "projection": projection, "seconds": seconds,
        "reference": reference, "reference_seconds": reference_seconds,
    }
