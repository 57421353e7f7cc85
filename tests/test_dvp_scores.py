"""DVP scores what it should: candidates of a panel are comparable, and each score means its name.

- CLIP-T: the cell against the panel's description, never the grid instruction in the prompt;
- CLIP-I: every candidate against one reference set per panel;
- continuity: the previous panel's element by image similarity, never by the text "panel N";
- orderings: with 4 elements the first candidates do not all give element 0 the top cells.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ipprompt.backends.preview import PreviewBackend
from ipprompt.dvp.grid import GridSpec, RefImage, element_orders
from ipprompt.dvp.search import CandidateSearch, PanelPrompt, SearchSettings, panel_references
from ipprompt.dvp.scoring import Scorer

SPEC = GridSpec(3, 64)
GRID_INSTRUCTION = "A grid of illustrations that all share one consistent art style; the empty cell shows: a lighthouse"


class SpyEncoder:
    """The real tiny CLIP encoder, recording every text it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts: list[str] = []
        self.batches: list[list[str]] = []

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        self.batches.append(list(texts))
        return self.inner.embed_texts(texts)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.inner.embed_images(images)


class SpyScorer(Scorer):
    """A real scorer that records what each candidate was compared with."""

    def __init__(self, encoder: Any) -> None:
        super().__init__(encoder)
        self.calls: list[dict[str, Any]] = []

    def score(self, cell, text, element_texts, arrangement, spec, references=None, element_images=()):  # type: ignore[no-untyped-def]
        self.calls.append({"text": text, "references": references, "arrangement": arrangement, "cell": cell})
        return super().score(cell, text, element_texts, arrangement, spec, references=references, element_images=element_images)


@pytest.fixture(scope="module")
def encoder(tiny_clip_dir: Path) -> Any:
    from ipprompt.encoders.clip import ClipEncoder

    return ClipEncoder.load(str(tiny_clip_dir), device="cpu")


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[RefImage, ...], ...]:
    folder = tmp_path_factory.mktemp("dvp-refs")
    rng = np.random.default_rng(4)
    ranked = []
    for e in range(4):
        row = []
        for i in range(9):
            path = folder / f"e{e}-{i}.png"
            Image.fromarray(rng.integers(0, 255, (72, 72, 3), dtype=np.uint8)).save(path)
            row.append(RefImage(f"{e}{i:02d}".ljust(64, "b"), path, f"ref {e}/{i}", round(0.9 - i / 30, 3)))
        ranked.append(tuple(row))
    return tuple(ranked)


def cosine(encoder: Any, image: Image.Image, *, text: str | None = None, other: Image.Image | None = None) -> float:
    vec = encoder.embed_images([image.convert("RGB")])[0]
    ref = encoder.embed_texts([text])[0] if text is not None else encoder.embed_images([other])[0]
    return float(ref @ vec)


def test_clip_t_compares_with_the_panel_description(encoder: Any, refs: tuple) -> None:  # type: ignore[type-arg]
    prompt = PanelPrompt(GRID_INSTRUCTION, ("a girl", "a cliff", "rain"), refs[:3], (), seed=1, description="a lighthouse, flat illustration")
    scorer = SpyScorer(encoder)
    result = CandidateSearch(PreviewBackend(), scorer, SPEC, SearchSettings(candidates=2, rounds=0, steps=2)).run(prompt)
    assert {c["text"] for c in scorer.calls} == {"a lighthouse, flat illustration"}
    cand = result.candidates[0]
    assert cand.scores.clip_t == pytest.approx(cosine(encoder, cand.cell, text="a lighthouse, flat illustration"), abs=1e-5)  # type: ignore[union-attr]
    assert cand.prompt == GRID_INSTRUCTION  # the generator still gets the full prompt


