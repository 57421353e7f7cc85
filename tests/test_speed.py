"""NFE budgets per panel on the tiny models (rungs, --budget, --fast and LoRAs, --cache), and --dry-run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from ipprompt.backends.base import FillJob, fill
from ipprompt.backends.factory import MachineOptions, check_inputs
from ipprompt.backends.flux_fill import FluxFillBackend
from ipprompt.backends.lora import parse_lora
from ipprompt.dvp.grid import GridSpec, target_mask
from ipprompt.errors import IppromptError
from ipprompt.pipeline.projection import seconds_per_step
from ipprompt.pipeline.run import run_story

SPEC = GridSpec(3, 64)


@pytest.fixture(scope="module")
def tiny_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ipprompt.testing import build_tiny_lora

    return build_tiny_lora(tmp_path_factory.mktemp("lora") / "tiny-turbo")


def _job(steps: int = 3) -> FillJob:
    from PIL import Image

    canvas = Image.fromarray(np.random.default_rng(0).integers(0, 255, (SPEC.size, SPEC.size, 3), dtype=np.uint8))
    return FillJob(canvas, target_mask(SPEC), "a girl in a yellow raincoat", 7, steps, 30.0, SPEC)


@pytest.mark.slow
def test_panel_one_nfe_at_defaults_and_fast(example_copy: Path, tiny_flux_dir: Path, tiny_clip_dir: Path, tiny_lora: Path, tmp_path: Path) -> None:
    # Default search settings; a 256 px tile keeps the CPU time small (the rungs follow the canvas).
    common = dict(panels="1", model=str(tiny_flux_dir), encoder=str(tiny_clip_dir), device="cpu", tile=256)
    backend = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"))
    calls: list[int] = []
    hook = backend.pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    try:
        default = run_story(example_copy, out=tmp_path / "default", backend_instance=backend, **common)
    finally:
        hook.remove()
    panel = default.manifest.panel(1)
    assert panel is not None and panel.done
    assert panel.nfe == len(calls) <= 150, (panel.nfe, len(calls))  # counted by a forward hook
    assert len(panel.candidates) >= 6 and panel.rounds_run >= 1
    assert sum(c.finished for c in panel.candidates) == 2
    # The manifest records every rung: its step and σ, and which candidates it judged and kept.
    assert panel.schedule_source == "budget balanced" and len(panel.rungs) == 2
    first, second = panel.rungs
    assert first["sigma"] <= 0.95 and first["step"] < second["step"] < 28
    assert first["judged"] == [c.index for c in panel.candidates] and set(second["judged"]) == set(first["kept"])
    assert sorted(c.index for c in panel.candidates if c.finished) == second["kept"]
    for c in panel.candidates:  # previewed candidates stay, with their preview image
        assert c.image and (default.out / c.image).is_file() and (c.finished or c.pruned)
    assert not panel.fast and panel.loras == []

    fast = run_story(example_copy, out=tmp_path / "fast", fast=True, fast_lora=str(tiny_lora), **common)
    panel = fast.manifest.panel(1)
    assert panel is not None and panel.done and panel.nfe <= 40, panel.nfe
    assert panel.settings["steps"] == 8 and panel.fast
    assert [l.source for l in panel.loras] == [str(tiny_lora)]
    assert panel.machine["loras"] == [{"source": str(tiny_lora), "scale": 1.0}]
    html = (fast.out / "storyboard.html").read_text()
    assert "fast" in html and str(tiny_lora) in html


@pytest.mark.slow
def test_lora_loads_through_diffusers_and_changes_pixels(tiny_flux_dir: Path, tiny_lora: Path) -> None:
    base = np.array(fill(FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu")), _job())).astype(int)
    with_lora = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"), loras=[f"{tiny_lora}:0.7"])
    assert with_lora.stats()["loras"] == [{"source": str(tiny_lora), "scale": 0.7}]
    assert not any("lora" in n for n, _ in with_lora.pipe.transformer.named_modules()), "fused, adapters unloaded"
    assert np.abs(np.array(fill(with_lora, _job())) - base).mean() > 1
    zero = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"), loras=[f"{tiny_lora}:0"])
    assert np.array_equal(np.array(fill(zero, _job())), base)


def test_missing_lora_is_refused_before_loading(tmp_path: Path) -> None:
    with pytest.raises(IppromptError, match="LoRA not found"):
        check_inputs("flux-fill", MachineOptions(device="cpu"), [str(tmp_path / "missing.safetensors")])


def test_unknown_hub_lora_is_a_clear_error(tiny_flux_dir: Path) -> None:
    with pytest.raises(IppromptError, match="Cannot load LoRA 'nobody/no-such-lora'") as info:
        FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"), loras=["nobody/no-such-lora"])
    assert "hf download" in info.value.hint


def test_lora_specs() -> None:
    assert parse_lora("owner/name") == parse_lora("owner/name:1")
    assert parse_lora("owner/name:0.8").scale == 0.8 and parse_lora("owner/name:0.8").source == "owner/name"
    assert parse_lora("/loras/style.safetensors:-0.5").source == "/loras/style.safetensors"
    with pytest.raises(ValueError, match="must be a number"):
        parse_lora("owner/name:big")


def test_fast_mode_is_in_the_panel_key(example_copy: Path) -> None:
    from ipprompt.story.loading import Generation

    assert Generation(fast=True).steps == 8 and Generation(fast=True, steps=12).steps == 12
    assert Generation().steps == 28 and Generation(method="reference").steps == 50
    assert Generation(budget="thorough").steps == 50 and Generation(budget="thorough", steps=30).steps == 30
    # Turning --fast off brings the normal defaults back (they were never "written").
    from ipprompt.pipeline.settings import build_settings

    assert build_settings(Generation(fast=True), {"fast": False}).steps == 28
    # A --fast remembered by the run folder is turned off by --no-fast given now.
    assert build_settings(Generation(), {"fast": False}, {"fast": True}).steps == 28
    assert build_settings(Generation(), {}, {"fast": True}).steps == 8
    assert "fast" in __import__("ipprompt.pipeline.plan", fromlist=["KEY_SETTINGS"]).KEY_SETTINGS


def test_dry_run_loads_no_model(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers

    import ipprompt.encoders.clip

    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("--dry-run loaded a model")

    monkeypatch.setattr(diffusers.FluxFillPipeline, "from_pretrained", forbidden)
    monkeypatch.setattr(ipprompt.encoders.clip.ClipEncoder, "load", forbidden)
    out = tmp_path / "never"
    result = run_cli(capsys, "story", "run", str(example_copy), "--dry-run", "--out", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "NFE" in result.output and "Rungs at 1536x1536 for 8 arrangements, from the default (budget balanced)" in result.output
    assert "step 9 σ 0.949 keeps 4, step 17 σ 0.849 keeps 2; 2 finished at step 28" in result.output
    assert "outside the defaults' limits" not in result.output
    rows = [line.split("│") for line in result.stdout.splitlines() if line.count("│") >= 5]
    nfe = {row[1].strip(): int(row[4]) for row in rows if row[1].strip().isdigit()}
    assert nfe and max(nfe.values()) <= 150 and nfe["2"] == 126  # panel 1 is wide: 132
    assert "no CUDA GPU" in result.output and "No model was loaded" in result.output
    assert not out.exists()
    fast = run_cli(capsys, "story", "run", str(example_copy), "--dry-run", "--fast", "--panels", "1", "--device", "cpu")
    assert fast.exit_code == 0, fast.output
    rows = [line.split("│") for line in fast.stdout.splitlines() if line.count("│") >= 5]
    assert int(rows[0][4]) <= 40
    for budget, limit in (("fast", 60), ("thorough", 300)):
        r = run_cli(capsys, "story", "run", str(example_copy), "--dry-run", "--budget", budget, "--panels", "1", "--device", "cpu")
        assert r.exit_code == 0, r.output
        rows = [line.split("│") for line in r.stdout.splitlines() if line.count("│") >= 5]
        assert 0 < int(rows[0][4]) <= limit and f"budget {budget}" in r.output


def test_projection_table() -> None:
    assert seconds_per_step("NVIDIA H200", 1536).seconds_per_step == 0.413
    assert seconds_per_step("NVIDIA H200", 1536, compiled=True).seconds_per_step == 0.323
    assert 0.104 < seconds_per_step("NVIDIA H200", 896).seconds_per_step < 0.173
    unknown = seconds_per_step("NVIDIA GeForce RTX 4090", 1536)
    assert unknown.seconds_per_step is None and "unknown GPU" in unknown.source


@pytest.mark.slow
def test_gpu_check_smoke_runs_on_cpu(tmp_path: Path) -> None:
    """The GPU check's Python part, end to end on the tiny model (eager rows; the shell script adds
    compiled rows and the cuda tests, which skip here)."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "gpu_check.md"
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "gpu_check.py"), "--smoke", "--device", "cpu", "--measure", "1", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = out.read_text()
    for mode in ("eager", "fbcache 0.08", "compiled"):
        assert f"| s/step | 192² | {mode} |" in table and f"| s/step | 96² | {mode} |" in table
    assert "| s/step | 192² | fp8" in table
    for budget in ("balanced", "fast", "thorough"):
        assert f"| panel | 192² | {budget}, eager |" in table
    assert "σ" in table and "NFE" in table and out.with_suffix(".json").is_file()
    for shape in ("square", "wide", "tall"):  # the print pass at 2x, tiled at the smoke's small tile
        assert f"| {shape} |" in table
    assert "Print pass" in table


