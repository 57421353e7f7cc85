"""Runners decide *where* panel jobs execute; this one runs them in this process, one at a time.

Every runner shares the same bookkeeping: a job whose key matches a finished panel with all its
files is kept as it is (an author's pick included; a picked preview is finished, nothing else); a continuity job first gets its previous panel's image; the run folder commits each
result. ``LocalRunner`` loads the generator only when a panel is left to make, encodes every prompt
once before the first panel and frees the text encoders (continuity runs too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ipprompt.backends.base import Backend
from ipprompt.backends.factory import MachineOptions, create_backend
from ipprompt.dvp.grid import RefImage
from ipprompt.pipeline.execute import execute, out_of_memory_is_a_user_error
from ipprompt.pipeline.finish_pick import commit_finished_pick, finish_pick
from ipprompt.runfolder.manifest import PanelEntry, RunManifest
from ipprompt.pipeline.plan import PanelJob
from ipprompt.progress import RunProgress
from ipprompt.runfolder.folder import RunFolder
from ipprompt.dvp.scoring import Scorer
from ipprompt.story.loading import Generation
from ipprompt.upscale.apply import apply_upscale_pass, pass_texts


@dataclass
class Outcome:
    generated: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)  # kept panels whose picked preview was finished


def library_embeddings(library: Any, encoder: Any) -> Callable[[Sequence[RefImage]], np.ndarray]:
    """Reference embeddings from the theme's cache; only images outside the theme are encoded."""

    def embed(refs: Sequence[RefImage]) -> np.ndarray:
        known = {img.sha256 for img in library.images}
        in_lib = [r for r in refs if r.sha256 in known]
        vecs: dict[str, Any] = {}
        if in_lib:
            for r, v in zip(in_lib, library.embeddings_for([r.sha256 for r in in_lib])):
                vecs[r.sha256] = v
        others = [r for r in refs if r.sha256 not in vecs]
        if others:
            for r, v in zip(others, encoder.embed_images([r.open() for r in others])):
                vecs[r.sha256] = v
        return np.stack([vecs[r.sha256] for r in refs])

    return embed


def make_scorer(encoder: Any | None, library: Any | None = None) -> Scorer:
    if encoder is None:
        return Scorer(None)
    return Scorer(encoder, library_embeddings(library, encoder) if library is not None else None)


def resolve_continuity(job: PanelJob, folder: RunFolder, manifest: RunManifest) -> PanelJob:
    """Give a continuity job its previous panel's image, if that panel is done."""
    if not job.waiting:
        return job
    prev = manifest.panel(job.continuity_from or 0)
    path = folder.root / prev.image if prev is not None and prev.done and prev.image else None
    return job.with_previous(path if path is not None and path.is_file() else None)


def adopt_record(folder: RunFolder, manifest: RunManifest, job: PanelJob) -> PanelEntry | None:
    """The panel's manifest entry; a finished panel whose manifest entry a kill never wrote (its
    files and record are on disk, its key matches) is taken into the manifest instead of remade."""
    old = manifest.panel(job.number)
    if old is not None and old.done:
        return old
    record = folder.read_record(job.number)
    if record is None or record.key != job.key:
        return old
    folder.update(lambda m: m.set_panel(record))
    return record


def reusable(folder: RunFolder, old: PanelEntry | None, job: PanelJob) -> bool:
    """A finished panel is kept when its key is unchanged and every file it names exists."""
    return old is not None and old.done and old.key == job.key and folder.has_files(old)


class LocalRunner:
    """Executes jobs in this process, committing each panel as soon as it is made."""

    def __init__(
        self,
        folder: RunFolder,
        settings: Generation,
        machine: MachineOptions,
        library: Any,
        encoder: Any | None,
        progress: RunProgress,
        backend: Backend | None = None,
    ) -> None:
        self.folder = folder
        self.settings = settings
        self.machine = machine
        self.progress = progress
        self.backend = backend
        self.scorer = make_scorer(encoder, library)
        self._encoded = False

    def _ready_backend(self, remaining: Sequence[PanelJob]) -> Backend:
        """Load the generator once; encode every remaining prompt, then free the text encoders."""
        if self.backend is None:
            with out_of_memory_is_a_user_error("loading the model"):
                self.backend = create_backend(self.settings, self.machine, self.progress.note)
        if not self._encoded:
            with out_of_memory_is_a_user_error("encoding the prompts"):
                self.backend.encode_texts([j.text for j in remaining] + pass_texts(list(remaining)))  # + print pass
                self.backend.release_text_encoders()
            self._encoded = True
        self.backend.on_step = self.progress.step  # type: ignore[attr-defined]
        return self.backend

    def _print_pass(self, job: PanelJob, remaining: Sequence[PanelJob]) -> None:
        """The print-resolution pass of a made or kept panel (ipprompt.upscale; loads the generator only if needed)."""
        apply_upscale_pass(self.folder, job, lambda: self._ready_backend(remaining), self.progress)

    def run(self, jobs: Sequence[PanelJob], *, force: bool = False) -> Outcome:
        outcome = Outcome()
        self.progress.start_run(len(jobs), denoising=self.settings.backend != "preview")
        try:
            self._run(jobs, force, outcome)
        finally:
            self.folder.flush()  # every panel's files, record and manifest entry are on disk
        return outcome

    def _run(self, jobs: Sequence[PanelJob], force: bool, outcome: Outcome) -> None:
        for i, job in enumerate(jobs):
            if job.waiting:
                self.folder.flush()  # the previous panel's image must be on disk
            manifest = self.folder.read() or RunManifest()
            job = resolve_continuity(job, self.folder, manifest)
            old = adopt_record(self.folder, manifest, job)
            if not force and reusable(self.folder, old, job):
                assert old is not None
                if old.pick_to_finish is not None:
                    # The author picked a previewed candidate: finish that one, nothing else.
                    backend = self._ready_backend(jobs[i:])
                    self.progress.start_panel(job.number, f"finishing picked candidate #{old.pick_to_finish}")
                    commit_finished_pick(self.folder, job.number, finish_pick(job, old, backend, self.scorer, self.progress))
                    self._print_pass(job, jobs[i:])
                    outcome.finished.append(job.number)
                    self.progress.end_panel(reused=False)
                    continue
                outcome.reused.append(job.number)
                self.progress.start_panel(job.number, "unchanged, kept")
                self._print_pass(job, jobs[i:])
                self.progress.end_panel(reused=True)
                continue
            backend = self._ready_backend(jobs[i:])
            self.progress.start_panel(job.number, job.overlay.prompt)
            self.folder.begin_panel(job.number, job.overlay, job.reroll)
            result = execute(job, backend, self.scorer, self.progress)
            # Written while the GPU makes the next panel; at most one commit waits at a time.
            self.folder.flush()
            self.folder.commit_async(result)
            self._print_pass(job, jobs[i:])
            outcome.generated.append(job.number)
            self.progress.end_panel(reused=False)
