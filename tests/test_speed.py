"""Issue 10 acceptance on the tiny models: NFE budgets per panel, --fast and LoRAs, --dry-run."""

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


def test_panel_one_nfe_at_defaults_and_fast(example_copy: Path, tiny_flux_dir: Path, tiny_clip_dir: Path, tiny_lora: Path, tmp_path: Path) -> None:
    # Default search settings; a 256 px tile keeps the CPU time small (NFE do not depend on the canvas).
    common = dict(panels="1", model=str(tiny_flux_dir), encoder=str(tiny_clip_dir), device="cpu", tile=256)
    default = run_story(example_copy, out=tmp_path / "default", **common)
    panel = default.manifest.panel(1)
    assert panel is not None and panel.done
    assert 6 * 6 + 44 <= panel.nfe <= 120, panel.nfe  # 104 when both refinement rounds run
    assert len(panel.candidates) >= 6 and panel.rounds_run >= 1
    assert sum(c.finished for c in panel.candidates) == 1
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
    assert Generation().steps == 50
    # Turning --fast off brings the normal defaults back (they were never "written").
    from ipprompt.pipeline.run import apply_overrides

    assert apply_overrides(Generation(fast=True), {"fast": False}).steps == 50
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
    assert "104" in result.output and "NFE" in result.output
    assert "no CUDA GPU" in result.output and "No model was loaded" in result.output
    assert not out.exists()
    fast = run_cli(capsys, "story", "run", str(example_copy), "--dry-run", "--fast", "--panels", "1", "--device", "cpu")
    assert fast.exit_code == 0 and "35" in fast.output


def test_projection_table() -> None:
    assert seconds_per_step("NVIDIA H200", 1536).seconds_per_step == 0.413
    assert seconds_per_step("NVIDIA H200", 1536, compiled=True).seconds_per_step == 0.323
    assert 0.104 < seconds_per_step("NVIDIA H200", 896).seconds_per_step < 0.173
    unknown = seconds_per_step("NVIDIA GeForce RTX 4090", 1536)
    assert unknown.seconds_per_step is None and "unknown GPU" in unknown.source


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
        [sys.executable, str(repo / "benchmarks" / "gpu_check.py"), "--smoke", "--no-compile", "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = out.read_text()
    for method in ("reference", "default", "fast"):
        assert f"| {method} | eager |" in table
    assert "NFE" in table and out.with_suffix(".json").is_file()
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
