"""Candidate search for one panel: the "dynamic" in Dynamic Visual Prompting.

Round 0 tries one arrangement per ordering of the elements (up to ``candidates``). Each refinement
round starts from the best candidate so far and changes what its scores say is weakest: the
weakest element gets its next-ranked references, higher-attention cells, or both (up to ``refine``
new arrangements a round). Rounds continue while the best score improves, up to ``rounds``.

Search modes, counted in transformer evaluations (NFE):
- ``pruned`` (default): every arrangement of every round runs only to ``preview_step`` and is
  judged on its preview (the predicted clean image of the target cell); refinement works on
  previews too. At the end the best ``keep`` previews are finished from where they paused and the
  best finished one wins. At defaults: 6 x 6 + 2 x 6 + 2 x 6 + 1 x 44 = 104 NFE per panel.
  Candidates are deterministic (fixed seed; pausing changes nothing), so the finished panel has
  exactly the pixels an uninterrupted run of its arrangement gives.
- ``exhaustive``: DVP without pruning: the same rounds, but every arrangement runs all ``steps``
  and is judged on its finished image (6 x 50 + 2 x 50 + 2 x 50 = 500 NFE at defaults). (The
  reference method itself, IP-Prompter's grid, prompt and winner rule, is ``method =
  "reference"``: ``ipprompt.dvp.ipprompter``.)

``run_round`` runs one round's arrangements to the point where the mode judges them (preview or
finish) and scores them; ``run`` strings the rounds together and finishes the winners.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from ipprompt.backends.base import Backend, FillJob
from ipprompt.dvp.pruning import is_pruned
from ipprompt.dvp.grid import Arrangement, GridSpec, RefImage, build_canvas, crop_target, element_orders, fit_to_tile, place_references, target_mask
from ipprompt.dvp.scoring import Scorer, Scores


class SearchProgress(Protocol):
    def candidates_added(self, n: int, steps: int = 0) -> None: ...
    def candidate_done(self) -> None: ...


class _NoProgress:
    def candidates_added(self, n: int, steps: int = 0) -> None:
        pass

    def candidate_done(self) -> None:
        pass


@dataclass(frozen=True)
class SearchSettings:
    candidates: int = 6
    rounds: int = 2
    steps: int = 50
    guidance: float = 30.0
    search: str = "pruned"
    preview_step: int = 6
    keep: int = 1
    refine: int = 2
    method: str = "dvp"  # "reference": IP-Prompter's own method (``ipprompt.dvp.ipprompter``)

    @property
    def pruned(self) -> bool:
        """Pruning needs a preview point before the last step."""
        return is_pruned(self.search, self.steps, self.preview_step)

    def budget(self, first_round: int) -> int:
        """The most NFE one panel can cost when round 0 has ``first_round`` arrangements.

        Refinement rounds may stop early (no gain, or no new arrangement), so a panel costs at
        most this, never more.
        """
        if self.method == "reference":  # every permutation to the last step, no refinement
            return first_round * self.steps
        arrangements = first_round + (self.rounds * self.refine if first_round else 0)
        if not self.pruned:
            return arrangements * self.steps
        return arrangements * self.preview_step + min(self.keep, arrangements) * (self.steps - self.preview_step)


@dataclass
class Candidate:
    """One visual prompt tried for a panel, and what became of it."""

    index: int
    round: int
    arrangement: Arrangement
    seed: int
    canvas: Image.Image
    cell: Image.Image | None = None  # final target cell, or the preview cell when only previewed
    preview_scores: Scores | None = None
    scores: Scores | None = None  # final scores (None when only previewed)
    steps_run: int = 0
    pruned: bool = False
    prompt: str = ""  # the exact text sent to the generator
    handle: Any = field(default=None, repr=False)  # the backend's paused state, until finished or dropped

    @property
    def finished(self) -> bool:
        return self.scores is not None

    @property
    def judged(self) -> Scores | None:
        """What this candidate is judged on: its final scores, else its preview's."""
        return self.scores or self.preview_scores


@dataclass
class SearchResult:
    candidates: list[Candidate]
    chosen: int
    rounds_run: int
    nfe: int
    image: Image.Image = field(repr=False, default=None)  # type: ignore[assignment]


@dataclass(frozen=True)
class PanelPrompt:
    """What the search needs to know about the panel."""

    text: str
    element_texts: tuple[str, ...]
    ranked: tuple[tuple[RefImage, ...], ...]  # per element, best first
    pinned: tuple[RefImage, ...]
    seed: int
    label: str = ""
    description: str = ""  # what CLIP-T compares with; the model prompt when empty
    # Per element, an image that stands for it instead of its text (continuity: the previous
    # panel's image); None where the element's text is what the cell should show.
    element_images: tuple[RefImage | None, ...] = ()


