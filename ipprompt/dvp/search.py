"""Candidate search for one panel: the "dynamic" in Dynamic Visual Prompting.

Round 0 tries one arrangement per ordering of the elements (up to ``candidates``). Each refinement
round starts from the best candidate so far and changes what its scores say is weakest: the
weakest element gets its next-ranked references, higher-attention cells, or both (up to ``refine``
new arrangements a round). Rounds continue while the best score improves, up to ``rounds``.

Search modes, counted in transformer evaluations (NFE):
- ``pruned`` (default): candidates are judged at rungs by noise level (``ipprompt.dvp.rungs``).
  Every arrangement, refinements included, runs to the first rung and is judged on its preview
  (the predicted clean image of the target cell, decoded with the whole canvas around it); the
  better half goes on to the next rung, and the last rung keeps ``finish`` candidates, which run to
  the end; the best finished one wins. At the defaults (28 steps, 1536²): 8 x 9 + 4 x 8 + 2 x 11 =
  126 NFE per panel. Candidates are deterministic (fixed seed; pausing changes nothing), so a
  finished panel has exactly the pixels an uninterrupted run of its arrangement gives (without
  ``cache``: a cache decides per step what to skip from the steps it has seen).
- ``exhaustive``: DVP without pruning: the same rounds, but every arrangement runs all ``steps``
  and is judged on its finished image. (The reference method, IP-Prompter's grid, prompt and
  winner rule, is ``method = "reference"``: ``ipprompt.dvp.ipprompter``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from ipprompt.backends.base import Backend, FillJob
from ipprompt.dvp.grid import Arrangement, GridSpec, RefImage, build_canvas, crop_target, element_orders, fit_to_tile, place_references, target_mask
from ipprompt.dvp.profiles import resolve_schedule
from ipprompt.dvp.rungs import Schedule
from ipprompt.dvp.scoring import Scorer, Scores


class SearchProgress(Protocol):
    def candidates_added(self, n: int, steps: int = 0) -> None: ...
    def candidate_done(self) -> None: ...
    def step(self) -> None: ...


class _NoProgress:
    def candidates_added(self, n: int, steps: int = 0) -> None:
        pass

    def candidate_done(self) -> None:
        pass

    def step(self) -> None:
        pass


@dataclass(frozen=True)
class SearchSettings:
    candidates: int = 6
    rounds: int = 1
    steps: int = 28
    guidance: float = 30.0
    search: str = "pruned"
    refine: int = 2
    method: str = "dvp"  # a name in ``ipprompt.dvp.methods.METHODS``
    rungs: tuple[float, ...] | None = None  # σ targets; None: a calibration profile's, else the budget's
    finish: int = 2  # candidates the last rung keeps
    budget: str = "balanced"
    calibration: str = "auto"  # "off": never place rungs from a profile
    model: str = ""  # what a calibration profile is keyed by (with the canvas, steps and LoRAs)
    loras: tuple[str, ...] = ()  # LoRA fingerprints (JSON), for the profile key

    @property
    def pruned(self) -> bool:
        return self.search == "pruned"

    def arrangements(self, first_round: int) -> int:
        """The most arrangements one panel tries when round 0 has ``first_round``."""
        return first_round + (self.rounds * self.refine if first_round else 0)

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
    judged_at: list[dict[str, Any]] = field(default_factory=list)  # each rung's step, σ and preview total
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
    schedule: Schedule | None = None  # the rungs used (None: every candidate ran to the end)
    rungs: list[dict[str, Any]] = field(default_factory=list)  # per rung: step, σ, judged, kept


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
        self._schedule: Schedule | None = None

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

    @property
    def schedule(self) -> Schedule:
        """This panel's rungs, on the σ of the loaded model's scheduler at this canvas."""
        if self._schedule is None:
            scheduler = getattr(self.backend, "scheduler", None)
            self._schedule = resolve_schedule(self.settings, self.spec.width, self.spec.height, scheduler)
        return self._schedule

    def _release(self, candidate: Candidate) -> None:
        """Drop a candidate's paused state (and whatever the backend keeps for it, e.g. its cache)."""
        release = getattr(self.backend, "release", None)
        if candidate.handle is not None and release is not None:
            release(candidate.handle)
        candidate.handle = None

    def _judge(self, candidates: Sequence[Candidate], step: int, prompt: PanelPrompt, sigma: float | None) -> None:
        """Advance candidates to ``step`` and score their previews there.

        Advance all first, then decode all: under model offload this swaps the transformer and
        the VAE once per rung instead of once per candidate.
        """
        for c in candidates:
            self.backend.advance(c.handle, step - c.handle.step)
        for c in candidates:
            c.cell = self.backend.preview(c.handle)
            c.preview_scores = self._score(c.cell, c, prompt)
            c.steps_run = c.handle.step
            c.judged_at.append({"step": c.steps_run, "sigma": None if sigma is None else round(sigma, 4), "total": c.preview_scores.total})

    def run_round(self, arrangements: Sequence[Arrangement], prompt: PanelPrompt, round_no: int, first_index: int) -> list[Candidate]:
        """Start one round's arrangements and run them to where the search judges them first.

        Pruned: the first rung, scored on the preview there; the paused state stays on the
        candidate (``handle``) for the later rungs. Exhaustive: the end, scored on the finished cell.
        """
        s = self.settings
        rungs = self.schedule.rungs if s.pruned else ()
        judge_at = rungs[0].step if rungs else s.steps
        self.progress.candidates_added(len(arrangements), len(arrangements) * judge_at)
        jobs = [self._job(a, prompt) for a in arrangements]
        candidates = [Candidate(first_index + i, round_no, a, prompt.seed, j.canvas, prompt=j.prompt) for i, (a, j) in enumerate(zip(arrangements, jobs))]
        for c, j in zip(candidates, jobs):
            c.handle = self.backend.start(j, on_step=self.progress.step)
        if rungs:
            self._judge(candidates, judge_at, prompt, rungs[0].sigma)
            for _ in candidates:
                self.progress.candidate_done()
        else:
            self._finish(candidates, prompt)
            for _ in candidates:
                self.progress.candidate_done()
        return candidates

    def _finish(self, candidates: Sequence[Candidate], prompt: PanelPrompt) -> None:
        """Run candidates to the last step, decode and score them (decoding after all denoising)."""
        for c in candidates:
            self.backend.advance(c.handle, self.settings.steps - c.handle.step)
        for c in candidates:
            full = self.backend.finish(c.handle)
            c.cell = crop_target(self.spec, full)
            c.steps_run = c.handle.step
            c.scores = self._score(c.cell, c, prompt)
            c.pruned = False
            self._release(c)

    def climb(self, candidates: Sequence[Candidate], prompt: PanelPrompt) -> list[dict[str, Any]]:
        """Take the candidates (all judged at the first rung) up the rungs and finish the survivors.

        Each rung ranks the candidates still in on their preview there and keeps as many as the
        schedule says; the eliminated ones stay previews (``pruned``). Returns, per rung, its step,
        σ and which candidates it judged and kept (the manifest records it).
        """
        schedule = self.schedule
        alive = list(candidates)
        records: list[dict[str, Any]] = []
        for i, (rung, keep) in enumerate(zip(schedule.rungs, schedule.survivors(len(alive)))):
            if i > 0:
                self.progress.candidates_added(0, len(alive) * (rung.step - schedule.rungs[i - 1].step))
                self._judge(alive, rung.step, prompt, rung.sigma)
            ranked = sorted(alive, key=lambda c: (-c.preview_scores.total, c.index))  # type: ignore[union-attr]
            kept = sorted(ranked[:keep], key=lambda c: c.index)
            for c in alive:
                if c not in kept:
                    c.pruned = True
                    self._release(c)
            records.append({**rung.to_json(), "judged": [c.index for c in alive], "kept": [c.index for c in kept]})
            alive = kept
        if alive:
            self.progress.candidates_added(0, sum(self.settings.steps - c.handle.step for c in alive))
        self._finish(alive, prompt)
        return records

    def finish_arrangement(self, prompt: PanelPrompt, arrangement: Arrangement, index: int, seed: int) -> Candidate:
        """One arrangement from step 0 to the end, built, run and scored exactly as the search does.

        Used to finish a preview the author picked: the canvas comes from this search's own
        ``_job`` (its method's fitting and layout), the pixels from its own ``_finish``, and the
        scores from its own ``_score`` (CLIP-I against the panel's one reference set).
        """
        from dataclasses import replace

        prompt = replace(prompt, seed=seed)
        job = self._job(arrangement, prompt)
        candidate = Candidate(index, 0, arrangement, seed, job.canvas, prompt=job.prompt)
        self.progress.candidates_added(1, self.settings.steps)
        candidate.handle = self.backend.start(job, on_step=self.progress.step)
        self._finish([candidate], prompt)
        self.progress.candidate_done()
        return candidate

    def trace(self, prompt: PanelPrompt, arrangement: Arrangement, index: int, steps_at: Sequence[int]) -> tuple[Candidate, dict[int, Scores]]:
        """Calibration: one arrangement to the end, its preview scored after each of ``steps_at``."""
        job = self._job(arrangement, prompt)
        candidate = Candidate(index, 0, arrangement, prompt.seed, job.canvas, prompt=job.prompt)
        candidate.handle = self.backend.start(job, on_step=self.progress.step)
        previews: dict[int, Scores] = {}
        for k in sorted(set(steps_at)):
            if 0 < k < self.settings.steps:
                self._judge([candidate], k, prompt, None)
                assert candidate.preview_scores is not None
                previews[k] = candidate.preview_scores
        self._finish([candidate], prompt)
        return candidate, previews

    def run(self, prompt: PanelPrompt) -> SearchResult:
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
        pruned = self.settings.pruned and bool(self.schedule.rungs)
        records = self.climb(candidates, prompt) if pruned else []
        winner = max((c for c in candidates if c.finished), key=lambda c: (c.scores.total, -c.index))  # type: ignore[union-attr]
        assert winner.cell is not None
        return SearchResult(
            candidates, winner.index, rounds_run, self.backend.nfe - nfe_before, winner.cell,
            schedule=self.schedule if pruned else None, rungs=records,
        )


def _unique(arrangements: Sequence[Arrangement]) -> list[Arrangement]:
    seen: dict[str, Arrangement] = {}
    for a in arrangements:
        seen.setdefault(a.signature, a)
    return list(seen.values())


def _best(candidates: Sequence[Candidate]) -> Candidate:
    """The best judged candidate (final scores in exhaustive search, first-rung previews in pruned)."""
    return max(candidates, key=lambda c: (c.judged.total, -c.index))  # type: ignore[union-attr]
