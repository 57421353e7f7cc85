"""The FLUX Fill backend changes nothing the model does, and pausing changes nothing either."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ipprompt.backends.base import FillJob, fill
from ipprompt.backends.factory import MachineOptions
from ipprompt.backends.flux_fill import FluxFillBackend
from ipprompt.dvp.grid import GridSpec, target_mask
from ipprompt.errors import IppromptError, ModelUnavailable

SPEC = GridSpec(3, 64)  # 192 px canvas: the real VAE scale (8), a tiny cost


def random_canvas(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (SPEC.size, SPEC.size, 3), dtype=np.uint8))


def job(prompt: str = "a girl in a yellow raincoat", seed: int = 7, steps: int = 4) -> FillJob:
    return FillJob(random_canvas(), target_mask(SPEC), prompt, seed, steps, 30.0, SPEC)


@pytest.fixture(scope="module")
def backend(tiny_flux_dir: Path) -> FluxFillBackend:
    return FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"))


def test_tiny_pipeline_runs_four_steps(tiny_flux_dir: Path) -> None:
    from diffusers import FluxFillPipeline

    pipe = FluxFillPipeline.from_pretrained(str(tiny_flux_dir), torch_dtype=torch.float32)
    out = pipe(
        prompt="a lighthouse", image=random_canvas(), mask_image=target_mask(SPEC), height=SPEC.size, width=SPEC.size,
        num_inference_steps=4, generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert out.size == (SPEC.size, SPEC.size)


@pytest.mark.slow
def test_backend_equals_direct_pipeline_call(backend: FluxFillBackend) -> None:
    j = job()
    ours = np.array(fill(backend, j))
    direct = backend.pipe(
        prompt=j.prompt, image=j.canvas, mask_image=j.mask, height=SPEC.size, width=SPEC.size,
        num_inference_steps=j.steps, guidance_scale=j.guidance, generator=torch.Generator().manual_seed(j.seed),
    ).images[0]
    assert np.array_equal(ours, np.array(direct))
    # ...and still equal after the pipeline ran (its scheduler state must not leak into ours).
    assert np.array_equal(ours, np.array(fill(backend, j)))


def test_same_seed_same_image_other_seed_other_image(backend: FluxFillBackend) -> None:
    a = np.array(fill(backend, job(seed=1)))
    assert np.array_equal(a, np.array(fill(backend, job(seed=1))))
    assert not np.array_equal(a, np.array(fill(backend, job(seed=2))))


@pytest.mark.parametrize("pause_at", [1, 2, 3])
def test_pause_preview_and_finish_gives_same_pixels(backend: FluxFillBackend, pause_at: int) -> None:
    j = job(steps=4)
    uninterrupted = np.array(fill(backend, j))
    handle = backend.start(j)
    other = backend.start(job(prompt="an old keeper", seed=3))  # interleave another candidate
    backend.advance(handle, pause_at)
    backend.advance(other, 2)
    preview = backend.preview(handle)
    assert preview.size == (SPEC.tile, SPEC.tile)
    backend.advance(other, 1)
    assert np.array_equal(uninterrupted, np.array(backend.finish(handle)))


def test_preview_needs_a_step(backend: FluxFillBackend) -> None:
    with pytest.raises(ValueError):
        backend.preview(backend.start(job()))


def test_nfe_counts_transformer_calls(backend: FluxFillBackend) -> None:
    calls = []
    hook = backend.pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    try:
        before = backend.nfe
        handle = backend.start(job(steps=4))
        backend.advance(handle, 3)
        backend.finish(handle)
    finally:
        hook.remove()
    assert len(calls) == 4 == backend.nfe - before


@pytest.mark.slow
def test_offload_model_on_cpu_gives_same_pixels(tiny_flux_dir: Path, backend: FluxFillBackend) -> None:
    """Offloading moves modules between devices; it must not change the picture.

    Not bit-equal: the offloaded pipeline runs the same float kernels in a different order of
    calls, and on some CPUs (seen on AMD EPYC, not on Intel) a sum lands on the other side of a
    rounding step, so a few pixels differ by one level out of 255 (2 of 36,864 seen). Allowed: at
    most 1 level per pixel on at most 0.1 % of the values; a real difference (a wrong device, a
    skipped module) changes most pixels by far more.
    """
    offloaded = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu", offload="model"))
    a = np.array(fill(offloaded, job())).astype(np.int16)
    b = np.array(fill(backend, job())).astype(np.int16)
    assert a.shape == b.shape
    diff = np.abs(a - b)
    assert diff.max() <= 1, f"a pixel differs by {diff.max()} levels"
    assert np.count_nonzero(diff) <= max(1, diff.size // 1000), f"{np.count_nonzero(diff)} of {diff.size} values differ"


def test_sequential_offload_needs_a_gpu(tiny_flux_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: sequential offload is supported here")
    with pytest.raises(IppromptError, match="CUDA GPU"):
        FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu", offload="sequential"))


def test_quantize_fp8_stores_weights_in_fp8(tiny_flux_dir: Path, backend: FluxFillBackend) -> None:
    fp8 = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu", quantize="fp8"))
    dtypes = {p.dtype for p in fp8.pipe.transformer.parameters()}
    assert torch.float8_e4m3fn in dtypes
    a = np.array(fill(fp8, job())).astype(float)
    b = np.array(fill(backend, job())).astype(float)
    assert a.shape == b.shape and np.abs(a - b).mean() < 20  # same picture, rounding aside


def test_quantize_nf4(tiny_flux_dir: Path) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(IppromptError, match="CUDA GPU"):
            FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu", quantize="nf4"))
        pytest.skip("nf4 (bitsandbytes 4-bit) needs a CUDA GPU; checked the clear refusal on CPU")
    pytest.importorskip("bitsandbytes", reason="nf4 needs the bitsandbytes package")
    nf4 = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cuda", quantize="nf4"))
    assert fill(nf4, job()).size == (SPEC.size, SPEC.size)


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as info:
        FluxFillBackend.load(str(tmp_path / "no-such-model"), MachineOptions(device="cpu"))
    text = str(info.value)
    assert "no-such-model" in text and "--backend preview" in text and "hf auth login" in text
