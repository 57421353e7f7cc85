"""Checks that need a CUDA GPU (skipped elsewhere; ``benchmarks/gpu_check.sh`` runs them).

bf16 pixel equality of our step-wise sampler with ``FluxFillPipeline``, peak memory counted on the
chosen device, compile with fp8 and with model offload, and VAE tiling, on the tiny model.
``IPPROMPT_CUDA_DEVICE`` picks the GPU (default cuda:0).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ipprompt.backends.base import FillJob, fill
from ipprompt.backends.factory import MachineOptions, check_inputs, fp8_kind
from ipprompt.backends.flux_fill import FluxFillBackend
from ipprompt.dvp.grid import GridSpec, target_mask
from ipprompt.errors import IppromptError

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SPEC = GridSpec(3, 64)
DEVICE = os.environ.get("IPPROMPT_CUDA_DEVICE", "cuda:0")


def _job(steps: int = 4, seed: int = 7) -> FillJob:
    from PIL import Image

    canvas = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (SPEC.size, SPEC.size, 3), dtype=np.uint8))
    return FillJob(canvas, target_mask(SPEC), "a girl in a yellow raincoat", seed, steps, 30.0, SPEC)


@pytest.fixture(scope="module")
def backend(tiny_flux_dir: Path) -> FluxFillBackend:
    return FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device=DEVICE))


def test_bf16_sampler_equals_pipeline(backend: FluxFillBackend) -> None:
    assert backend.dtype == torch.bfloat16 and backend.device.type == "cuda"
    j = _job()
    ours = np.array(fill(backend, j))
    direct = backend.pipe(
        prompt=j.prompt, image=j.canvas, mask_image=j.mask, height=SPEC.size, width=SPEC.size,
        num_inference_steps=j.steps, guidance_scale=j.guidance, generator=torch.Generator().manual_seed(j.seed),
    ).images[0]
    assert np.array_equal(ours, np.array(direct))


def test_paused_and_finished_equals_uninterrupted_in_bf16(backend: FluxFillBackend) -> None:
    j = _job(steps=6)
    whole = np.array(fill(backend, j))
    handle = backend.start(j)
    backend.advance(handle, 2)
    backend.preview(handle)
    assert np.array_equal(whole, np.array(backend.finish(handle)))


def test_peak_memory_is_counted_on_the_chosen_device(backend: FluxFillBackend, tmp_path: Path) -> None:
    from ipprompt.pipeline.execute import _device_index

    device = _device_index(backend)
    assert device is not None and device == torch.device(DEVICE) or str(device) == DEVICE
    torch.cuda.reset_peak_memory_stats(device)
    fill(backend, _job())
    assert torch.cuda.max_memory_allocated(device) > 0


@pytest.mark.parametrize(("quantize", "offload"), [("none", "none"), ("fp8", "none"), ("none", "model"), ("fp8", "model")])
def test_compile_combinations(tiny_flux_dir: Path, quantize: str, offload: str) -> None:
    options = MachineOptions(device=DEVICE, compile=True, quantize=quantize, offload=offload)
    try:
        check_inputs("flux-fill", options)
    except IppromptError as refusal:
        assert quantize == "fp8" and fp8_kind(torch.device(DEVICE))[0] == "layerwise", refusal.message
        pytest.skip(f"refused up front, as designed here: {refusal.message[:120]}")
    compiled = FluxFillBackend.load(str(tiny_flux_dir), options)
    image = fill(compiled, _job(steps=3))
    assert image.size == (SPEC.size, SPEC.size) and compiled.stats()["compiled"]


def test_sequential_offload_runs(tiny_flux_dir: Path, backend: FluxFillBackend) -> None:
    seq = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device=DEVICE, offload="sequential"))
    assert np.array_equal(np.array(fill(seq, _job())), np.array(fill(backend, _job())))


def test_vae_tiling_decodes(tiny_flux_dir: Path) -> None:
    tiled = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device=DEVICE, vae_tiling=True))
    assert tiled.pipe.vae.use_tiling
    assert fill(tiled, _job()).size == (SPEC.size, SPEC.size)


def test_fp8_kind_matches_the_card() -> None:
    major, minor = torch.cuda.get_device_capability(torch.device(DEVICE))
    kind, why = fp8_kind(torch.device(DEVICE))
    if (major, minor) < (8, 9):
        assert kind == "layerwise"
    else:
        assert kind in ("torchao", "layerwise") and ("torchao" in why)
