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

import math
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
    # Print-resolution pass (ipprompt.upscale): tiles x steps per tile, at tiles of about ``upscale_side``² px.
    upscale_tiles: int = 0
    upscale_nfe: int = 0
    upscale_side: int = 0


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
        tiles, pass_nfe, side = _pass_budget(story, settings, n)
        out.append(PanelBudget(n, elements, arrangements, nfe, schedule if schedule.rungs else None, canvas, tried, tiles, pass_nfe, side))
    return out


def _pass_budget(story: Story, settings: Generation, number: int) -> tuple[int, int, int]:
    """(tiles, NFE, tile side of equal area) of a panel's print pass; zeros when off or no FLUX runs."""
    from ipprompt.dvp.grid import shape_tile
    from ipprompt.pipeline.plan import panel_shape
    from ipprompt.upscale.pass_result import PassSettings, pass_cost

    if not backend_spec(settings.backend).denoises:
        return 0, 0, 0
    width, height = shape_tile(settings.tile, panel_shape(story, settings, number))
    tiles, nfe, (tw, th) = pass_cost(PassSettings.of(settings), width, height)
    return tiles, nfe, round(math.sqrt(tw * th))


def pass_seconds(budgets: list[PanelBudget], gpu: str | None) -> dict[int, float] | None:
    """Projected seconds of each panel's print pass (None without a measured GPU)."""
    out: dict[int, float] = {}
    for b in budgets:
        if not b.upscale_nfe:
            out[b.number] = 0.0
            continue
        sps = seconds_per_step(gpu, b.upscale_side).seconds_per_step
        if sps is None:
            return None
        out[b.number] = b.upscale_nfe * sps
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
    gpu = detect_gpu(device)
    projection = seconds_per_step(gpu, canvas, compiled)
    search_total = sum(b.nfe for b in budgets)
    upscale_nfe = sum(b.upscale_nfe for b in budgets)  # print pass, at its own tile size
    total = search_total + upscale_nfe
    upscale = pass_seconds(budgets, gpu)
    seconds = None if projection.seconds_per_step is None or upscale is None else search_total * projection.seconds_per_step + sum(upscale.values())
    # Without a known GPU, the first measured one gives a yardstick.
    known = next(iter(SECONDS_PER_STEP))
    reference = None if seconds is not None else seconds_per_step(known, canvas, compiled)
    reference_upscale = pass_seconds(budgets, known)
    reference_seconds = (
        None if reference is None or reference.seconds_per_step is None or reference_upscale is None
        else search_total * reference.seconds_per_step + sum(reference_upscale.values())
    )
    return {
        "panels": budgets, "total_nfe": total, "canvas": canvas, "projection": projection, "seconds": seconds,
        "reference": reference, "reference_seconds": reference_seconds,
        "search_nfe": search_total, "upscale_nfe": upscale_nfe, "upscale_seconds": upscale,
    }
