"""The no-model backend: plan a story and inspect its storyboard on any laptop.

It builds the same grids, masks and manifest as FLUX Fill, and fills the target cell with a
labelled composite of the four highest-attention references of the arrangement, so a writer sees
which references each panel would be drawn from.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageStat

from ipprompt.backends.base import FillJob, StepCallback
from ipprompt.dvp.grid import EMPTY_CELL_COLOR


@dataclass
class PreviewHandle:
    job: FillJob
    step: int = 0
    image: Image.Image | None = None


def _is_empty(cell: Image.Image) -> bool:
    stat = ImageStat.Stat(cell.resize((8, 8)))
    return all(abs(m - c) < 1 and s < 1 for m, c, s in zip(stat.mean, EMPTY_CELL_COLOR, stat.stddev))


def compose_preview(job: FillJob) -> Image.Image:
    """The canvas with its target cell replaced by a 2x2 mosaic of references and a label."""
    spec = job.spec
    width, height = spec.tile_size
    tile = min(width, height)  # text sizes follow the short side
    half_w, half_h = width // 2, height // 2
    cells = [job.canvas.crop(spec.box(c)) for c in spec.attention_order]
    cells = [c for c in cells if not _is_empty(c)][:4]
    target = Image.new("RGB", (width, height), EMPTY_CELL_COLOR)
    for i, cell in enumerate(cells):
        target.paste(cell.resize((half_w, half_h), Image.Resampling.BILINEAR), ((i % 2) * half_w, (i // 2) * half_h))
    draw = ImageDraw.Draw(target)
    font = ImageFont.load_default(size=max(12, tile // 28))
    label = job.label or job.prompt
    lines = textwrap.wrap(label, width=max(16, width // max(7, tile // 40)))[:4]
    line_h = max(14, tile // 24)
    box_h = line_h * (len(lines) + 1) + 8
    draw.rectangle((0, height - box_h, width, height), fill=(20, 24, 40))
    draw.text((8, height - box_h + 4), "PREVIEW", fill=(255, 210, 80), font=font)
    for i, line in enumerate(lines):
        draw.text((8, height - box_h + 4 + line_h * (i + 1)), line, fill=(240, 240, 240), font=font)
    out = job.canvas.copy()
    out.paste(target, spec.box(spec.target)[:2])
    return out


class PreviewBackend:
    """No model, no NFE: a composite stands in for the generated cell."""

    name = "preview"
    model_id: str | None = None

    def __init__(self) -> None:
        self.nfe = 0
        self.starts = 0

    def encode_texts(self, prompts: list[str]) -> None:
        return None

    def release_text_encoders(self) -> None:
        return None

    def start(self, job: FillJob, on_step: StepCallback | None = None) -> PreviewHandle:
        """A composite at once; no denoising happens, so ``on_step`` is never called."""
        self.starts += 1
        return PreviewHandle(job=job, image=compose_preview(job))

    def advance(self, handle: PreviewHandle, steps: int) -> None:
        handle.step = min(handle.job.steps, handle.step + steps)

    def preview(self, handle: PreviewHandle) -> Image.Image:
        assert handle.image is not None
        return handle.image.crop(handle.job.spec.box(handle.job.spec.target))

    def finish(self, handle: PreviewHandle) -> Image.Image:
        handle.step = handle.job.steps
        assert handle.image is not None
        return handle.image

    def refine(
        self, image: Image.Image, prompt: str, strength: float, seed: int, steps: int, guidance: float, on_step: StepCallback | None = None
    ) -> Image.Image:
        """No model to re-detail with: the (already enlarged) image as it is, so preview runs plan the pass."""
        return image.convert("RGB").copy()

    def stats(self) -> dict[str, Any]:
        return {"device": "cpu", "dtype": None, "offload": None, "quantize": None, "compile": False}