def test_plan_and_execute_carry_the_description(example_copy: Path) -> None:
    from ipprompt.story.elements import PROMPT_PREFIX
    from ipprompt.pipeline.execute import panel_prompt
    from ipprompt.pipeline.plan import plan_panels
    from ipprompt.progress import SilentProgress
    from ipprompt.pipeline.run import open_theme
    from ipprompt.story.loading import Generation, load_story

    story = load_story(example_copy)
    library = open_theme(story, None, SilentProgress())
    job = plan_panels(story, Generation(backend="preview"), library, [1])[0]
    assert job.text.startswith(PROMPT_PREFIX) and not job.description.startswith(PROMPT_PREFIX)
    assert job.description == f"{story.panels[0].prompt}, {story.style}"
    assert panel_prompt(job).description == job.description
    # Continuity: the previous panel's image stands for its element.
    follow = plan_panels(story, Generation(backend="preview", continuity=True), library, [2])[0]
    image = example_copy.parent / "refs" / "mira.png"
    ready = follow.with_previous(image)
    prompt = panel_prompt(ready)
    assert prompt.element_images[-1] is not None and prompt.element_images[-1].path == image
    assert all(im is None for im in prompt.element_images[:-1])


def test_clip_i_uses_one_reference_set_per_panel(encoder: Any, refs: tuple) -> None:  # type: ignore[type-arg]
    pinned = (refs[3][0],)
    prompt = PanelPrompt(GRID_INSTRUCTION, ("a girl", "a cliff", "rain"), refs[:3], pinned, seed=1, description="a girl on a cliff")
    scorer = SpyScorer(encoder)
    settings = SearchSettings(candidates=3, rounds=1, steps=2, search="exhaustive")
    result = CandidateSearch(PreviewBackend(), scorer, SPEC, settings).run(prompt)
    expected = tuple(r for row in refs[:3] for r in row[:3]) + pinned
    assert panel_references(prompt) == expected
    assert len(scorer.calls) == len(result.candidates) >= 4
    assert all(c["references"] == expected for c in scorer.calls), "every candidate: the same set"
    # Refinement placed next-ranked (weaker) references, yet was judged against the same set.
    assert any(any(o > 0 for o in c.arrangement.offsets) for c in result.candidates)
    cand = result.candidates[-1]
    ref_vecs = encoder.embed_images([r.open() for r in expected])
    direct = float(np.mean(ref_vecs @ encoder.embed_images([cand.cell])[0]))
    assert cand.scores.clip_i == pytest.approx(direct, abs=1e-5)  # type: ignore[union-attr]


def test_continuity_element_is_scored_by_image_similarity(encoder: Any, refs: tuple) -> None:  # type: ignore[type-arg]
    previous = refs[3][5]
    ranked = (*refs[:2], (previous,))
    prompt = PanelPrompt(
        GRID_INSTRUCTION, ("a girl", "a cliff", "panel 1"), ranked, (), seed=2, description="a girl on a cliff",
        element_images=(None, None, previous),
    )
    spy = SpyEncoder(encoder)
    result = CandidateSearch(PreviewBackend(), Scorer(spy), SPEC, SearchSettings(candidates=2, rounds=0, steps=2)).run(prompt)
    assert "panel 1" not in spy.texts and "a girl" in spy.texts
    for cand in result.candidates:
        per = cand.scores.per_element  # type: ignore[union-attr]
        assert len(per) == 3
        assert per[2] == pytest.approx(cosine(encoder, cand.cell, other=previous.open()), abs=1e-5)
        # (The tiny CLIP's text vectors depend on the batch's padding: embed as the scorer did.)
        batch = spy.batches[0]
        girl = encoder.embed_texts(batch)[batch.index("a girl")]
        assert per[0] == pytest.approx(float(girl @ encoder.embed_images([cand.cell])[0]), abs=1e-5)


def test_four_elements_vary_the_lead_element(refs: tuple) -> None:  # type: ignore[type-arg]
    orders = element_orders(4, 6)
    assert len(set(orders)) == 6 and len({o[0] for o in orders}) == 4
    assert orders[:4] == [(0, 1, 2, 3), (1, 2, 3, 0), (2, 3, 0, 1), (3, 0, 1, 2)]  # a Latin square: each element at each rank
    assert sorted(element_orders(4, 24)) == sorted(__import__("itertools").permutations(range(4)))
    assert element_orders(3, 6)[0] == (0, 1, 2) and element_orders(3, 6)[1] == (0, 2, 1)  # up to 3: lexicographic, as before
    prompt = PanelPrompt("x", ("a", "b", "c", "d"), refs, (), seed=1)
    search = CandidateSearch(PreviewBackend(), Scorer(None), SPEC, SearchSettings(candidates=6, rounds=0))
    top = [next(p.element for p in a.placements if p.cell == (0, 1)) for a in search.first_round(prompt)]
    assert len(set(top)) == 4, f"the top cell goes to different elements: {top}"
