"""What each studio button does, through the library calls the CLI makes (never a copy of them).

* pick / back to the scorer's choice / restore from history: ``ipprompt.runfolder.picks`` (as
  ``story pick``), then the storyboard is re-rendered; a picked preview is queued to be finished
  by ``run_story`` on that panel, which finishes that candidate alone (as the next ``story run``);
* reroll, regenerate, run or resume: ``run_story`` (as ``story run --panels N --reroll`` and
  ``story run``), queued;
* words: ``ipprompt.story.editing`` writes them into the story TOML (comments kept, a backup
  made); a changed prompt queues the panel to be made again, changed words only re-letter it
  (``refresh_story_text``, then the storyboard);
* export: ``ipprompt.export.export_run`` into a temporary folder, handed back as a download.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipprompt.errors import IppromptError
from ipprompt.runfolder import picks
from ipprompt.runfolder.manifest import MANIFEST, PanelEntry, read_manifest
from ipprompt.runfolder.storytext import refresh_story_text
from ipprompt.story.editing import PanelText, edit_panel_text
from ipprompt.story.loading import Story, load_story
from ipprompt.storyboard.render import render_storyboard
from ipprompt.studio.events import EventHub, EventProgress
from ipprompt.studio.jobs import Job, JobQueue

EXPORTS = {"pdf": "application/pdf", "cbz": "application/vnd.comicbook+zip"}


@dataclass(frozen=True)
class Outcome:
    """What an action did: a sentence for the page, and the job it queued, if any."""

    message: str
    job: Job | None = None

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "job": self.job.to_json() if self.job else None}


class Studio:
    """One run folder and its story, with the queue that generates for it."""

    def __init__(
        self,
        run_dir: str | Path,
        story_path: str | Path | None = None,
        *,
        run_options: Mapping[str, Any] | None = None,
        devices: list[str] | None = None,
        hub: EventHub | None = None,
    ) -> None:
        self.root = Path(run_dir)
        self._story_path = Path(story_path) if story_path is not None else None
        self.run_options = dict(run_options) if run_options is not None else None
        self.hub = hub or EventHub()
        self.queue = JobQueue(self.hub, self.root, devices)

    # ------------------------------------------------------------------ the story
    def story_path(self) -> Path:
        """The story file: given at start, else the one the manifest names."""
        if self._story_path is not None:
            return self._story_path
        recorded = None
        if (self.root / MANIFEST).is_file():
            recorded = read_manifest(self.root).story.path
        if recorded and Path(recorded).is_file():
            return Path(recorded)
        raise IppromptError(
            f"The story of {self.root} ({recorded or 'not recorded'}) is not found.",
            "Start the studio with the story file: `ipprompt studio STORY.toml`.",
        )

    def story(self) -> Story:
        return load_story(self.story_path())

    def ensure_manifest(self) -> None:
        """A run folder that was never run gets a manifest with every panel pending."""
        if not (self.root / MANIFEST).is_file():
            refresh_story_text(self.root, self.story())
            render_storyboard(self.root)

    # ------------------------------------------------------------------ picks (immediate)
    def pick(self, panel: int, candidate: int) -> Outcome:
        entry = picks.pick(self.root, panel, candidate)
        render_storyboard(self.root)
        if entry.pick_to_finish is not None:
            job = self._queue_run("finish", f"finish picked candidate #{candidate} of panel {panel}", [panel])
            return Outcome(f"Picked candidate #{candidate} of panel {panel}; it was only previewed, so it is queued to be finished.", job)
        return Outcome(f"Panel {panel} now shows candidate #{candidate}, picked by you.")

    def pick_auto(self, panel: int) -> Outcome:
        entry = picks.pick_auto(self.root, panel)
        render_storyboard(self.root)
        return Outcome(f"Panel {panel} shows the scorer's choice again (candidate #{entry.chosen}).")

    def restore(self, panel: int, name: str) -> Outcome:
        entry = picks.restore(self.root, panel, name)
        render_storyboard(self.root)
        return Outcome(f"Panel {panel} shows {entry.picked_from_history} again; the image it replaced is kept.")

    # ------------------------------------------------------------------ generation (queued)
    def _queue_run(self, kind: str, label: str, panels: list[int] | None, *, reroll: bool = False) -> Job:
        story_path = self.story_path()
        options = dict(self.run_options or {})  # run_story starts from the options the run folder remembers

        def work(progress: EventProgress, device: str) -> str:
            from ipprompt.pipeline.run import run_story

            kwargs = {**options, **({"device": device} if device != "auto" else {})}
            result = run_story(story_path, out=self.root, panels=panels, reroll=reroll, progress=progress, **kwargs)
            parts = [f"made {_numbers(result.generated)}" if result.generated else "", f"finished {_numbers(result.finished)}" if result.finished else ""]
            return "; ".join(p for p in parts if p) or "nothing to make: every panel is up to date"

        return self.queue.submit(kind, label, work)

    def reroll(self, panel: int) -> Outcome:
        """A fresh take of a made panel (``--reroll``); a panel not made yet is simply made."""
        entry = self._check_panel(panel)
        if not entry.done:
            job = self._queue_run("run", f"make panel {panel}", [panel])
            return Outcome(f"Panel {panel} is queued to be made (job {job.id}).", job)
        job = self._queue_run("reroll", f"reroll panel {panel}", [panel], reroll=True)
        return Outcome(f"Panel {panel} is queued for a fresh take (job {job.id}).", job)

    def run(self) -> Outcome:
        job = self._queue_run("run", "run the story (resume)", None)
        return Outcome(f"The story is queued to run (job {job.id}); finished panels are kept.", job)

    def edit(self, panel: int, text: PanelText) -> Outcome:
        """Write the panel's words into the story; re-letter, or queue the panel when its prompt changed."""
        self._check_panel(panel)
        result = edit_panel_text(self.story_path(), panel, text)
        if result.backup is None:
            return Outcome(f"Panel {panel}: nothing changed.")
        refresh_story_text(self.root, result.story)
        render_storyboard(self.root)
        saved = f"Saved to {self.story_path().name} (backup: {result.backup.name})"
        if result.prompt_changed:
            job = self._queue_run("regenerate", f"make panel {panel} again (new prompt)", [panel])
            return Outcome(f"{saved}; panel {panel} is queued to be made again (job {job.id}).", job)
        return Outcome(f"{saved}; panel {panel} re-lettered.")

    def cancel(self, job_id: int) -> Outcome:
        job = self.queue.cancel(job_id)
        return Outcome(f"Job {job.id} ({job.label}): {job.state}.", job)

    # ------------------------------------------------------------------ export
    def export(self, kind: str) -> tuple[bytes, str, str]:
        """The run as a PDF or CBZ: (bytes, file name, media type)."""
        if kind not in EXPORTS:
            raise IppromptError(f"Unknown export format {kind!r}.", "Export as pdf or cbz.")
        from ipprompt.export import export_run

        title = read_manifest(self.root).story.title or self.root.name
        name = (re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-.") or "comic")[:80] + f".{kind}"
        with tempfile.TemporaryDirectory(prefix="ipprompt-export-") as tmp:
            target = Path(tmp) / name
            export_run(self.root, **{kind: target})
            return target.read_bytes(), name, EXPORTS[kind]

    # ------------------------------------------------------------------ helpers
    def _check_panel(self, panel: int) -> PanelEntry:
        manifest = read_manifest(self.root)
        entry = manifest.panel(panel)
        if entry is None:
            raise IppromptError(f"{self.root} has no panel {panel}.", f"Its panels are numbered 1-{len(manifest.panels)}.")
        return entry

    def close(self) -> None:
        self.queue.close()
        self.hub.close()


def _numbers(numbers: list[int]) -> str:
    return ("panel " if len(numbers) == 1 else "panels ") + ", ".join(map(str, numbers))
