"""The pass itself, pure: a grid-size panel in, an N-times panel out (no file is written here).

1. Enlarge to exactly N times the panel: the upscaler model's output (resized when its own scale
   differs) or Lanczos.
2. Unless the strength is 0, re-detail with the generator's ``refine`` (FLUX Fill image-to-image,
   all-white mask, the panel's text): one call per tile, each tile seeded from the panel's seed.
3. Blend the tiles with cosine ramps (``ipprompt.upscale.tiles``).

Like ``ipprompt.pipeline.execute``, this runs wherever the backend lives; the run folder commits
the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

from ipprompt.upscale.pass_result import PassSettings, pass_size
from ipprompt.upscale.tiles import Tile, blend, plan_tiles

if TYPE_CHECKING:
    from ipprompt.backends.base import Backend
    from ipprompt.upscale.upscaler import Upscaler


@dataclass
class PassOutput:
    """The large panel and what it cost."""

    image: Image.Image = field(repr=False)
    tiles: list[Tile]
    nfe: int
    seconds: float
    enlarged_by: str  # "lanczos" or the upscaler's label
    tile_images: list[Image.Image] = field(default_factory=list, repr=False)  # each tile as re-drawn


def run_pass(
    image: Image.Image,
    settings: PassSettings,
    *,
    prompt: str,
    seed: int,
    backend: "Backend | None" = None,
    upscaler: "Upscaler | None" = None,
    on_tile: Callable[[int, int], None] | None = None,
    on_step: Callable[[], None] | None = None,
    keep_tiles: bool = False,
) -> PassOutput:
    """Enlarge ``image`` by ``settings.factor`` and re-detail it (see the module's steps).

    ``keep_tiles`` keeps each re-drawn tile in the output (for inspecting the blend).
    """
    started = time.perf_counter()
    size = pass_size(image.width, image.height, settings.factor)
    if upscaler is not None:
        large = upscaler.enlarge(image, size)
        how = upscaler.label
    else:
        large = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        how = "lanczos"
    if not settings.uses_flux:
        return PassOutput(large, [], 0, round(time.perf_counter() - started, 3), how)
    if backend is None:
        raise ValueError("a pass with strength > 0 needs a backend to re-detail with")
    tiles = plan_tiles(size[0], size[1], settings.tile, settings.overlap)
    nfe_before = backend.nfe
    outputs: list[Image.Image] = []
    for i, tile in enumerate(tiles):
        crop = large.crop(tile.box)
        # Seeded per tile (never the same noise twice on one panel), reproducibly from the panel.
        out = backend.refine(crop, prompt, settings.strength, (seed + i) % 2**32, settings.steps, settings.guidance, on_step=on_step)
        outputs.append(out if out.size == crop.size else out.resize(crop.size, Image.Resampling.LANCZOS))
        if on_tile is not None:
            on_tile(i + 1, len(tiles))
    result = outputs[0] if len(tiles) == 1 else blend(tiles, outputs, size)
    return PassOutput(result, tiles, backend.nfe - nfe_before, round(time.perf_counter() - started, 3), how, outputs if keep_tiles else [])


def describe(settings: PassSettings) -> dict[str, Any]:
    """The pass's settings as the manifest records them."""
    return {
        "factor": settings.factor, "strength": settings.strength, "tile": settings.tile,
        "overlap": settings.overlap, "upscaler": settings.upscaler,
    }
