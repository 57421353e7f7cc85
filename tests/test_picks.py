"""The author's loop: pick a candidate, return to the scorer's, reroll a panel, bring back an old image.

Preview-backend runs (no model) for the bookkeeping; the tiny FLUX Fill model where pixels matter
(a finished pick equals a full run of its arrangement; a reroll changes the image).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from ipprompt.backends.factory import MachineOptions
from ipprompt.backends.flux_fill import FluxFillBackend
from ipprompt.backends.preview import PreviewBackend
from ipprompt.errors import IppromptError
from ipprompt.runfolder.manifest import read_manifest
from ipprompt.runfolder.picks import history, pick, pick_auto, restore
from ipprompt.pipeline.plan import REROLL_STRIDE
from ipprompt.pipeline.run import run_story

# Three arrangements, two finished, one only previewed (pruned): every kind of candidate.
PREVIEW = {"backend": "preview", "tile": 256, "candidates": 3, "rounds": 0, "finish": 2}
# 3 steps at 768²: both default rungs fall on step 2 (σ 0.70); the one rung keeps 1 of 3.
TINY = {"backend": "flux-fill", "tile": 256, "candidates": 3, "rounds": 0, "steps": 3, "finish": 1}


@pytest.fixture(scope="module")
def flux(tiny_flux_dir: Path) -> FluxFillBackend:
    return FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"))


def storyboard_article(run: Path, number: int) -> str:
    """The HTML of one panel's article on the comic page."""
    html = (run / "storyboard.html").read_text(encoding="utf-8")
    start = html.index(f'id="panel-{number}"')
    return html[start : html.index("</article>", start)]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_pick_changes_the_storyboard_survives_a_run_and_auto_reverts(
    example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="2", **PREVIEW)
    panel = read_manifest(run).panel(2)
    assert panel is not None and panel.picked_by == "scorer"
    scorer_image = (run / "panels" / "02.png").read_bytes()
    other = next(c for c in panel.candidates if c.finished and c.index != panel.chosen)
    assert 'class="pick-mark' not in storyboard_article(run, 2)

    result = run_cli(capsys, "story", "pick", str(run), "2", str(other.index))
    assert result.exit_code == 0, result.output
    assert f"candidate #{other.index}" in result.stdout
    picked = read_manifest(run).panel(2)
    assert picked is not None
    assert (picked.chosen, picked.scorer_choice, picked.picked_by) == (other.index, panel.chosen, "author")
    assert [c.index for c in picked.candidates if c.chosen] == [other.index]
    assert (run / "panels" / "02.png").read_bytes() == (run / str(other.image)).read_bytes() != scorer_image
    article = storyboard_article(run, 2)
    assert 'src="panels/02.png"' in article and ">picked</span>" in article
    record = json.loads((run / "panels" / "02" / "panel.json").read_text(encoding="utf-8"))
    assert record["chosen"] == other.index and record["picked_by"] == "author", "a rebuilt manifest keeps the pick"
    assert not list((run / "history").glob("02-*.png")), "a candidate's own file keeps the replaced image"

    # A later run with the same key keeps the pick as it is.
    again = run_story(example_copy, out=run, panels="2", **PREVIEW)
    assert again.reused == [2] and again.generated == []
    kept = again.manifest.panel(2)
    assert kept is not None and (kept.chosen, kept.picked_by) == (other.index, "author")
    assert (run / "panels" / "02.png").read_bytes() == (run / str(other.image)).read_bytes()
    assert ">picked</span>" in storyboard_article(run, 2)

    result = run_cli(capsys, "story", "pick", str(run), "2", "--auto")
    assert result.exit_code == 0, result.output
    back = read_manifest(run).panel(2)
    assert back is not None and (back.chosen, back.picked_by) == (panel.chosen, "scorer")
    assert (run / "panels" / "02.png").read_bytes() == scorer_image
    assert 'class="pick-mark' not in storyboard_article(run, 2)


