"""Every combination of --compile, --quantize and --offload runs on the tiny model or is refused
before anything loads, with a clear message (never a traceback at the first panel)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

import ipprompt.backends.flux_fill as flux_fill
from ipprompt.backends.base import FillJob, fill
from ipprompt.backends.factory import MachineOptions, check_inputs
from ipprompt.backends.flux_fill import FluxFillBackend
from ipprompt.dvp.grid import GridSpec, target_mask
from ipprompt.errors import IppromptError

SPEC = GridSpec(3, 64)
COMBINATIONS = list(itertools.product((False, True), ("none", "fp8"), ("none", "model", "sequential")))


def _job() -> FillJob:
    from PIL import Image

    canvas = Image.fromarray(np.random.default_rng(0).integers(0, 255, (SPEC.size, SPEC.size, 3), dtype=np.uint8))
    return FillJob(canvas, target_mask(SPEC), "a lighthouse", 3, 2, 30.0, SPEC)


@pytest.mark.parametrize(("compile", "quantize", "offload"), COMBINATIONS)
def test_every_combination_runs_or_is_refused_up_front(
    tiny_flux_dir: Path, monkeypatch: pytest.MonkeyPatch, compile: bool, quantize: str, offload: str
) -> None:
    # Same graph capture as inductor, without building C++ kernels on a 2-core CI machine.
    monkeypatch.setattr(flux_fill, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    options = MachineOptions(device=device, compile=compile, quantize=quantize, offload=offload)
    try:
        check_inputs("flux-fill", options)
    except IppromptError as refusal:
        assert refusal.hint and "\n" not in refusal.message.strip() or "problems" in refusal.message
        # Refused before loading: the loader refuses in the same words, without touching the model.
        with pytest.raises(IppromptError, match=refusal.message.splitlines()[0][:40].replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
            FluxFillBackend.load(str(tiny_flux_dir / "does-not-matter"), options)
        return
    backend = FluxFillBackend.load(str(tiny_flux_dir), options)
    image = fill(backend, _job())
    assert image.size == (SPEC.size, SPEC.size)
    assert backend.stats()["compile"] is compile and (backend.stats()["compiled"] is not None) is compile


def test_cpu_refusals_name_the_way_out() -> None:
    if torch.cuda.is_available():
        pytest.skip("CPU-only refusals")
    cases = {
        MachineOptions(device="cpu", offload="sequential"): "needs a CUDA GPU",
        MachineOptions(device="cpu", compile=True, offload="sequential"): "compiling",
        MachineOptions(device="cpu", compile=True, quantize="fp8"): "fp8 matmul",
        MachineOptions(device="cpu", attention="flash"): "--attention flash needs a CUDA GPU",
        MachineOptions(device="cpu", compile=True, quantize="nf4"): "do not compile",
    }
    for options, words in cases.items():
        with pytest.raises(IppromptError, match=words):
            check_inputs("flux-fill", options)
    check_inputs("preview", MachineOptions(device="cpu", compile=True, quantize="fp8"))  # no generator: nothing to refuse
