"""Runners decide *where* panel jobs execute; this one runs them in this process, one at a time.

What happens to each panel (keep, keep the author's pick, finish a picked preview, make) is
decided by ``ipprompt.pipeline.core.decide``, and panels are made by a ``PanelMaker``: the same
code a Ray worker runs. The generator loads only when a panel is left to make; every prompt of the
run is encoded once before the first panel and the text encoders are freed (continuity runs too).
Each made panel is committed by a background writer while the next one is made; the print pass
(``ipprompt.upscale``), when asked for, follows each panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ipprompt.pipeline.core import Action, PanelMaker, decide, prompt_texts, theme_embeddings
from ipprompt.pipeline.plan import PanelJob
from ipprompt.progress import RunProgress
from ipprompt.runfolder.folder import RunFolder
from ipprompt.runfolder.manifest import RunManifest
from ipprompt.upscale.apply import apply_upscale_pass

if TYPE_CHECKING:
    from ipprompt.backends.base import Backend
    from ipprompt.encoders.clip import ClipEncoder
    from ipprompt.pipeline.settings import RunSettings
    from ipprompt.theme.library import ThemeLibrary


@dataclass
class Outcome:
    generated: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)  # kept panels whose picked preview was finished
    kept_picked: list[int] = field(default_factory=list)  # author's picks kept although settings changed


class LocalRunner:
    """Executes jobs in this process, committing each panel as soon as it is made."""

    def __init__(
        self,
        folder: RunFolder,
        settings: "RunSettings",
        library: "ThemeLibrary | None",
        encoder: "ClipEncoder | None",
        progress: RunProgress,
        backend: "Backend | None" = None,
    ) -> None:
        self.folder = folder
        self.settings = settings
        self.library = library
        self.progress = progress
        self.maker = PanelMaker(settings, progress.note, backend=backend, encoder=encoder)

    def run(self, jobs: Sequence[PanelJob], *, force: bool = False, remake_picked: bool = False) -> Outcome:
        from ipprompt.backends.registry import backend_spec

        outcome = Outcome()
        self.progress.start_run(len(jobs), denoising=backend_spec(self.settings.backend).denoises)
        try:
            self._run(jobs, force, remake_picked, outcome)
        finally:
            self.folder.flush()  # every panel's files, record and manifest entry are on disk
        return outcome

    def _run(self, jobs: Sequence[PanelJob], force: bool, remake_picked: bool, outcome: Outcome) -> None:
        for i, job in enumerate(jobs):
            if job.waiting:
                self.folder.flush()  # the previous panel's image must be on disk
            manifest = self.folder.read(full_panels=[job.number]) or RunManifest()  # others: index entries
            decision = decide(self.folder, manifest, job, force=force, remake_picked=remake_picked)
            job = decision.job
            if decision.action in (Action.KEEP, Action.KEEP_PICKED):
                (outcome.kept_picked if decision.action is Action.KEEP_PICKED else outcome.reused).append(job.number)
                self.progress.start_panel(job.number, decision.label)
                self._print_pass(job, jobs[i:])
                self.progress.end_panel(reused=True)
                continue
            self.maker.ready(prompt_texts(jobs[i:]))
            embeddings = theme_embeddings(self.library, job)
            if decision.action is Action.FINISH_PICK:
                assert decision.old is not None and decision.old.pick_to_finish is not None
                self.progress.start_panel(job.number, f"finishing picked candidate #{decision.old.pick_to_finish}")
                finished = self.maker.finish(job, decision.old, embeddings, self.progress)
                self.folder.commit_finished_pick(job.number, finished)
                self._print_pass(job, jobs[i:])
                outcome.finished.append(job.number)
                self.progress.end_panel(reused=False)
                continue
            self.progress.start_panel(job.number, job.overlay.prompt)
            self.folder.begin_panel(job.number, job.overlay, job.reroll)
            result = self.maker.make(job, embeddings, self.progress)
            # Written while the GPU makes the next panel; at most one commit waits at a time.
            self.folder.flush()
            self.folder.commit_async(result)
            self._print_pass(job, jobs[i:])
            outcome.generated.append(job.number)
            self.progress.end_panel(reused=False)

    def _print_pass(self, job: PanelJob, remaining: Sequence[PanelJob]) -> None:
        """The print-resolution pass of a made, kept or finished panel (``ipprompt.upscale``): loads
        the generator only when FLUX must re-detail a panel whose large image is not current."""
        apply_upscale_pass(self.folder, job, lambda: self.maker.ready(prompt_texts(remaining)), self.progress)
