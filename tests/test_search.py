"""Candidate search: NFE budgets of pruned vs exhaustive, identical pixels, refinement rounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ipprompt.backends.factory import MachineOptions
from ipprompt.backends.flux_fill import FluxFillBackend
from ipprompt.backends.preview import PreviewBackend
from ipprompt.dvp.grid import GridSpec, RefImage
from ipprompt.dvp.search import CandidateSearch, PanelPrompt, SearchSettings
from ipprompt.dvp.scoring import Scorer

SPEC = GridSpec(3, 64)


@pytest.fixture(scope="module")
def backend(tiny_flux_dir: Path) -> FluxFillBackend:
    return FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"))


@pytest.fixture(scope="module")
def encoder(tiny_clip_dir: Path):  # type: ignore[no-untyped-def]
    from ipprompt.encoders.clip import ClipEncoder

    return ClipEncoder.load(str(tiny_clip_dir), device="cpu")


@pytest.fixture(scope="module")
def prompt(tmp_path_factory: pytest.TempPathFactory) -> PanelPrompt:
    folder = tmp_path_factory.mktemp("refs")
    rng = np.random.default_rng(1)
    ranked = []
    for e in range(3):
        refs = []
        for i in range(9):
            path = folder / f"e{e}-{i}.png"
            Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(path)
            refs.append(RefImage(f"{e}{i:02d}".ljust(64, "a"), path, f"ref {e}/{i}", round(1 - i / 20, 3)))
        ranked.append(tuple(refs))
    return PanelPrompt(
        "a girl in a yellow raincoat on a cliff", ("a girl in a yellow raincoat", "a lighthouse on a cliff", "girl waves"),
        tuple(ranked), (), seed=5,
    )


def open_image(ref: RefImage) -> Image.Image:
    return Image.open(ref.path).convert("RGB")


def run_search(backend, encoder, prompt, **settings):  # type: ignore[no-untyped-def]
    s = SearchSettings(**{"candidates": 6, "rounds": 0, "steps": 50, "preview_step": 6, "keep": 1, **settings})
    calls: list[int] = []
    hook = backend.pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    try:
        result = CandidateSearch(backend, Scorer(encoder), SPEC, s).run(prompt)
    finally:
        hook.remove()
    return result, len(calls)


@pytest.fixture(scope="module")
def exhaustive(backend, encoder, prompt):  # type: ignore[no-untyped-def]
    return run_search(backend, encoder, prompt, search="exhaustive")


def test_exhaustive_finishes_every_arrangement(exhaustive) -> None:  # type: ignore[no-untyped-def]
    result, calls = exhaustive
    assert calls == result.nfe == 6 * 50 == 300
    assert all(c.finished and not c.pruned for c in result.candidates)


def test_pruned_first_round_previews_all_and_finishes_one(backend, encoder, prompt) -> None:  # type: ignore[no-untyped-def]
    pruned, calls = run_search(backend, encoder, prompt, search="pruned")
    assert calls == pruned.nfe == 6 * 6 + 44 == 80
    assert sum(c.finished for c in pruned.candidates) == 1 and sum(c.pruned for c in pruned.candidates) == 5
    for c in pruned.candidates:  # previewed candidates keep their preview image and scores
        assert c.cell is not None and c.preview_scores is not None
        assert c.steps_run == (50 if c.finished else 6)


def test_default_budget_with_refinement_is_at_most_120_nfe(backend, encoder, prompt) -> None:  # type: ignore[no-untyped-def]
    settings = SearchSettings()  # the defaults: 6 candidates, 2 rounds of 2 refinements, preview at 6 of 50, keep 1
    assert settings.budget(6) == 6 * 6 + 2 * 2 * 6 + 44 == 104 <= 120
    result, calls = run_search(backend, encoder, prompt, rounds=2, refine=2)
    assert calls == result.nfe <= settings.budget(6)
    assert len(result.candidates) >= 6 and result.rounds_run >= 2, "still tries >= 6 arrangements and refines"
    assert all(c.round == 0 for c in result.candidates[:6]) and any(c.round > 0 for c in result.candidates)
    assert sum(c.finished for c in result.candidates) == 1


def test_finished_panel_equals_an_uninterrupted_run_of_its_arrangement(backend, encoder, prompt) -> None:  # type: ignore[no-untyped-def]
    from ipprompt.backends.base import fill
    from ipprompt.dvp.grid import crop_target

    result, _ = run_search(backend, encoder, prompt, rounds=1, refine=2, steps=12, preview_step=3)
    winner = result.candidates[result.chosen]
    search = CandidateSearch(backend, Scorer(encoder), SPEC, SearchSettings(steps=12))
    full = fill(backend, search._job(winner.arrangement, prompt))
    assert np.array_equal(np.array(result.image), np.array(crop_target(SPEC, full)))


def test_pruned_and_exhaustive_choose_identical_pixels_when_winner_is_finished(backend, encoder, prompt, exhaustive) -> None:  # type: ignore[no-untyped-def]
    ex_result, _ = exhaustive
    # The smallest cut that the exhaustive winner survives (random weights rank previews anyhow).
    for keep in range(1, 7):
        pruned, _ = run_search(backend, encoder, prompt, search="pruned", keep=keep)
        if ex_result.chosen in {c.index for c in pruned.candidates if c.finished}:
            break
    assert sum(c.finished for c in pruned.candidates) == keep
    assert pruned.chosen == ex_result.chosen
    assert np.array_equal(np.array(pruned.image), np.array(ex_result.image))
    # Finished candidates are the same pixels in both modes (pausing changes nothing).
    for c in pruned.candidates:
        if c.finished:
            assert np.array_equal(np.array(c.cell), np.array(ex_result.candidates[c.index].cell))


def test_refinement_rounds_try_new_arrangements(encoder, prompt) -> None:  # type: ignore[no-untyped-def]
    s = SearchSettings(candidates=3, rounds=2, steps=4, search="exhaustive")
    result = CandidateSearch(PreviewBackend(), Scorer(None), SPEC, s).run(prompt)
    signatures = [c.arrangement.signature for c in result.candidates]
    assert len(signatures) == len(set(signatures)), "no arrangement is tried twice"
    assert 1 <= result.rounds_run <= 3
    later = [c for c in result.candidates if c.round > 0]
    assert later, "refinement ran at least one round"
    first = result.candidates[0].arrangement
    # Each refinement changes the weakest element's references or its cells.
    assert all(c.arrangement.order != first.order or c.arrangement.offsets != first.offsets for c in later)
    best = max((c for c in result.candidates if c.finished), key=lambda c: (c.scores.total, -c.index))
    assert result.chosen == best.index


def test_one_element_means_one_arrangement(encoder, prompt) -> None:  # type: ignore[no-untyped-def]
    single = PanelPrompt(prompt.text, prompt.element_texts[:1], prompt.ranked[:1], (), 1)
    s = SearchSettings(candidates=6, rounds=0, steps=4)
    result = CandidateSearch(PreviewBackend(), Scorer(None), SPEC, s).run(single)
    assert len(result.candidates) == 1 and result.chosen == 0
