"""`ipprompt vistorybench run` with tiny models: import, run every story, export; then resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_cli
from test_vistorybench import DATASET, KEPT, official_shots


def test_tiny_model_run_exports_every_shot_and_resumes(
    tmp_path: Path, tiny_flux_dir: Path, tiny_clip_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    args = [
        "vistorybench", "run", DATASET, "--work", work, "--stories", "full",
        "--model", tiny_flux_dir, "--encoder", tiny_clip_dir, "--steps", "2", "--tile", "256",
        "--candidates", "2", "--rounds", "0", "--device", "cpu",
    ]
    result = run_cli(capsys, *args)
    assert result.exit_code == 0, result.output
    assert "[1/2] story 01: 4 shots" in result.stdout and "[2/2] story 02: 2 shots" in result.stdout
    stamp = json.loads((work / "exports.json").read_text())["ipprompt/base/en"]
    read = official_shots(work / "outputs", "ipprompt", "base", "en", stamp)
    assert {sid: sorted(shots) for sid, shots in read.items()} == KEPT  # every shot the benchmark scores
    for sid in KEPT:
        manifest = json.loads((work / "en" / "runs" / sid / "manifest.json").read_text())
        assert all(p["status"] == "done" for p in manifest["panels"])
        assert manifest["models"]["generator"] == str(tiny_flux_dir)
    made = {p: p.stat().st_mtime_ns for p in (work / "en" / "runs").glob("*/panels/*.png")}
    # Again: nothing is made anew and the export goes to the same timestamp folder.
    again = run_cli(capsys, *args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in (work / "en" / "runs").glob("*/panels/*.png")} == made
    assert [d.name for d in (work / "outputs" / "ipprompt" / "base" / "en").iterdir()] == [stamp]


def test_run_passes_ray_options_through_and_reports_a_failed_story(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--ray` and `--workers` reach run_story unchanged (it spreads each story's panels over the
    workers); a story whose run stops is named, the others are exported, and the exit is 2."""
    import ipprompt.pipeline.run as run_module
    from ipprompt.errors import IppromptError

    real = run_module.run_story
    calls: list[tuple[str, dict]] = []

    def fake_run_story(path: Path, **options):  # noqa: ANN202, ANN003
        calls.append((Path(path).parent.name, dict(options)))
        if Path(path).parent.name == "02":
            raise IppromptError("out of GPU memory while making panel 1")
        options = {k: v for k, v in options.items() if k not in ("ray", "workers")}
        return real(path, **options)

    monkeypatch.setattr(run_module, "run_story", fake_run_story)
    work = tmp_path / "work"
    result = run_cli(capsys, "vistorybench", "run", DATASET, "--work", work, "--stories", "full", "--backend", "preview",
                     "--ray", "local", "--workers", "2", "--timestamp", "20250101_000000")
    assert result.exit_code == 2, result.output
    assert [(sid, o["ray"], o["workers"], o["backend"]) for sid, o in calls] == [("01", "local", 2, "preview"), ("02", "local", 2, "preview")]
    assert "story 02 not finished" in result.stderr and "out of GPU memory" in result.stderr
    read = official_shots(work / "outputs", "ipprompt", "base", "en", "20250101_000000")
    assert {sid: sorted(shots) for sid, shots in read.items()} == {"01": KEPT["01"]}
