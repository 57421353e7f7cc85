"""Finishing a previewed candidate the author picked (``ipprompt story pick RUN PANEL N`` on a pruned one).

Pruned search stops most candidates after a cheap preview. When the author prefers one of them,
the next run of the panel finishes exactly that candidate and nothing else: its canvas is rebuilt
from the arrangement the manifest recorded (cells hold sha256s, which name the job's references),
it starts from the panel's seed and runs every step through the backend's step-wise protocol.
Candidates are deterministic, so the pixels equal those a full (exhaustive) run of that arrangement
gives. Like ``execute``, nothing here writes a file: ``commit_finished_pick`` below does, through the run folder.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from PIL import Image

from ipprompt.atomic import atomic_save_image
from ipprompt.backends.base import Backend, FillJob
from ipprompt.dvp.grid import Arrangement, Placement, RefImage, build_canvas, crop_target, fit_to_tile, target_mask
from ipprompt.dvp.search import SearchProgress
from ipprompt.errors import IppromptError
from ipprompt.pipeline.execute import grid_spec, out_of_memory_is_a_user_error
from ipprompt.runfolder.manifest import CandidateEntry, PanelEntry, RunManifest
from ipprompt.runfolder.manifest import Scores as ScoresEntry
from ipprompt.pipeline.plan import PanelJob
from ipprompt.runfolder.folder import RunFolder
from ipprompt.dvp.scoring import Scorer, Scores


@dataclass
class FinishedPick:
    """A picked candidate run to the end: its target cell, final scores and what it cost."""

    index: int
    cell: Image.Image = field(repr=False)
    scores: Scores
    steps_run: int
    nfe: int
    seconds: float
    shape: str = "square"


def arrangement_of(job: PanelJob, candidate: CandidateEntry) -> Arrangement:
    """The candidate's visual prompt as the search made it, from the manifest's record of it."""
    refs: dict[str, RefImage] = {r.sha256: r for refs in job.ranked for r in refs}
    refs.update({r.sha256: r for r in job.pinned})
    placements = []
    for cell in candidate.arrangement.cells:
        ref = refs.get(cell.sha256)
        if ref is None:
            raise IppromptError(
                f"Panel {job.number}, candidate {candidate.index}: reference {cell.caption or cell.sha256[:12]} "
                "is no longer among the panel's references, so the picked candidate cannot be finished.",
                f"Pick another candidate (`ipprompt story pick RUN {job.number} N`) or `--auto`.",
            )
        placements.append(Placement((cell.row, cell.col), ref, None if cell.pinned else cell.element))
    arr = candidate.arrangement
    return Arrangement(tuple(arr.order), tuple(arr.offsets), tuple(placements))


def finish_pick(
    job: PanelJob, entry: PanelEntry, backend: Backend, scorer: Scorer, progress: SearchProgress | None = None
) -> FinishedPick:
    """Run the panel's ``pick_to_finish`` candidate from step 0 to the end, as the search would."""
    index = entry.pick_to_finish
    candidate = entry.candidate(index) if index is not None else None
    if candidate is None:
        raise IppromptError(
            f"Panel {job.number} was picked to finish candidate #{index}, which its manifest does not list.",
            f"Pick again: `ipprompt story pick RUN {job.number} CANDIDATE`, or `--auto`.",
        )
    spec = grid_spec(job)
    arrangement = arrangement_of(job, candidate)
    tiles: dict[str, Image.Image] = {}

    def tile(ref: RefImage) -> Image.Image:  # the search's own fitting, so the canvas is identical
        if ref.sha256 not in tiles:
            tiles[ref.sha256] = fit_to_tile(ref.open(), spec.tile_size)
        return tiles[ref.sha256]

    s = job.settings
    seed = candidate.seed if candidate.seed is not None else job.seed
    fill = FillJob(build_canvas(spec, arrangement, tile), target_mask(spec), job.text, seed, s.steps, s.guidance, spec, job.label)
    if progress is not None:
        progress.candidates_added(1, s.steps)
    nfe_before, started = backend.nfe, time.perf_counter()
    with out_of_memory_is_a_user_error(f"panel {job.number}"):
        handle = backend.start(fill)
        backend.advance(handle, s.steps)
        cell = crop_target(spec, backend.finish(handle))
    scores = scorer.score(cell, job.description or job.text, tuple(e.text for e in job.elements), arrangement, spec)
    if progress is not None:
        progress.candidate_done()
    return FinishedPick(index, cell, scores, handle.step, backend.nfe - nfe_before, round(time.perf_counter() - started, 3), job.shape)


def commit_finished_pick(folder: RunFolder, number: int, finished: "FinishedPick") -> PanelEntry:
    """Write a picked candidate the run just finished: its image (the preview is kept beside
    it), the panel image, then the manifest entry, which now names it chosen by the author."""
    i = finished.index
    pdir = folder.panel_dir(number)
    cand_path, preview_path = pdir / f"cand-{i}.png", pdir / f"preview-{i}.png"
    if cand_path.is_file() and not preview_path.exists():  # a retry after a kill keeps the first preview
        os.replace(cand_path, preview_path)
    atomic_save_image(cand_path, finished.cell)
    result: dict[str, PanelEntry] = {}

    def change(manifest: RunManifest) -> None:
        entry = manifest.panel(number)
        if entry is None:
            raise IppromptError(f"Panel {number} left the manifest while its picked candidate was finished.")
        folder.keep_current_image(entry)
        # --- print-resolution pass: the large image of the replaced panel goes to history ---
        from ipprompt.upscale.apply import retire_print_image

        retire_print_image(folder, number, stem=entry.upscale.key if entry.upscale else None)
        # --- end print-resolution pass ---
        atomic_save_image(folder.panel_image(number), finished.cell)
        candidates = []
        for c in entry.candidates:
            if c.index == i:
                c = c.model_copy(update=dict(
                    image=folder.rel(cand_path),
                    preview_image=folder.rel(preview_path) if preview_path.is_file() else c.preview_image,
                    finished=True,
                    pruned=False,
                    scores=ScoresEntry(**finished.scores.to_json()),
                    steps_run=finished.steps_run,
                ))
            candidates.append(c.model_copy(update={"chosen": c.index == i}))
        entry = entry.model_copy(update=dict(
            candidates=candidates,
            chosen=i,
            picked_by="author",
            picked_from_history=None,
            pick_to_finish=None,
            upscale=None,  # made from the replaced image; the run's pass remakes it
            shape=finished.shape,
            nfe=entry.nfe + finished.nfe,
            seconds=round(entry.seconds + finished.seconds, 3),
        ))
        manifest.set_panel(entry)
        result["entry"] = entry

    folder.update(change)
    folder.write_record(result["entry"])
    return result["entry"]
