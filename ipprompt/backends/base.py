"""The one small interface every generator implements.

Candidate search needs more than "fill this canvas": it starts many candidates, advances them a
few steps, looks at a cheap preview, and finishes only the promising ones. Both backends speak
this step-wise protocol; ``fill`` is the uninterrupted run built from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from ipprompt.dvp.grid import GridSpec


@dataclass
class FillJob:
    """Everything that decides one candidate's pixels."""

    canvas: Image.Image
    mask: Image.Image
    prompt: str
    seed: int
    steps: int
    guidance: float
    spec: GridSpec
    label: str = ""  # what the preview backend writes on its composite


class Backend(Protocol):
    """A generator behind the candidate search."""

    name: str
    model_id: str | None
    nfe: int  # transformer evaluations so far (0 for the preview backend)

    def encode_texts(self, prompts: list[str]) -> None:
        """Encode prompts ahead of time (once per text, shared by all candidates)."""

    def release_text_encoders(self) -> None:
        """Free the text encoders' memory once every prompt is encoded."""

    def start(self, job: FillJob) -> Any:
        """Prepare a candidate at step 0 (noise, masked-image latents)."""

    def advance(self, handle: Any, steps: int) -> None:
        """Run up to ``steps`` more denoising steps."""

    def preview(self, handle: Any) -> Image.Image:
        """The target cell as predicted from the current step (cheap; for pruning)."""

    def finish(self, handle: Any) -> Image.Image:
        """Run the remaining steps and return the whole filled canvas."""

    def stats(self) -> dict[str, Any]:
        """Device, dtype, memory options, for the manifest."""

    # --- print-resolution pass (ipprompt.upscale) ---
    def refine(self, image: Image.Image, prompt: str, strength: float, seed: int, steps: int, guidance: float) -> Image.Image:
        """Re-detail a whole image at ``strength`` (image-to-image); same size out as in."""


def fill(backend: Backend, job: FillJob) -> Image.Image:
    """One uninterrupted candidate: start, then finish."""
    handle = backend.start(job)
    return backend.finish(handle)
