"""``method = "reference"``: IP-Prompter's own method, reproduced for the same ranked references.

Users compare our panels with the published method, and we measure our speed against it, so this
module rebuilds what the reference implementation does, rule for rule, rather than our DVP:

- canvas: 3 x 3 tiles on black; every reference fitted by the reference's centre crop (scale the
  short side to the tile with PIL's default ``resize``, then crop the centre), so our canvases are
  pixel-identical to the reference's;
- placement: elements in permuted order, exactly 3 images each (a shorter list is repeated as the
  reference repeats it), in the reference's high-to-low cell order, whose 6th cell is the masked
  centre. We skip pasting that image: the mask erases it and the first sigma is 1.0, so it cannot
  reach the output; the centre stays black;
- pinned images: pasted last at top-centre, bottom-centre, middle-left, middle-right, overwriting
  what was there. The one deliberate difference: we fit them to the tile like every other image
  (the reference pastes them unresized, so a large one covers its neighbours and the mask);
- arrangements: every permutation of the elements, in ``itertools.permutations`` order, each run
  for all steps (no pruning, no refinement);
- prompt: ``REFERENCE_PREFIX`` immediately followed by the panel text;
- winner: the highest CLIP-T between the target cell and the bare panel text (first on ties).

Seeds: the reference draws one seed (``--seed``, or once at random) and uses it for every
permutation and every frame; every candidate here uses the panel's seed, and ``one_seed = true``
makes that the same seed for every panel, as in one multi-frame reference run. An element with no
image leaves its three cells black (the reference loops forever). References open as the reference
opens them (``Image.open(p).convert("RGB")``: no EXIF rotation, transparency not flattened on white;
``ipprompt.images`` mode "plain"), within our size limits.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from PIL import Image

from ipprompt.backends.base import Backend, FillJob
from ipprompt.dvp.grid import Arrangement, Cell, GridSpec, Placement, RefImage
from ipprompt.dvp.methods import method_of
from ipprompt.dvp.search import Candidate, CandidateSearch, PanelPrompt, SearchProgress, SearchResult, SearchSettings
from ipprompt.dvp.scoring import Scorer

if TYPE_CHECKING:
    from ipprompt.story.loading import Generation, Story

REFERENCE_PREFIX = "A diptych with images sharing the same art style. high-quality. "
MAX_ELEMENTS = 3  # the reference's 3 x 3 grid holds 3 images for each of 3 elements
MAX_PINNED = 4  # the reference has 4 places for user-specific images
IMAGES_PER_ELEMENT = 3
# The reference's paste order ("high to low" attention), as (row, column); the 6th is the centre.
REFERENCE_CELLS: tuple[Cell, ...] = ((0, 1), (0, 0), (0, 2), (1, 0), (1, 2), (1, 1), (2, 1), (2, 0), (2, 2))
PINNED_CELLS: tuple[Cell, ...] = ((0, 1), (2, 1), (1, 0), (1, 2))
BACKGROUND = (0, 0, 0)  # the reference's canvas is a fresh black RGB image


def reference_prompt(text: str) -> str:
    """The prompt the reference sends: its fixed prefix immediately followed by the panel text."""
    return REFERENCE_PREFIX + text


def reference_fit(image: Image.Image, width: int, height: int | None = None) -> Image.Image:
    """Fit an image to a ``width`` x ``height`` tile exactly as the reference's centre crop does.

    The same float arithmetic, PIL's default resampling and PIL's rounding of a float crop box:
    anything else (LANCZOS, ``ImageOps.fit``) gives other pixels. The reference only uses square
    tiles; wide and tall panels use the same rule with their own tile sides.
    """
    height = width if height is None else height
    w, h = image.size
    # The reference writes max(width / min(w, h), height / min(w, h)): the same for its square
    # tiles; for a wide or tall tile that would over-crop, so scale until both sides cover it.
    scale = max(width / w, height / h)
    resized = image.resize((int(w * scale), int(h * scale)))
    w, h = resized.size
    return resized.crop((w / 2 - width / 2, h / 2 - height / 2, w / 2 + width / 2, h / 2 + height / 2))


def reference_orders(n_elements: int) -> list[tuple[int, ...]]:
    """Every ordering of the elements, in ``itertools.permutations`` order (the reference's)."""
    return list(itertools.permutations(range(n_elements)))


def reference_arrangement(
    spec: GridSpec, ranked: Sequence[Sequence[RefImage]], order: Sequence[int], pinned: Sequence[RefImage] = ()
) -> Arrangement:
    """Which image sits in which cell for one permutation, by the reference's paste rule."""
    if spec.grid != 3:
        raise ValueError("the reference method uses a 3 x 3 grid")
    if len(order) > MAX_ELEMENTS or sorted(order) != list(range(len(ranked))):
        raise ValueError(f"order {tuple(order)} is not a permutation of at most {MAX_ELEMENTS} elements")
    if len(pinned) > MAX_PINNED:
        raise ValueError(f"the reference method places at most {MAX_PINNED} pinned images, not {len(pinned)}")
    cells: dict[Cell, Placement] = {}
    position = 0
    for e in order:
        images = list(ranked[e])
        while images and len(images) < IMAGES_PER_ELEMENT:
            images = images + images  # the reference doubles a short list until it has 3
        for ref in images[:IMAGES_PER_ELEMENT]:
            cell = REFERENCE_CELLS[position]
            if cell != spec.target:  # the masked centre: erased, so never pasted
                cells[cell] = Placement(cell, ref, e)
            position += 1
        position += IMAGES_PER_ELEMENT - len(images[:IMAGES_PER_ELEMENT])  # no image: cells stay black
    for cell, ref in zip(PINNED_CELLS, pinned):
        cells[cell] = Placement(cell, ref, None)  # pasted last: overwrites what was there
    return Arrangement(tuple(order), tuple(0 for _ in ranked), tuple(cells.values()))


def reference_arrangements(spec: GridSpec, ranked: Sequence[Sequence[RefImage]], pinned: Sequence[RefImage] = ()) -> list[Arrangement]:
    """One arrangement per permutation of the elements: the reference tries them all."""
    return [reference_arrangement(spec, ranked, order, pinned) for order in reference_orders(len(ranked))]


def reference_canvas(spec: GridSpec, arrangement: Arrangement, tile_of: Callable[[RefImage], Image.Image]) -> Image.Image:
    """The reference's canvas: black, each placed image (already fitted by ``tile_of``) in its cell."""
    canvas = Image.new("RGB", spec.canvas_size, BACKGROUND)
    for p in arrangement.placements:
        canvas.paste(tile_of(p.ref), spec.box(p.cell)[:2])
    return canvas


class ReferenceSearch(CandidateSearch):
    """One panel by the reference method, over the same backend, scorer and ``run_round`` as DVP.

    Every permutation is one candidate, all run to the last step (pruning off, no refinement
    round); the winner is the highest CLIP-T (the retrieval score when there is no CLIP model,
    e.g. the preview backend).
    """

    def __init__(self, backend: Backend, scorer: Scorer, spec: GridSpec, settings: SearchSettings, progress: SearchProgress | None = None) -> None:
        if spec.grid != 3:
            raise ValueError("the reference method uses a 3 x 3 grid")
        super().__init__(backend, scorer, spec, replace(settings, search="exhaustive", rounds=0), progress)

    def _tile(self, ref: RefImage) -> Image.Image:
        if ref.sha256 not in self._tiles:
            self._tiles[ref.sha256] = reference_fit(ref.open(mode=method_of(self.settings.method).image_mode), *self.spec.tile_size)
        return self._tiles[ref.sha256]

    def _job(self, arrangement: Arrangement, prompt: PanelPrompt) -> FillJob:
        canvas = reference_canvas(self.spec, arrangement, self._tile)
        return FillJob(canvas, self.mask, prompt.text, prompt.seed, self.settings.steps, self.settings.guidance, self.spec, prompt.label)

    def run(self, prompt: PanelPrompt) -> SearchResult:
        nfe_before = self.backend.nfe
        candidates = self.run_round(reference_arrangements(self.spec, prompt.ranked, prompt.pinned), prompt, 0, 0)
        for c in candidates:
            if c.scores is not None and c.scores.clip_t is not None:
                # The reference ranks by CLIP-T alone; the total the storyboard shows says so.
                c.scores = replace(c.scores, total=c.scores.clip_t)
        best = max((c for c in candidates if c.scores is not None), key=lambda c: (_rank(c), -c.index))
        assert best.cell is not None
        return SearchResult(candidates, best.index, 1, self.backend.nfe - nfe_before, best.cell)


def _rank(candidate: Candidate) -> float:
    s = candidate.scores
    assert s is not None
    return s.clip_t if s.clip_t is not None else s.total


def reference_problems(story: "Story", settings: "Generation", numbers: Sequence[int] | None = None) -> None:
    """Refuse, before anything loads, what the reference method cannot lay out (called through
    ``ipprompt.dvp.methods.method_problems`` for stories made with this method).

    More than 3 elements (the continuity element counts) or more than 4 pinned images in a panel
    is a story error under this method: it names the panel and its line, and says what to change.
    """
    from ipprompt.story.elements import extract_elements
    from ipprompt.story.loading import Problem, StoryError, line_of

    problems: list[Problem] = []
    if settings.grid != 3:
        problems.append(Problem("generation.grid", "the reference method needs grid = 3 (its 3 x 3 layout)", line_of(story, ("generation", "grid"))))
    numbers = list(numbers) if numbers is not None else list(range(1, len(story.panels) + 1))
    for n in numbers:
        panel = story.panels[n - 1]
        loc = ("panels", n - 1)
        elements = extract_elements(panel, story)
        names = [e.label for e in elements]
        if settings.continuity and n > 1:
            names.append(f"continuity:panel {n - 1}")
        if len(names) > MAX_ELEMENTS:
            problems.append(Problem(
                f"panels[{n - 1}]",
                f"panel {n} has {len(names)} key elements ({', '.join(names)}); the reference method lays out at most "
                f"{MAX_ELEMENTS}: give this panel explicit `elements = [...]` with at most {MAX_ELEMENTS}"
                + (" (continuity takes one)" if settings.continuity and n > 1 else ""),
                line_of(story, loc),
            ))
        pinned = sum(len(story.characters[c].refs) for c in dict.fromkeys(panel.characters))
        if pinned > MAX_PINNED:
            problems.append(Problem(
                f"panels[{n - 1}]",
                f"panel {n} has {pinned} pinned reference images (its characters' refs); the reference method places at most {MAX_PINNED}",
                line_of(story, loc),
            ))
    if problems:
        error = StoryError(story.path, problems)
        error.hint = "Fix these panels, or use `--method dvp` (our method has no such limits)."
        raise error
