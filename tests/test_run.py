"""Story runs end to end: run folder, manifest, resume after Ctrl-C, preview without models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import run_cli
from ipprompt.backends.factory import MachineOptions
from ipprompt.backends.flux_fill import FluxFillBackend
from ipprompt.pipeline.run import run_story
from ipprompt.runfolder.manifest import read_manifest

FAST = {"tile": 256, "candidates": 2, "rounds": 0, "steps": 2}


class CountingBackend:
    """Wraps a real backend; counts candidate starts; can simulate Ctrl-C at the N-th start."""

    def __init__(self, inner: Any, interrupt_at: int | None = None) -> None:
        self.inner = inner
        self.starts = 0
        self.interrupt_at = interrupt_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def start(self, job: Any, on_step: Any = None) -> Any:
        self.starts += 1
        if self.interrupt_at is not None and self.starts == self.interrupt_at:
            raise KeyboardInterrupt
        return self.inner.start(job, on_step=on_step)


@pytest.fixture(scope="module")
def flux(tiny_flux_dir: Path) -> FluxFillBackend:
    return FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"))


@pytest.mark.slow
def test_cli_run_with_tiny_models_writes_the_run_folder(
    example_copy: Path, tiny_flux_dir: Path, tiny_clip_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    result = run_cli(
        capsys, "story", "run", str(example_copy), "--model", str(tiny_flux_dir), "--encoder", str(tiny_clip_dir),
        "--steps", "4", "--panels", "1-2", "--tile", "256", "--candidates", "3", "--rounds", "1", "--out", str(out),
    )
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out).model_dump(mode="json")  # the index and every record
    assert manifest["models"]["generator"] == str(tiny_flux_dir)
    assert manifest["models"]["retrieval"] == "clip"
    done = [p for p in manifest["panels"] if p["status"] == "done"]
    assert [p["number"] for p in done] == [1, 2]
    assert all(p["status"] == "pending" for p in manifest["panels"][2:])
    for panel in done:
        assert (out / panel["image"]).is_file() and (out / panel["mask"]).is_file()
        chosen = [c for c in panel["candidates"] if c["chosen"]]
        assert len(chosen) == 1 and chosen[0]["index"] == panel["chosen"]
        for cand in panel["candidates"]:
            assert (out / cand["grid"]).is_file() and (out / cand["image"]).is_file()
            assert cand["seed"] == panel["seed"]
            assert cand["arrangement"]["cells"] and "order" in cand["arrangement"]
            scores = cand["scores"] or cand["preview_scores"]
            assert scores["method"] == "clip" and scores["clip_t"] is not None and scores["clip_i"] is not None
        assert panel["nfe"] > 0 and panel["seconds"] > 0
        for element in panel["elements"]:
            assert element["refs"] and all((out / r["thumb"]).is_file() for r in element["refs"])
    assert manifest["totals"]["nfe"] == sum(p["nfe"] for p in done)


@pytest.mark.slow
def test_interrupted_run_resumes_only_remaining_panels(example_copy: Path, flux: FluxFillBackend, tmp_path: Path) -> None:
    out = tmp_path / "run"
    interrupted = CountingBackend(flux, interrupt_at=2 * 2 + 1)  # Ctrl-C as panel 3 starts
    with pytest.raises(KeyboardInterrupt):
        run_story(example_copy, out=out, panels="1-4", backend="flux-fill", backend_instance=interrupted, **FAST)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [p["status"] for p in manifest["panels"][:4]] == ["done", "done", "pending", "pending"]
    assert not list(out.rglob("*.tmp")), "no half-written files"

    resumed = CountingBackend(flux)
    result = run_story(example_copy, out=out, panels="1-4", backend="flux-fill", backend_instance=resumed, **FAST)
    assert result.reused == [1, 2] and result.generated == [3, 4]
    assert resumed.starts == 2 * 2

    # Changing one panel's prompt regenerates that panel only.
    text = example_copy.read_text()
    first_prompt = result.manifest.panels[3].prompt
    example_copy.write_text(text.replace(first_prompt, first_prompt + " at dusk", 1))
    again = CountingBackend(flux)
    result = run_story(example_copy, out=out, panels="1-4", backend="flux-fill", backend_instance=again, **FAST)
    assert result.generated == [4] and result.reused == [1, 2, 3]
    assert again.starts == 2
    assert len(list((out / "history").glob("04-*.png"))) == 1, "the panel's previous image is kept"

    forced = CountingBackend(flux)
    result = run_story(example_copy, out=out, panels="1", backend="flux-fill", backend_instance=forced, force=True, **FAST)
    assert result.generated == [1] and forced.starts == 2


@pytest.mark.slow
def test_text_encoders_run_once_per_panel(example_copy: Path, flux: FluxFillBackend, tmp_path: Path) -> None:
    calls = {"clip": 0, "t5": 0}
    hooks = [
        flux.pipe.text_encoder.register_forward_hook(lambda *a: calls.__setitem__("clip", calls["clip"] + 1)),
        flux.pipe.text_encoder_2.register_forward_hook(lambda *a: calls.__setitem__("t5", calls["t5"] + 1)),
    ]
    try:
        counting = CountingBackend(flux)
        run_story(example_copy, out=tmp_path / "run", panels="5-6", backend="flux-fill", backend_instance=counting,
                  **FAST)
    finally:
        for h in hooks:
            h.remove()
    assert counting.starts == 4  # two candidates per panel...
    assert calls == {"clip": 2, "t5": 2}  # ...but one text encoding per panel


@pytest.mark.slow
def test_preview_run_needs_no_model(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "preview"
    result = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "captions and tags" in result.output  # says it fell back to lexical retrieval
    manifest = read_manifest(out).model_dump(mode="json")  # the index and every record
    assert manifest["models"] == {"generator": None, "encoder": None, "retrieval": "lexical"}
    assert all(p["status"] == "done" for p in manifest["panels"])
    assert len(list((out / "panels").glob("*.png"))) == len(manifest["panels"])
    for panel in manifest["panels"]:
        assert panel["nfe"] == 0
        for cand in panel["candidates"]:
            assert (out / cand["grid"]).is_file() and (out / cand["image"]).is_file()


def test_continuity_uses_previous_panel(example_copy: Path, tmp_path: Path) -> None:
    result = run_story(example_copy, out=tmp_path / "c", panels="1-2", backend="preview", continuity=True,
                       encoder="no-such-local-encoder", candidates=2, rounds=0)
    second = result.manifest.panels[1]
    kinds = [e.kind for e in second.elements]
    assert kinds[-1] == "continuity"
    assert second.elements[-1].refs[0].file == "01.png"


def test_bad_options_and_missing_model_are_clear(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(capsys, "story", "run", str(example_copy), "--tile", "250", "--backend", "preview", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "--tile" in r.stderr and "Traceback" not in r.output
    r = run_cli(capsys, "story", "run", str(example_copy), "--panels", "0-99", "--backend", "preview", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "--panels" in r.stderr
    r = run_cli(capsys, "story", "run", str(example_copy), "--model", str(tmp_path / "nope"), "--encoder", str(tmp_path / "nope-clip"),
                "--out", str(tmp_path / "y"), "--device", "cpu")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "nope" in r.stderr and "--backend preview" in r.stderr


def test_theme_with_too_few_images(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    theme = example_copy.parent / "themes" / "lighthouse"
    for p in sorted(theme.glob("*.png"))[2:]:
        p.unlink()
    shutil.rmtree(theme / ".ipprompt", ignore_errors=True)
    r = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "at least" in r.stderr and "Traceback" not in r.output


def test_never_writes_into_a_foreign_folder(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    r = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--out", str(foreign))
    assert r.exit_code == 2 and "holds no ipprompt run" in r.stderr
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]

    other_story = example_copy.with_name("other.toml")
    other_story.write_text(example_copy.read_text())
    out = tmp_path / "run"
    assert run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--panels", "1", "--out", str(out)).exit_code == 0
    r = run_cli(capsys, "story", "run", str(other_story), "--backend", "preview", "--panels", "1", "--out", str(out))
    assert r.exit_code == 2 and "another story" in r.stderr
