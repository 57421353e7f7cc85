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
        manifest = json.loads((work / "runs" / sid / "manifest.json").read_text())
        assert all(p["status"] == "done" for p in manifest["panels"])
        assert manifest["models"]["generator"] == str(tiny_flux_dir)
    made = {p: p.stat().st_mtime_ns for p in (work / "runs").glob("*/panels/*.png")}
    # Again: nothing is made anew and the export goes to the same timestamp folder.
    again = run_cli(capsys, *args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in (work / "runs").glob("*/panels/*.png")} == made
    assert [d.name for d in (work / "outputs" / "ipprompt" / "base" / "en").iterdir()] == [stamp]
