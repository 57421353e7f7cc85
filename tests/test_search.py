"""Candidate search: rungs by noise level, NFE budgets of pruned vs exhaustive, identical pixels, refinement rounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ipprompt.backends.factory import MachineOptions
from ipprompt.backends.flux_fill import FluxFillBackend
from ipprompt.backends.preview import PreviewBackend
from ipprompt.dvp.grid import GridSpec, RefImage
from ipprompt.dvp.methods import method_of
from ipprompt.dvp.rungs import MAX_ELIMINATION_SIGMA, schedule_for
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
    s = SearchSettings(**{"candidates": 6, "rounds": 0, "steps": 28, "calibration": "off", **settings})
    calls: list[int] = []
    hook = backend.pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    try:
        search = CandidateSearch(backend, Scorer(encoder), SPEC, s)
        result = search.run(prompt)
    finally:
        hook.remove()
    result.settings = s  # type: ignore[attr-defined]
    result.search = search  # type: ignore[attr-defined]
    return result, len(calls)


@pytest.fixture(scope="module")
def exhaustive(backend, encoder, prompt):  # type: ignore[no-untyped-def]
    return run_search(backend, encoder, prompt, search="exhaustive")


def test_exhaustive_finishes_every_arrangement(exhaustive) -> None:  # type: ignore[no-untyped-def]
    result, calls = exhaustive
    assert calls == result.nfe == 6 * 28
    assert all(c.finished and not c.pruned for c in result.candidates)
    assert result.schedule is None and result.rungs == []


def test_rungs_come_from_the_models_scheduler_at_the_canvas(backend) -> None:  # type: ignore[no-untyped-def]
    search = CandidateSearch(backend, Scorer(None), SPEC, SearchSettings(calibration="off"))
    schedule = search.schedule
    # The same σ the sampler steps through for a candidate of this canvas.
    handle = backend.start(search._job(search.first_round(_three_elements())[0], _three_elements()))
    sigmas = [float(x) for x in handle.state.scheduler.sigmas]
    for rung in schedule.rungs:
        assert rung.sigma == pytest.approx(sigmas[rung.step - 1]) and rung.sigma <= rung.target + 1e-9
        assert rung.step == 1 or sigmas[rung.step - 2] > rung.target  # the first step that reaches it
    assert schedule.source == "budget balanced"


def _three_elements() -> PanelPrompt:
    return PanelPrompt("x", ("a", "b", "c"), ((), (), ()), (), seed=1)


def test_pruned_search_climbs_the_rungs_and_finishes_two(backend, encoder, prompt) -> None:  # type: ignore[no-untyped-def]
    pruned, calls = run_search(backend, encoder, prompt, search="pruned")
    schedule = pruned.schedule
    assert schedule is not None and len(schedule.rungs) == 2
    assert calls == pruned.nfe == schedule.nfe(6)
    assert sum(c.finished for c in pruned.candidates) == 2 and sum(c.pruned for c in pruned.candidates) == 4
    first, second = pruned.rungs
    assert first["judged"] == list(range(6)) and len(first["kept"]) == 3 and len(second["kept"]) == 2
    assert set(second["judged"]) == set(first["kept"]) and first["sigma"] <= MAX_ELIMINATION_SIGMA
    for c in pruned.candidates:  # every candidate keeps its last preview (or its finished cell) and scores
        assert c.cell is not None and c.preview_scores is not None
        assert c.steps_run == 28 if c.finished else c.steps_run in (first["step"], second["step"])
        assert [j["step"] for j in c.judged_at] == ([first["step"]] if c.index not in first["kept"] else [first["step"], second["step"]])
    # The winner is the best finished candidate.
    best = max((c for c in pruned.candidates if c.finished), key=lambda c: (c.scores.total, -c.index))
    assert pruned.chosen == best.index


def test_default_budget_is_at_most_150_nfe_at_1536(backend, encoder, prompt) -> None:  # type: ignore[no-untyped-def]
    settings = SearchSettings()  # the defaults: 28 steps, 6 candidates, 1 round of 2 refinements, rungs 0.95 / 0.85, finish 2
    schedule = schedule_for((0.95, 0.85), 2, 28, 1536, 1536, "test")
    assert [r.step for r in schedule.rungs] == [9, 17] and schedule.rungs[0].sigma <= 0.95
    assert method_of("dvp").budget(settings, 6, schedule) == 8 * 9 + 4 * 8 + 2 * 11 == 126 <= 150
    result, calls = run_search(backend, encoder, prompt, rounds=1, refine=2)
    assert calls == result.nfe <= method_of("dvp").budget(result.settings, 6, result.schedule)
    assert len(result.candidates) >= 6 and all(c.round == 0 for c in result.candidates[:6])
    assert sum(c.finished for c in result.candidates) == 2
    refined = [c for c in result.candidates if c.round > 0]
    assert all(c.index in result.rungs[0]["judged"] for c in refined), "refinements enter at the first rung"


def test_finished_panel_equals_an_uninterrupted_run_of_its_arrangement(backend, encoder, prompt) -> None:  # type: ignore[no-untyped-def]
    from ipprompt.backends.base import fill
    from ipprompt.dvp.grid import crop_target

    result, _ = run_search(backend, encoder, prompt, rounds=1, refine=2, steps=12)
    assert result.rungs, "the search paused candidates at rungs"
    winner = result.candidates[result.chosen]
    search = CandidateSearch(backend, Scorer(encoder), SPEC, SearchSettings(steps=12))
    full = fill(backend, search._job(winner.arrangement, prompt))
    # Same process, same kernels, same order of operations: bit-equal, no tolerance needed.
    assert np.array_equal(np.array(result.image), np.array(crop_target(SPEC, full)))


def test_finish_arrangement_equals_the_searchs_own_candidate(backend, encoder, prompt) -> None:  # type: ignore[no-untyped-def]
    result, _ = run_search(backend, encoder, prompt, steps=12)
    search = result.search
    for c in result.candidates:
        if c.finished:
            again = search.finish_arrangement(prompt, c.arrangement, c.index, c.seed)
            assert np.array_equal(np.array(again.cell), np.array(c.cell))
            # Exact: same process, same kernels, same pixels, same panel reference set.
            assert again.scores == c.scores


def test_pruned_and_exhaustive_choose_identical_pixels_when_winner_is_finished(backend, encoder, prompt, exhaustive) -> None:  # type: ignore[no-untyped-def]
    ex_result, _ = exhaustive
    # The smallest cut that the exhaustive winner survives (random weights rank previews anyhow).
    for finish in range(2, 7):
        pruned, _ = run_search(backend, encoder, prompt, search="pruned", finish=finish)
        if ex_result.chosen in {c.index for c in pruned.candidates if c.finished}:
            break
    assert sum(c.finished for c in pruned.candidates) == finish
    assert pruned.chosen == ex_result.chosen
    assert np.array_equal(np.array(pruned.image), np.array(ex_result.image))
    # Finished candidates are the same pixels in both modes (pausing changes nothing).
    for c in pruned.candidates:
        if c.finished:
            assert np.array_equal(np.array(c.cell), np.array(ex_result.candidates[c.index].cell))


def test_preview_after_the_last_step_is_the_finished_cell(backend, prompt) -> None:  # type: ignore[no-untyped-def]
    """Previews decode the whole canvas: the last step's prediction is exactly the finished cell
    (decoding the cell's latent slice alone differed by ~19 levels on this 8x VAE)."""
    from ipprompt.dvp.grid import crop_target

    search = CandidateSearch(backend, Scorer(None), SPEC, SearchSettings(steps=3))
    handle = backend.start(search._job(search.first_round(prompt)[0], prompt))
    backend.advance(handle, 3)
    preview = np.array(backend.preview(handle)).astype(int)
    finished = np.array(crop_target(SPEC, backend.finish(handle))).astype(int)
    # Exact: the same decode of the same latents in this process (no other code path to differ).
    assert np.array_equal(preview, finished)


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
    assert sum(c.finished for c in result.candidates) == 1
    assert len(result.candidates) == 1 and result.chosen == 0


def test_cpu_thread_count_joins_the_key_and_ray_workers_use_it() -> None:
    """CPU sums depend on the thread count: a CPU run keys it, a Ray worker computes with it."""
    import torch

    from ipprompt.pipeline.threads import cpu_threads_key, use_job_threads

    n = torch.get_num_threads()
    assert cpu_threads_key("flux-fill", "cpu") == {"cpu_threads": n}
    assert cpu_threads_key("flux-fill", "cuda") == {} and cpu_threads_key("preview", "cpu") == {}
    try:
        torch.set_num_threads(1)  # what Ray gives a worker (OMP_NUM_THREADS=1)
        use_job_threads({"cpu_threads": 2})
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(n)
