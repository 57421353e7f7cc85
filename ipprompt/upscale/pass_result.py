"""The pass's settings, its key, and its cost arithmetic (shared by the run and ``--dry-run``).

The pass runs after the search and never feeds back into it, so its settings stay out of the
panel key: changing ``upscale`` must not make the search run again. It has its own key instead,
``upscale_key``: the pass settings, the generator that re-details, the panel text and seed, and
the sha256 of the grid-size image it starts from. A kept panel whose ``upscale_key`` differs
re-runs only the pass; a pick or a restored image changes the source sha, so its pass re-runs too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ipprompt.upscale.tiles import plan_tiles

if TYPE_CHECKING:
    from ipprompt.story.schema import Generation

PASS_KEY_VERSION = "ipprompt-upscale-1"


@dataclass(frozen=True)
class PassSettings:
    """What the pass does to a panel (the ``upscale*`` keys of [generation], plus steps and guidance)."""

    factor: int
    strength: float
    tile: int
    overlap: int
    upscaler: str | None
    steps: int
    guidance: float

    @classmethod
    def of(cls, g: "Generation") -> "PassSettings":
        return cls(g.upscale, g.upscale_strength, g.upscale_tile, g.upscale_overlap, g.upscaler, g.steps, g.guidance)

    @property
    def enabled(self) -> bool:
        return self.factor > 1

    @property
    def uses_flux(self) -> bool:
        """Strength 0 is enlargement only (Lanczos or the upscaler model): no generator runs."""
        return self.enabled and self.strength > 0

    @property
    def steps_per_tile(self) -> int:
        return refine_steps(self.steps, self.strength) if self.uses_flux else 0


def refine_steps(steps: int, strength: float) -> int:
    """Denoising steps an image-to-image call runs: diffusers' ``get_timesteps`` arithmetic.

    ``FluxFillPipeline`` skips the first ``int(steps - steps * strength)`` of ``steps`` steps, so
    at 50 steps and strength 0.35 it runs 18 (one transformer evaluation each).
    """
    init = min(steps * strength, steps)
    return steps - int(max(steps - init, 0))


def pass_size(width: int, height: int, factor: int) -> tuple[int, int]:
    return width * factor, height * factor


def pass_cost(settings: PassSettings, width: int, height: int) -> tuple[int, int, tuple[int, int]]:
    """(tiles, NFE, tile size) of the pass on a ``width`` x ``height`` panel (grid size)."""
    if not settings.uses_flux:
        return 0, 0, (0, 0)
    w, h = pass_size(width, height, settings.factor)
    tiles = plan_tiles(w, h, settings.tile, settings.overlap)
    return len(tiles), len(tiles) * settings.steps_per_tile, tiles[0].size


def pass_key(
    settings: PassSettings,
    source_sha256: str,
    *,
    text: str,
    seed: int,
    upscaler_sha256: str | None,
    generator: dict[str, Any],
) -> str:
    """Hash of everything that decides the large panel's pixels (never the search's settings)."""
    data: dict[str, Any] = {
        "v": PASS_KEY_VERSION,
        "source": source_sha256,
        "factor": settings.factor,
        "upscaler": upscaler_sha256,
    }
    if settings.uses_flux:  # enlargement alone does not depend on the generator or the text
        data.update(
            strength=settings.strength, tile=settings.tile, overlap=settings.overlap, steps=settings.steps,
            guidance=settings.guidance, text=text, seed=seed, generator=generator,
        )
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]