def test_dry_run_counts_the_reference_method(example_copy, capsys) -> None:  # type: ignore[no-untyped-def]
    """Every permutation to the last step: 3! x 50 = 300 NFE for a 3-element panel, no rounds."""
    from cli_helpers import run_cli

    r = run_cli(capsys, "story", "run", str(example_copy), "--dry-run", "--method", "reference", "--panels", "1-3")
    assert r.exit_code == 0, r.output
    assert "reference method" in r.stdout
    rows = [line.split("│") for line in r.stdout.splitlines() if line.count("│") >= 5]
    nfe = {row[1].strip(): row[4].strip() for row in rows}
    assert nfe["1"] == "300" and nfe["3"] == "100" and nfe["all"] == "700"


def test_old_preview_step_and_keep_still_load() -> None:
    from ipprompt.story.loading import Generation

    old = Generation.model_validate({"preview_step": 6, "keep": 3})
    assert old.finish == 3 and len(old.legacy_notes) == 2
    assert "preview_step" in old.legacy_notes[0] and "finish = 3" in old.legacy_notes[1]
    assert Generation().legacy_notes == []


def _block_calls(backend: FluxFillBackend) -> tuple[list[int], list]:
    """Count the transformer blocks that really compute: a block the cache skips still has its
    (replaced) forward called, but its attention never runs, so the hooks sit on the attention."""
    calls: list[int] = []
    blocks = [*backend.pipe.transformer.transformer_blocks, *backend.pipe.transformer.single_transformer_blocks]
    return calls, [b.attn.register_forward_hook(lambda *a: calls.append(1)) for b in blocks]