# How many of each element's best references make the panel's CLIP-I reference set (the
# reference method places exactly this many per element, so its set is the same).
TOP_REFERENCES = 3


def panel_references(prompt: PanelPrompt) -> tuple[RefImage, ...]:
    """The one set every candidate of a panel is compared with (CLIP-I): each element's top
    references and the pinned ones. A candidate that places weaker references is still judged
    against the best ones, so the scores of different arrangements are comparable."""
    refs: dict[str, RefImage] = {}
    for ranked in prompt.ranked:
        for ref in ranked[:TOP_REFERENCES]:
            refs.setdefault(ref.sha256, ref)
    for ref in prompt.pinned:
        refs.setdefault(ref.sha256, ref)
    return tuple(refs.values())


class CandidateSearch:
    """Runs the rounds of one panel over a backend and a scorer."""

    def __init__(
        self,
        backend: Backend,
        scorer: Scorer,
        spec: GridSpec,
        settings: SearchSettings,
        progress: SearchProgress | None = None,
    ) -> None:
        self.backend = backend
        self.scorer = scorer
        self.spec = spec
        self.settings = settings
        self.progress = progress or _NoProgress()
        self.mask = target_mask(spec)
        self._tiles: dict[str, Image.Image] = {}
        self._references: tuple[PanelPrompt | None, tuple[RefImage, ...]] = (None, ())

    def _tile(self, ref: RefImage) -> Image.Image:
        """A reference fitted to the tile, decoded and resampled once per panel."""
        if ref.sha256 not in self._tiles:
            self._tiles[ref.sha256] = fit_to_tile(ref.open(), self.spec.tile_size)
        return self._tiles[ref.sha256]

    # ------------------------------------------------------------------ arrangements

    def first_round(self, prompt: PanelPrompt) -> list[Arrangement]:
        n = len(prompt.ranked)
        return [
            place_references(self.spec, prompt.ranked, order, None, prompt.pinned)
            for order in element_orders(n, self.settings.candidates)
        ]

    def refinements(self, best: Candidate, prompt: PanelPrompt, seen: set[str]) -> list[Arrangement]:
        """New arrangements from the best one, weakest element first (by its per-element score)."""
        arr = best.arrangement
        scores = best.judged
        per = scores.per_element if scores else ()
        elements = sorted(range(len(arr.order)), key=lambda e: (per[e] if e < len(per) else 0.0, e))
        out: list[Arrangement] = []
        for e in elements:
            promoted = (e, *[x for x in arr.order if x != e])
            share = max(1, len(arr.refs_of(e)))
            advanced = tuple(o + share if i == e else o for i, o in enumerate(arr.offsets))
            for order, offsets in ((promoted, arr.offsets), (arr.order, advanced), (promoted, advanced)):
                if order == arr.order and offsets == arr.offsets:
                    continue
                if offsets[e] >= len(prompt.ranked[e]) and offsets != arr.offsets:
                    continue  # no next-ranked references left for this element
                candidate = place_references(self.spec, prompt.ranked, order, offsets, prompt.pinned)
                if candidate.signature in seen or any(c.signature == candidate.signature for c in out):
                    continue
                out.append(candidate)
                if len(out) >= self.settings.refine:
                    return out
        return out

    # ------------------------------------------------------------------ running

    def _job(self, arrangement: Arrangement, prompt: PanelPrompt) -> FillJob:
        canvas = build_canvas(self.spec, arrangement, self._tile)
        return FillJob(canvas, self.mask, prompt.text, prompt.seed, self.settings.steps, self.settings.guidance, self.spec, prompt.label)

    def _panel_references(self, prompt: PanelPrompt) -> tuple[RefImage, ...]:
        """The panel's CLIP-I reference set, worked out once per panel."""
        if self._references[0] is not prompt:
            self._references = (prompt, panel_references(prompt))
        return self._references[1]

    def _score(self, cell: Image.Image, candidate: Candidate, prompt: PanelPrompt) -> Scores:
        return self.scorer.score(
            cell, prompt.description or prompt.text, prompt.element_texts, candidate.arrangement, self.spec,
            references=self._panel_references(prompt), element_images=prompt.element_images,
        )

    def run_round(self, arrangements: Sequence[Arrangement], prompt: PanelPrompt, round_no: int, first_index: int) -> list[Candidate]:
        """Run one round's arrangements to where the search mode judges them, and score them.

        Pruned: each runs to ``preview_step`` and is scored on its preview; its paused state stays
        on the candidate (``handle``) for ``finish_best``. Exhaustive: each runs to the end and is
        scored on its finished cell.
        """
        s = self.settings
        judge_at = s.preview_step if s.pruned else s.steps
        self.progress.candidates_added(len(arrangements), len(arrangements) * judge_at)
        jobs = [self._job(a, prompt) for a in arrangements]
        candidates = [Candidate(first_index + i, round_no, a, prompt.seed, j.canvas, prompt=j.prompt) for i, (a, j) in enumerate(zip(arrangements, jobs))]
        for c, j in zip(candidates, jobs):
            c.handle = self.backend.start(j)
        # Advance all first, then decode all: under model offload this swaps the transformer
        # and the VAE once per round instead of once per candidate.
        for c in candidates:
            self.backend.advance(c.handle, judge_at)
        if s.pruned:
            for c in candidates:
                c.cell = self.backend.preview(c.handle)
                c.preview_scores = self._score(c.cell, c, prompt)
                c.steps_run = c.handle.step
                self.progress.candidate_done()
        else:
            self._finish(candidates, prompt)
        return candidates

    def _finish(self, candidates: Sequence[Candidate], prompt: PanelPrompt) -> None:
        """Run candidates to the last step, decode and score them (decoding after all denoising)."""
        for c in candidates:
            self.backend.advance(c.handle, self.settings.steps)
        for c in candidates:
            full = self.backend.finish(c.handle)
            c.cell = crop_target(self.spec, full)
            c.steps_run = c.handle.step
            c.scores = self._score(c.cell, c, prompt)
            c.pruned = False
            c.handle = None
            if not self.settings.pruned:
                self.progress.candidate_done()

    def finish_best(self, candidates: Sequence[Candidate], prompt: PanelPrompt) -> None:
        """Pruned search: finish the best ``keep`` previews; the others stay previews (pruned)."""
        waiting = [c for c in candidates if not c.finished]
        ranked = sorted(waiting, key=lambda c: (-c.preview_scores.total, c.index))  # type: ignore[union-attr]
        best = sorted(ranked[: self.settings.keep], key=lambda c: c.index)
        for c in waiting:
            c.pruned = True
        if best:
            self.progress.candidates_added(0, sum(self.settings.steps - c.handle.step for c in best))
        self._finish(best, prompt)
        for c in candidates:
            c.handle = None  # free the paused latents of pruned candidates

    def run(self, prompt: PanelPrompt) -> SearchResult:
        if self.settings.method == "reference":
            from ipprompt.dvp.ipprompter import ReferenceSearch

            return ReferenceSearch(self.backend, self.scorer, self.spec, self.settings, self.progress).run(prompt)
        nfe_before = self.backend.nfe
        arrangements = _unique(self.first_round(prompt))
        candidates = self.run_round(arrangements, prompt, 0, 0)
        seen = {c.arrangement.signature for c in candidates}
        best = _best(candidates)
        rounds_run = 1
        for round_no in range(1, self.settings.rounds + 1):
            fresh = self.refinements(best, prompt, seen)
            if not fresh:
                break
            new = self.run_round(fresh, prompt, round_no, len(candidates))
            candidates.extend(new)
            seen.update(c.arrangement.signature for c in new)
            rounds_run += 1
            challenger = _best(new)
            if challenger.judged.total <= best.judged.total:  # type: ignore[union-attr]
                break  # no gain: stop refining
            best = challenger
        if self.settings.pruned:
            self.finish_best(candidates, prompt)
        winner = max((c for c in candidates if c.finished), key=lambda c: (c.scores.total, -c.index))  # type: ignore[union-attr]
        assert winner.cell is not None
        return SearchResult(candidates, winner.index, rounds_run, self.backend.nfe - nfe_before, winner.cell)


def _unique(arrangements: Sequence[Arrangement]) -> list[Arrangement]:
    seen: dict[str, Arrangement] = {}
    for a in arrangements:
        seen.setdefault(a.signature, a)
    return list(seen.values())


def _best(candidates: Sequence[Candidate]) -> Candidate:
    """The best judged candidate (final scores in exhaustive search, preview scores in pruned)."""
    return max(candidates, key=lambda c: (c.judged.total, -c.index))  # type: ignore[union-attr]
