"""The one small interface every generator implements.

Candidate search needs more than "fill this canvas": it starts many candidates, advances them a
few steps, looks at a cheap preview, and finishes only the promising ones. Both backends speak
this step-wise protocol; ``fill`` is the uninterrupted run built from it.
"""

from __future__ import annotations

from collections.abc import Callable
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


StepCallback = Callable[[], None]  # called after every denoising step (progress bars)


class CandidateHandle(Protocol):
    """A candidate paused between steps: what the search reads of a backend's handle."""

    step: int  # denoising steps run so far: the search resumes, counts and records from it


class Backend(Protocol):
    """A generator behind the candidate search.

    A candidate is started once (``start``), advanced in as many slices as the search wants
    (``advance``), looked at cheaply while paused (``preview``) and run to its end (``finish``).
    The step callback is an argument of ``start`` (as diffusers' ``callback_on_step_end`` is of
    ``__call__``): it travels with the candidate, never as state on the backend.
    """

    name: str
    model_id: str | None
    nfe: int  # transformer evaluations so far (0 for the preview backend)

    def encode_texts(self, prompts: list[str]) -> None:
        """Encode prompts ahead of time (once per text, shared by all candidates)."""

    def release_text_encoders(self) -> None:
        """Free the text encoders' memory once every prompt is encoded."""

    def start(self, job: FillJob, on_step: StepCallback | None = None) -> CandidateHandle:
        """Prepare a candidate at step 0 (noise, masked-image latents); ``on_step`` is called
        after each of its denoising steps."""

    def advance(self, handle: Any, steps: int) -> None:
        """Run up to ``steps`` more denoising steps (never past the candidate's last)."""

    def preview(self, handle: Any) -> Image.Image:
        """The target cell as predicted from the current step (cheap; for pruning)."""

    def finish(self, handle: Any) -> Image.Image:
        """Run the remaining steps and return the whole filled canvas."""

    def stats(self) -> dict[str, Any]:
        """Device, dtype, memory options, for the manifest."""

    def refine(
        self, image: Image.Image, prompt: str, strength: float, seed: int, steps: int, guidance: float, on_step: StepCallback | None = None
    ) -> Image.Image:
        """Re-detail a whole image at ``strength`` (image-to-image, the print pass); same size out as
        in. ``on_step`` is called after every denoising step."""


def fill(backend: Backend, job: FillJob) -> Image.Image:
    """One uninterrupted candidate: start, then finish."""
    handle = backend.start(job)
    return backend.finish(handle)
