"""Finishing a previewed candidate the author picked (``ipprompt story pick RUN PANEL N`` on a pruned one).

Pruned search stops most candidates after a cheap preview. When the author prefers one of them,
the next run of the panel finishes exactly that candidate and nothing else: its arrangement is
rebuilt from the manifest's record (cells hold sha256s, which name the job's references), and the
panel's method's own search finishes it (``CandidateSearch.finish_arrangement``) from its seed.
Candidates are deterministic, so the pixels equal those a full (exhaustive) run of that arrangement
gives. Like ``execute``, nothing here writes a file: ``RunFolder.commit_finished_pick`` does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from PIL import Image

from ipprompt.backends.base import Backend
from ipprompt.dvp.grid import Arrangement, Placement, RefImage
from ipprompt.dvp.methods import method_of
from ipprompt.dvp.search import SearchProgress
from ipprompt.errors import IppromptError
from ipprompt.pipeline.execute import grid_spec, out_of_memory_is_a_user_error, panel_prompt, search_settings
from ipprompt.runfolder.manifest import CandidateEntry, PanelEntry
from ipprompt.pipeline.plan import PanelJob
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
    """Run the panel's ``pick_to_finish`` candidate from step 0 to the end, through the search itself.

    The panel's method's own search builds the canvas, runs it and scores it
    (``CandidateSearch.finish_arrangement``), so a finished pick has the pixels and the scores
    (CLIP-I against the panel's one reference set) the search would have given it.
    """
    index = entry.pick_to_finish
    candidate = entry.candidate(index) if index is not None else None
    if candidate is None:
        raise IppromptError(
            f"Panel {job.number} was picked to finish candidate #{index}, which its manifest does not list.",
            f"Pick again: `ipprompt story pick RUN {job.number} CANDIDATE`, or `--auto`.",
        )
    spec = grid_spec(job)
    arrangement = arrangement_of(job, candidate)
    search = method_of(job.settings.method).search_class()(backend, scorer, spec, search_settings(job.settings), progress)
    seed = candidate.seed if candidate.seed is not None else job.seed
    nfe_before, started = backend.nfe, time.perf_counter()
    with out_of_memory_is_a_user_error(f"panel {job.number}"):
        finished = search.finish_arrangement(panel_prompt(job), arrangement, candidate.index, seed)
    assert finished.cell is not None and finished.scores is not None
    return FinishedPick(
        candidate.index, finished.cell, finished.scores, finished.steps_run, backend.nfe - nfe_before,
        round(time.perf_counter() - started, 3), job.shape,
    )