def test_fbcache_runs_fewer_transformer_blocks(tiny_flux_dir: Path) -> None:
    from ipprompt.dvp.grid import crop_target

    def run(cache: str) -> tuple[int, int, np.ndarray]:
        backend = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"), cache=cache)
        calls, hooks = _block_calls(backend)
        try:
            handles = [backend.start(_job(12)) for _ in range(2)]  # two candidates, each its own cache state
            for h in handles:
                backend.advance(h, 6)
            images = [np.array(crop_target(SPEC, backend.finish(h))) for h in handles]
        finally:
            for h in hooks:
                h.remove()
        # Exact: two identical jobs in one process run the same kernels on the same inputs.
        assert np.array_equal(images[0], images[1]), "a candidate's cache is its own: interleaving changes nothing"
        return len(calls), backend.nfe, images[0]

    plain_blocks, plain_nfe, _ = run("none")
    cached_blocks, cached_nfe, _ = run("fbcache:0.5")
    assert plain_nfe == cached_nfe == 24  # every step still calls the transformer
    assert cached_blocks < plain_blocks, (cached_blocks, plain_blocks)
    backend = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"), cache="fbcache")
    assert backend.stats()["cache"] == "fbcache threshold 0.08"


def test_cache_settings_are_checked() -> None:
    from ipprompt.story.loading import Generation

    with pytest.raises(ValueError, match="threshold"):
        Generation(cache="fbcache:2")
    with pytest.raises(ValueError, match="unknown cache"):
        Generation(cache="teacache")
    with pytest.raises(IppromptError, match="offload sequential"):
        check_inputs("flux-fill", MachineOptions(device="cpu", offload="sequential"), [], "fbcache")


@pytest.mark.slow
@pytest.mark.parametrize("machine", [dict(compile=True), dict(quantize="fp8")], ids=["compile", "fp8"])
def test_fbcache_combines_with_compile_and_fp8(tiny_flux_dir: Path, machine: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import ipprompt.backends.flux_fill as flux_fill

    monkeypatch.setattr(flux_fill, "COMPILE_BACKEND", "aot_eager")  # graph capture without a C++ build
    backend = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu", **machine), cache="fbcache")
    stats = backend.stats()
    assert stats["cache"] == "fbcache threshold 0.08"
    if machine.get("compile"):
        assert stats["compiled"] == "regional", "the cache's hooks sit in the blocks: compiled without fullgraph"
    else:
        assert stats["fp8"] == "layerwise fp8 storage"
    image = np.array(fill(backend, _job(3)))
    assert image.shape == (SPEC.size, SPEC.size, 3) and backend.nfe == 3
