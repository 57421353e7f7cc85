"""`ipprompt eval`: every metric checked against a direct computation on known images.

Tiny CLIP and DINOv2 models are built from configs and loaded with ``from_pretrained``, as real
ones are. A preview run of the example story (six panels: Mira alone in 1-2, nobody in 3, Mira
and the Keeper in 4-6) is made once; tests copy it and put known images in its panels.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from conftest import STORIES
from ipprompt.evaluate import metrics
from ipprompt.evaluate.compare import compare, report_document
from ipprompt.evaluate.report import evaluate_run, load_eval_encoders, panel_description
from ipprompt.evaluate.results import EVAL_FILE, RunEval, read_eval, save_eval
from ipprompt.runfolder.manifest import read_manifest
from ipprompt.storyboard.render import render_storyboard

THEME = STORIES / "themes" / "lighthouse"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tiny_dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Dinov2Model + image processor saved with save_pretrained."""
    from ipprompt.testing import build_tiny_dinov2

    return build_tiny_dinov2(tmp_path_factory.mktemp("models") / "tiny-dinov2")


@pytest.fixture(scope="session")
def encoders(tiny_clip_dir: Path, tiny_dino_dir: Path) -> tuple[Any, Any]:
    return load_eval_encoders(str(tiny_clip_dir), str(tiny_dino_dir), device="cpu")


