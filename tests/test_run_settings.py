"""Runs remember their settings: later commands on a run folder need no option typed again, a
differing option is named before anything runs, and an author's pick is never replaced silently."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cli_helpers import run_cli
from ipprompt.runfolder.manifest import read_manifest

# Tiny models, two panels, a rung before the last step (σ 0.95 is reached at step 2 of 3 on a
# 768 px canvas) that finishes one candidate, so that the other is pruned.
PANELS = "1-2"


def _tiny(flux: Path, clip: Path) -> list[str]:
    return ["--model", str(flux), "--encoder", str(clip), "--steps", "3", "--tile", "256", "--candidates", "2",
            "--rounds", "0", "--rungs", "0.95", "--finish", "1", "--panels", PANELS]


def _digests(run: Path) -> dict[str, str]:
    """sha256 of every panel image and candidate file: what "byte-identical" compares."""
    out = {}
    for path in sorted((run / "panels").rglob("*")):
        if path.is_file() and path.suffix in (".png", ".jpg"):
            out[str(path.relative_to(run))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def made_run(example_copy: Path, tmp_path: Path, tiny_flux_dir: Path, tiny_clip_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    run = tmp_path / "run"
    result = run_cli(capsys, "story", "run", str(example_copy), "--out", str(run), *_tiny(tiny_flux_dir, tiny_clip_dir))
    assert result.exit_code == 0, result.output
    return example_copy, run


def test_a_pick_is_finished_by_a_run_with_no_model_options(made_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    story, run = made_run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manifest = read_manifest(run)
    assert manifest.options["model"] and manifest.options["steps"] == 3, "the run folder records the options given"
    panel = manifest.panel(1)
    assert panel is not None
    pruned = next(c for c in panel.candidates if c.pruned)
    result = run_cli(capsys, "story", "pick", str(run), "1", str(pruned.index))
    assert result.exit_code == 0, result.output
    before = _digests(run)

    result = run_cli(capsys, "story", "run", str(story), "--out", str(run), "--panels", PANELS)  # no model options
    assert result.exit_code == 0, result.output
    assert "Using this run folder's options" in result.output
    done = read_manifest(run).panel(1)
    assert done is not None and (done.chosen, done.picked_by, done.pick_to_finish) == (pruned.index, "author", None)
    after = _digests(run)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed <= {"panels/01.png", f"panels/01/cand-{pruned.index}.png"}, changed
    assert all(k.startswith("panels/01") for k in set(after) - set(before)), "only panel 1 gained files"


def test_a_differing_option_keeps_picked_panels_and_loses_nothing(made_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    story, run = made_run
    panel = read_manifest(run).panel(2)
    assert panel is not None
    other = next(c for c in panel.candidates if c.index != panel.chosen)
    assert run_cli(capsys, "story", "pick", str(run), "2", str(other.index)).exit_code == 0
    picked_bytes = (run / "panels" / "02.png").read_bytes()
    replaced = (run / "panels" / "01.png").read_bytes()

    result = run_cli(capsys, "story", "run", str(story), "--out", str(run), "--panels", PANELS, "--steps", "4")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "--steps 4 differs from this run's 3" in text and "--remake-picked" in text and "picked panels 2 stay" in text
    assert (run / "panels" / "02.png").read_bytes() == picked_bytes, "the author's pick is byte-identical"
    history = [p.read_bytes() for p in (run / "history").glob("*.png")]
    assert replaced in history, "the replaced image of panel 1 is in history/"
    assert read_manifest(run).options["steps"] == 4

    result = run_cli(capsys, "story", "run", str(story), "--out", str(run), "--panels", PANELS, "--remake-picked")
    assert result.exit_code == 0, result.output
    assert picked_bytes in [p.read_bytes() for p in (run / "history").glob("*.png")], "a remade pick goes to history/"


def test_eval_uses_the_runs_encoder_and_agrees_with_the_run_summary(made_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, run = made_run
    result = run_cli(capsys, "eval", str(run), "--json", "--no-save")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    evaluated = {p["number"]: p["clip_t"] for p in doc["runs"][0]["panels"]}
    for panel in (p for p in read_manifest(run).panels if p.done):
        chosen = panel.candidate(panel.chosen) if panel.chosen is not None else None
        assert chosen is not None and chosen.scores is not None
        # The same model on the same pixels; batching may move the last float bits (CPU kernels).
        assert abs(chosen.scores.clip_t - evaluated[panel.number]) <= 1e-4, (panel.number, chosen.scores.clip_t, evaluated)


def test_reindex_with_another_encoder_becomes_the_themes_encoder(tmp_path: Path, tiny_clip_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from conftest import EXAMPLE_THEME

    theme = tmp_path / "theme"
    shutil.copytree(EXAMPLE_THEME, theme, ignore=shutil.ignore_patterns("index.sqlite*"))
    result = run_cli(capsys, "theme", "reindex", str(theme), "--encoder", str(tiny_clip_dir))
    assert result.exit_code == 0, result.output
    shown = run_cli(capsys, "theme", "show", str(theme))
    assert shown.exit_code == 0 and str(tiny_clip_dir.name) in " ".join(shown.output.split()), shown.output
    found = run_cli(capsys, "theme", "search", str(theme), "lighthouse", "--json")
    assert found.exit_code == 0, found.output
    assert Path(json.loads(found.stdout)["encoder"]).name == tiny_clip_dir.name


def test_an_unknown_backend_names_the_registered_ones(example_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "story", "run", str(example_copy), "--backend", "nope", "--dry-run")
    assert result.exit_code == 2
    assert "flux-fill" in result.output and "preview" in result.output


def test_layout_has_few_top_level_modules_and_no_string_checks_outside_registries() -> None:
    import re

    root = Path(__file__).resolve().parent.parent / "ipprompt"
    top = sorted(p.name for p in root.glob("*.py"))
    assert len(top) <= 8, top
    too_long = [str(p) for p in root.rglob("*.py") if len(p.read_text().splitlines()) > 400]
    assert not too_long, too_long
    checks = re.compile(r'== "preview"|== "reference"')
    offenders = [str(p) for p in root.rglob("*.py") if checks.search(p.read_text()) and "registry" not in p.name and p.name != "methods.py"]
    assert not offenders, offenders