def test_inspector_shows_the_command_that_picks_each_candidate(example_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_story(example_copy, out=Path("my run"), panels="2", **PREVIEW)
    html = (tmp_path / "my run" / "storyboard.html").read_text(encoding="utf-8")
    manifest = read_manifest(tmp_path / "my run")
    for cand in manifest.panel(2).candidates:  # type: ignore[union-attr]
        command = f"ipprompt story pick &#39;my run&#39; 2 {cand.index}"  # shell-quoted, then HTML-escaped
        assert f'<code class="pick-command">{command}</code>' in html
        assert f'<button type="button" class="copy" data-copy="{command}" hidden>Copy</button>' in html
    assert " onclick=" not in html and "javascript:" not in html


def test_a_picked_preview_is_finished_by_the_next_run_alone(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="2-3", **PREVIEW)
    panel = read_manifest(run).panel(2)
    assert panel is not None
    pruned = next(c for c in panel.candidates if c.pruned)
    before = (run / "panels" / "02.png").read_bytes()

    result = run_cli(capsys, "story", "pick", str(run), "2", str(pruned.index))
    assert result.exit_code == 0, result.output
    assert "next `ipprompt story run`" in " ".join(result.stdout.split())
    waiting = read_manifest(run).panel(2)
    assert waiting is not None and waiting.pick_to_finish == pruned.index and waiting.chosen == panel.chosen
    assert (run / "panels" / "02.png").read_bytes() == before, "the panel keeps its image until finished"
    article = storyboard_article(run, 2)
    assert f'src="{pruned.image}"' in article, "the frame shows the picked preview"
    assert "picked; finished on the next run" in article

    backend = PreviewBackend()
    result2 = run_story(example_copy, out=run, panels="2-3", backend_instance=backend, **PREVIEW)
    assert result2.finished == [2] and result2.reused == [3] and result2.generated == []
    assert backend.starts == 1, "only the picked candidate is made"
    done = result2.manifest.panel(2)
    assert done is not None
    cand = done.candidate(pruned.index)
    assert cand is not None and cand.finished and not cand.pruned and cand.scores is not None
    assert cand.preview_image and (run / cand.preview_image).is_file(), "the preview is kept beside it"
    assert (done.chosen, done.picked_by, done.pick_to_finish, done.scorer_choice) == (pruned.index, "author", None, panel.chosen)
    assert (run / "panels" / "02.png").read_bytes() == (run / str(cand.image)).read_bytes()
    assert "finished on the next run" not in storyboard_article(run, 2)

    third = run_story(example_copy, out=run, panels="2-3", **PREVIEW)
    assert third.reused == [2, 3] and third.finished == []


@pytest.mark.slow
def test_finished_pick_equals_a_full_run_of_its_arrangement(example_copy: Path, flux: FluxFillBackend, tiny_clip_dir: Path, tmp_path: Path) -> None:
    """Candidates are deterministic: finishing a previewed one later gives the exhaustive run's
    pixels, and the search's own scores (CLIP-I against the panel's one reference set)."""
    pruned_run, full_run = tmp_path / "pruned", tmp_path / "full"
    TINY = {**globals()["TINY"], "encoder": str(tiny_clip_dir)}
    run_story(example_copy, out=pruned_run, panels="2", backend_instance=flux, **TINY)
    panel = read_manifest(pruned_run).panel(2)
    assert panel is not None
    target = next(c for c in panel.candidates if c.pruned)
    pick(pruned_run, 2, target.index)
    nfe_before = flux.nfe
    result = run_story(example_copy, out=pruned_run, panels="2", backend_instance=flux, **TINY)
    assert result.finished == [2]
    assert flux.nfe - nfe_before == TINY["steps"], "one candidate, every step"
    finished = result.manifest.panel(2)
    assert finished is not None and finished.nfe == panel.nfe + TINY["steps"]

    run_story(example_copy, out=full_run, panels="2", backend_instance=flux, **{**TINY, "search": "exhaustive"})
    full = read_manifest(full_run).panel(2)
    assert full is not None
    same = full.candidate(target.index)
    assert same is not None and same.arrangement.cells == target.arrangement.cells
    assert np.array_equal(pixels(pruned_run / "panels" / "02.png"), pixels(full_run / str(same.image)))
    picked = finished.candidate(target.index)
    assert picked is not None and picked.scores is not None and same.scores is not None
    assert picked.scores.clip_i is not None and picked.scores.clip_i == same.scores.clip_i
    # Exact on any CPU: both runs are in this process, with the same model, kernels, thread count
    # and input pixels (asserted equal above), so CLIP computes the same floats in the same order.
    assert picked.scores == same.scores


@pytest.mark.slow
def test_reroll_changes_only_that_panel_and_history_brings_it_back(
    example_copy: Path, flux: FluxFillBackend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    first = run_story(example_copy, out=run, panels="2-3", backend_instance=flux, **TINY)
    old = {n: first.manifest.panel(n) for n in (2, 3)}
    old_images = {n: (run / "panels" / f"{n:02d}.png").read_bytes() for n in (2, 3)}
    story_text = example_copy.read_text(encoding="utf-8")

    rerolled = run_story(example_copy, out=run, panels="3", reroll=True, backend_instance=flux, **TINY)
    assert rerolled.generated == [3]
    assert example_copy.read_text(encoding="utf-8") == story_text, "the story is not edited"
    new3, new2 = rerolled.manifest.panel(3), rerolled.manifest.panel(2)
    assert new3 is not None and new2 is not None
    assert new3.reroll == 1 and new3.seed == (old[3].seed + REROLL_STRIDE) % 2**32  # type: ignore[union-attr,operator]
    assert all(c.seed == new3.seed for c in new3.candidates)
    assert new3.key != old[3].key  # type: ignore[union-attr]
    assert (run / "panels" / "03.png").read_bytes() != old_images[3]
    assert (new2.seed, new2.key) == (old[2].seed, old[2].key)  # type: ignore[union-attr]
    assert (run / "panels" / "02.png").read_bytes() == old_images[2]
    earlier = history(run, 3)
    assert len(earlier) == 1 and (run / "history" / earlier[0].name).read_bytes() == old_images[3]
    assert history(run, 2) == []

    # A plain run keeps the rerolled panel (and its seed); a second reroll moves on again.
    plain = run_story(example_copy, out=run, backend_instance=flux, panels="2-3", **TINY)
    assert plain.reused == [2, 3] and plain.manifest.panel(3).seed == new3.seed  # type: ignore[union-attr]

    # `story history` lists it; `pick --from-history` brings it back, the current image goes to history.
    result = run_cli(capsys, "story", "history", str(run), "3")
    assert result.exit_code == 0 and earlier[0].name in result.stdout
    rerolled_image = (run / "panels" / "03.png").read_bytes()
    result = run_cli(capsys, "story", "pick", str(run), "3", "--from-history", earlier[0].name)
    assert result.exit_code == 0, result.output
    assert (run / "panels" / "03.png").read_bytes() == old_images[3]
    restored = read_manifest(run).panel(3)
    assert restored is not None and (restored.picked_from_history, restored.picked_by, restored.chosen) == (earlier[0].name, "author", None)
    now = history(run, 3)
    assert [h.name for h in now][0] == earlier[0].name and len(now) == 2
    assert now[0].current and (run / "history" / now[1].name).read_bytes() == rerolled_image
    assert "an earlier image" in storyboard_article(run, 3)
    kept = run_story(example_copy, out=run, backend_instance=flux, panels="3", **TINY)
    assert kept.reused == [3] and (run / "panels" / "03.png").read_bytes() == old_images[3]
    # Back to the scorer's choice of the rerolled panel; nothing was deleted on the way.
    pick_auto(run, 3)
    assert (run / "panels" / "03.png").read_bytes() == rerolled_image
    assert len(history(run, 3)) == 2


def test_pick_refuses_what_it_cannot_do(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="2", **PREVIEW)

    def fails(*args: str) -> str:
        result = run_cli(capsys, "story", *args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        return " ".join(result.stderr.split())

    assert "no candidate 99" in fails("pick", str(run), "2", "99")
    assert "has not been made yet" in fails("pick", str(run), "4", "0")
    assert "has no panel 42" in fails("pick", str(run), "42", "0")
    assert "exactly one" in fails("pick", str(run), "2")
    assert "exactly one" in fails("pick", str(run), "2", "1", "--auto")
    assert "no earlier image named" in fails("pick", str(run), "2", "--from-history", "nope")
    assert "no earlier image named" in fails("pick", str(run), "2", "--from-history", "../manifest.json")
    assert "not a run folder" in fails("pick", str(tmp_path), "2", "0")
    assert "has no earlier images" in run_cli(capsys, "story", "history", str(run), "2").stdout
    with pytest.raises(IppromptError):
        restore(run, 2, "02-nothing.png")
    with pytest.raises(IppromptError, match="reroll needs --panels"):
        run_story(example_copy, out=run, reroll=True, **PREVIEW)


def test_pick_and_a_running_panel_share_the_lock(example_copy: Path, tmp_path: Path) -> None:
    """A pick is a locked read-modify-write: another process's entry for another panel survives it."""
    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="2-3", **PREVIEW)
    from ipprompt.runfolder.folder import RunFolder

    folder = RunFolder(run)
    folder.update(lambda m: setattr(m.panel(3), "caption", "written by another process"))  # type: ignore[arg-type]
    p2 = read_manifest(run).panel(2)
    assert p2 is not None
    pick(run, 2, next(c.index for c in p2.candidates if c.finished and c.index != p2.chosen))
    assert read_manifest(run).panel(3).caption == "written by another process"  # type: ignore[union-attr]