@pytest.fixture(scope="session")
def preview_run(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Path:
    """A preview run of panels 1-6 with the tiny CLIP encoder (read-only: copy it to change it)."""
    from ipprompt.pipeline.run import run_story

    work = tmp_path_factory.mktemp("eval-preview")
    shutil.copytree(STORIES, work / "stories", ignore=shutil.ignore_patterns("index.sqlite*", "__pycache__"))
    out = work / "run"
    run_story(work / "stories" / "lighthouse.toml", out=out, backend="preview", encoder=str(tiny_clip_dir),
              tile=256, candidates=2, rounds=0, panels="1-6")
    return out


@pytest.fixture()
def run_copy(preview_run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(preview_run, dest)
    return dest


def theme_picture(index: int) -> Image.Image:
    files = sorted(THEME.glob("*.png"))
    with Image.open(files[index]) as image:
        return image.convert("RGB")


def unrelated_picture() -> Image.Image:
    noise = np.random.default_rng(7).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    return Image.fromarray(noise, "RGB")


def put_panels(run: Path, pictures: dict[int, Image.Image]) -> None:
    for number, picture in pictures.items():
        picture.save(run / "panels" / f"{number:02d}.png")


def done_numbers(run: Path) -> list[int]:
    return [p.number for p in read_manifest(run).panels if p.done]


# --------------------------------------------------------------------------- pure metrics


def unit_rows(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_metrics_match_direct_sums() -> None:
    images, texts, theme = unit_rows(4), unit_rows(4, seed=1), unit_rows(7, seed=2)
    assert metrics.clip_t(images, texts) == pytest.approx([float(images[i] @ texts[i]) for i in range(4)])
    for k in (1, 3, 7, 20):
        expected = [np.mean(sorted((float(images[i] @ t) for t in theme), reverse=True)[: min(k, 7)]) for i in range(4)]
        assert metrics.theme_fidelity(images, theme, k) == pytest.approx(expected)
    assert metrics.theme_fidelity(images, np.zeros((0, 8))) is None
    pairs = [float(images[i] @ images[j]) for i, j in itertools.combinations(range(4), 2)]
    assert metrics.mean_pairwise(images) == pytest.approx(np.mean(pairs))
    assert metrics.mean_pairwise(images[:1]) is None
    others = metrics.mean_to_others(images)
    assert others[0] == pytest.approx(np.mean([float(images[0] @ images[j]) for j in (1, 2, 3)]))
    vecs = dict(enumerate(images, start=1))
    per = metrics.character_consistency(vecs, {"a": [1, 2, 3], "b": [4], "c": [2, 9]})
    assert set(per) == {"a"}  # b is in one panel; c's panel 9 has no image
    assert per["a"] == pytest.approx(np.mean([float(images[0] @ images[1]), float(images[0] @ images[2]), float(images[1] @ images[2])]))


def test_identical_panels_are_perfectly_consistent() -> None:
    row = unit_rows(1)[0]
    same = np.stack([row] * 5)
    assert metrics.mean_pairwise(same) == pytest.approx(1.0)
    vecs = dict(enumerate(same, start=1))
    assert metrics.character_consistency(vecs, {"a": [1, 2], "b": [3, 4, 5]}) == pytest.approx({"a": 1.0, "b": 1.0})


# --------------------------------------------------------------------------- one run, real encoders


def test_each_metric_equals_a_direct_computation_on_known_images(run_copy: Path, encoders: tuple[Any, Any]) -> None:
    clip, dino = encoders
    numbers = done_numbers(run_copy)
    assert numbers == [1, 2, 3, 4, 5, 6]
    pictures = {n: theme_picture(n) for n in numbers}
    put_panels(run_copy, pictures)
    result = evaluate_run(run_copy, clip, dino)
    manifest = read_manifest(run_copy)
    images = [pictures[n] for n in numbers]
    # Saved PNGs decode to the very pixels, so direct embeddings of the pictures must agree.
    clip_vecs = clip.embed_images(images)
    dino_vecs = dino.embed_images(images)
    texts = clip.embed_texts([panel_description(manifest.panel(n), manifest.story.style) for n in numbers])
    theme_files = sorted(p for p in THEME.iterdir() if p.suffix == ".png")
    theme_vecs = clip.embed_images([Image.open(p).convert("RGB") for p in theme_files])
    k = result.theme_top_k
    assert k == metrics.THEME_TOP_K == 5
    for i, panel in enumerate(result.panels):
        assert panel.number == numbers[i]
        assert panel.clip_t == pytest.approx(float(clip_vecs[i] @ texts[i]), abs=1e-5)
        top = sorted((float(clip_vecs[i] @ t) for t in theme_vecs), reverse=True)[:k]
        assert panel.theme_fidelity == pytest.approx(np.mean(top), abs=1e-5)
        assert panel.preview and panel.backend == "preview"
    mira = [i for i, n in enumerate(numbers) if any(c.id == "mira" for c in manifest.panel(n).characters)]
    keeper = [i for i, n in enumerate(numbers) if any(c.id == "keeper" for c in manifest.panel(n).characters)]
    assert len(mira) >= 2 and len(keeper) >= 2
    for cid, rows in (("mira", mira), ("keeper", keeper)):
        pairs = [float(dino_vecs[a] @ dino_vecs[b]) for a, b in itertools.combinations(rows, 2)]
        assert result.summary.characters[cid] == pytest.approx(np.mean(pairs), abs=1e-5)
    all_pairs = [float(clip_vecs[a] @ clip_vecs[b]) for a, b in itertools.combinations(range(len(numbers)), 2)]
    assert result.summary.style_consistency == pytest.approx(np.mean(all_pairs), abs=1e-5)
    assert result.summary.clip_t == pytest.approx(np.mean([p.clip_t for p in result.panels]), abs=1e-6)
    assert result.panels[2].character_consistency is None  # panel 3 shows nobody
    assert result.preview and result.theme_images == len(theme_files)
    assert result.cost.panels == 6 and result.cost.backend == "preview"


def test_identical_panels_give_one_and_an_unrelated_panel_lowers_only_its_characters(
    run_copy: Path, encoders: tuple[Any, Any]
) -> None:
    clip, dino = encoders
    numbers = done_numbers(run_copy)
    put_panels(run_copy, {n: theme_picture(0) for n in numbers})
    same = evaluate_run(run_copy, clip, dino)
    assert same.summary.characters == pytest.approx({"mira": 1.0, "keeper": 1.0}, abs=1e-5)
    assert same.summary.style_consistency == pytest.approx(1.0, abs=1e-5)
    assert all(p.style_consistency == pytest.approx(1.0, abs=1e-5) for p in same.panels)

    put_panels(run_copy, {2: unrelated_picture()})  # panel 2 shows Mira only
    changed = evaluate_run(run_copy, clip, dino)
    assert changed.summary.characters["mira"] < same.summary.characters["mira"] - 1e-4
    assert changed.summary.characters["keeper"] == pytest.approx(same.summary.characters["keeper"], abs=1e-6)
    by_number = {p.number: p for p in changed.panels}
    assert by_number[2].character_consistency < by_number[1].character_consistency
    assert by_number[3].character_consistency is None


# --------------------------------------------------------------------------- eval.json and the storyboard


def test_results_are_kept_per_encoder_pair(tmp_path: Path) -> None:
    first = RunEval(run=str(tmp_path), encoder="clip-a", dino="dino-a")
    second = RunEval(run=str(tmp_path), encoder="clip-b", dino="dino-a")
    save_eval(tmp_path, first)
    save_eval(tmp_path, second)
    stored = read_eval(tmp_path)
    assert stored is not None and set(stored.results) == {first.key, second.key}
    assert stored.latest == second.key
    (tmp_path / EVAL_FILE).write_text("{ damaged", encoding="utf-8")
    assert read_eval(tmp_path) is None  # a cache: a damaged one is ignored, not fatal


def test_storyboard_shows_metrics_only_for_an_evaluated_run(run_copy: Path, encoders: tuple[Any, Any]) -> None:
    before = render_storyboard(run_copy).read_text(encoding="utf-8")
    assert 'class="eval-box"' not in before
    clip, dino = encoders
    result = evaluate_run(run_copy, clip, dino)
    save_eval(run_copy, result)
    page = render_storyboard(run_copy).read_text(encoding="utf-8")
    assert 'class="eval-box"' in page and "Theme fidelity" in page
    assert f"{result.summary.clip_t:.3f}" in page
    for panel in result.panels:  # per-panel values in the inspector
        assert f"{panel.theme_fidelity:.3f}" in page
    assert "preview panels are reference composites" in page
    assert "The run changed after this evaluation" not in page
    (run_copy / EVAL_FILE).unlink()
    assert render_storyboard(run_copy).read_text(encoding="utf-8") == before


# --------------------------------------------------------------------------- the command


@pytest.mark.slow
def test_eval_two_runs_json_end_to_end(
    example_copy: Path,
    preview_run: Path,
    tiny_flux_dir: Path,
    tiny_clip_dir: Path,
    tiny_dino_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ipprompt.pipeline.run import run_story

    run_a = tmp_path / "flux"
    run_story(example_copy, out=run_a, model=str(tiny_flux_dir), encoder=str(tiny_clip_dir), tile=256, steps=2, candidates=2, rounds=0, panels="1-2")
    run_b = tmp_path / "preview"
    shutil.copytree(preview_run, run_b)
    html = tmp_path / "cmp.html"
    result = run_cli(
        capsys, "eval", run_a, run_b, "--encoder", tiny_clip_dir, "--dino", tiny_dino_dir, "--json", "--html", html
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    a, b = doc["runs"]
    assert a["run"] == str(run_a) and b["run"] == str(run_b)
    assert not a["preview"] and b["preview"]
    assert a["cost"]["nfe"] > 0 and b["cost"]["nfe"] == 0
    for run in (a, b):
        for key in ("clip_t", "theme_fidelity", "character_consistency", "style_consistency"):
            assert isinstance(run["summary"][key], float), key
        assert set(run["summary"]["characters"]) >= {"mira"}
        for panel in run["panels"]:
            assert isinstance(panel["clip_t"], float) and isinstance(panel["theme_fidelity"], float)
    comparison = doc["comparison"]
    assert comparison["same_story"] and comparison["baseline"] == str(run_a)
    rows = {row["metric"]: row for row in comparison["summary"]}
    assert set(rows) == {"clip_t", "theme_fidelity", "character_consistency", "style_consistency"}
    for row in rows.values():
        assert row["deltas"][0] is None
        assert row["deltas"][1] == pytest.approx(row["values"][1] - row["values"][0], abs=1e-6)
    nfe = next(r for r in comparison["cost"] if r["metric"] == "nfe")
    assert nfe["deltas"][1] == -a["cost"]["nfe"]
    assert [p["number"] for p in comparison["panels"]] == [1, 2, 3, 4, 5, 6]
    assert comparison["panels"][3]["metrics"][0]["values"][0] is None  # panel 4 only in run B
    for run in (run_a, run_b):
        stored = read_eval(run)
        assert stored is not None and stored.latest in stored.results
        assert "eval-box" in (run / "storyboard.html").read_text(encoding="utf-8")
    assert "Per panel" in html.read_text(encoding="utf-8")
    # The terminal report of the same two runs (no --json) is tables, and exits 0 too.
    table = run_cli(capsys, "eval", run_a, run_b, "--encoder", tiny_clip_dir, "--dino", tiny_dino_dir, "--no-save")
    assert table.exit_code == 0 and "Comparison" in table.stdout and "preview" in table.stdout


def test_missing_models_name_the_model_and_the_option(
    preview_run: Path, tiny_clip_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-model"
    result = run_cli(capsys, "eval", preview_run, "--encoder", missing, "--dino", missing)
    assert result.exit_code == 2
    assert str(missing) in result.stderr and "--encoder" in result.stderr and "Traceback" not in result.output
    result = run_cli(capsys, "eval", preview_run, "--encoder", tiny_clip_dir, "--dino", missing)
    assert result.exit_code == 2
    assert "DINOv2" in result.stderr and "--dino" in result.stderr
    assert not (preview_run / EVAL_FILE).exists()
    result = run_cli(capsys, "eval", tmp_path / "nowhere", "--encoder", tiny_clip_dir)
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "eval", "--help")
    assert result.exit_code == 0
    assert "ipprompt eval runs/default runs/reference" in result.stdout and "--dino" in result.stdout


def test_compare_needs_two_runs_and_document_has_none_for_one() -> None:
    one = RunEval(run="a", encoder="c", dino="d")
    assert report_document([one])["comparison"] is None
    with pytest.raises(ValueError):
        compare([one])
