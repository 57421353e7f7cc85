"""The runner core: what every runner does, written once.

A runner (``runners/local.py`` in this process, ``runners/ray_runner.py`` on Ray actors) only
decides *where* panels are made. What happens to each panel is decided here:

- ``decide``: keep a finished panel whose key is unchanged, finish the preview the author picked,
  keep an author's pick whose own inputs are unchanged even when run settings changed (unless
  ``--remake-picked``), or make the panel;
- ``PanelMaker``: load the generator once, encode every prompt once and free the text encoders,
  score against the reference embeddings, make a panel or finish a pick;
- ``theme_embeddings``: the theme's cached CLIP embeddings of a job's references, the one way
  reference embeddings reach a scorer (sent with the job to a Ray worker, passed in locally).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from ipprompt.dvp.grid import RefImage
from ipprompt.dvp.scoring import Scorer
from ipprompt.pipeline.plan import PanelJob
from ipprompt.runfolder.folder import RunFolder
from ipprompt.runfolder.manifest import PanelEntry, RunManifest
from ipprompt.runfolder.safepath import inside_or_none

if TYPE_CHECKING:
    from ipprompt.backends.base import Backend
    from ipprompt.dvp.search import SearchProgress
    from ipprompt.encoders.clip import ClipEncoder
    from ipprompt.pipeline.execute import PanelResult
    from ipprompt.pipeline.finish_pick import FinishedPick
    from ipprompt.pipeline.settings import RunSettings
    from ipprompt.theme.library import ThemeLibrary

Note = Callable[[str], None]


class Action(Enum):
    KEEP = "keep"  # finished, key unchanged
    KEEP_PICKED = "keep-picked"  # the author's pick, kept although run settings changed
    FINISH_PICK = "finish-pick"  # the author picked a preview: finish that candidate only
    MAKE = "make"


@dataclass(frozen=True)
class Decision:
    action: Action
    job: PanelJob  # with its continuity image resolved
    old: PanelEntry | None

    @property
    def label(self) -> str:
        """What the progress bar says about a panel that is not made."""
        if self.action is Action.KEEP_PICKED:
            return "picked by the author, kept"
        return "unchanged, kept"


def resolve_continuity(job: PanelJob, folder: RunFolder, manifest: RunManifest) -> PanelJob:
    """Give a continuity job its previous panel's image, if that panel is done."""
    if not job.waiting:
        return job
    prev = manifest.panel(job.continuity_from or 0)
    path = inside_or_none(folder.root, prev.image) if prev is not None and prev.done and prev.image else None
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
    folder.update_panel(job.number, lambda _: record)
    return record


def is_picked(entry: PanelEntry) -> bool:
    """The author chose this panel's image (a candidate, a history image, or a preview to finish)."""
    return entry.picked_by == "author" or entry.pick_to_finish is not None


def decide(folder: RunFolder, manifest: RunManifest, job: PanelJob, *, force: bool = False, remake_picked: bool = False) -> Decision:
    """What this run does with one panel (``force``: make it whatever it holds)."""
    job = resolve_continuity(job, folder, manifest)
    old = adopt_record(folder, manifest, job)
    if old is not None and old.done and old.reroll > job.reroll and folder.has_files(old):
        # Another process rerolled this panel after this run planned it: its newer take stays.
        return Decision(Action.KEEP, job, old)
    if force or old is None or not old.done or not folder.has_files(old):
        return Decision(Action.MAKE, job, old)
    if old.key == job.key:
        return Decision(Action.FINISH_PICK if old.pick_to_finish is not None else Action.KEEP, job, old)
    # The key changed. An author's pick is never replaced for a run setting alone: only when the
    # panel's own inputs (text, references, seed, shape) changed, or when asked to.
    if is_picked(old) and not remake_picked and old.content_key in (None, job.content_key):
        return Decision(Action.KEEP_PICKED, job, old)
    return Decision(Action.MAKE, job, old)


def theme_embeddings(library: "ThemeLibrary | None", job: PanelJob) -> dict[str, np.ndarray]:
    """The theme's cached CLIP embeddings of the job's references (none outside the theme)."""
    if library is None or library.mode != "clip":
        return {}
    shas = list(dict.fromkeys(r.sha256 for refs in (*job.ranked, job.pinned) for r in refs if library.has_image(r.sha256)))
    return dict(zip(shas, np.asarray(library.embeddings_for(shas), dtype=np.float32))) if shas else {}


class ReferenceEmbeddings:
    """sha256 -> reference embedding: what was sent with the jobs, the rest encoded on demand."""

    def __init__(self, encoder: "ClipEncoder") -> None:
        self.encoder = encoder
        self.known: dict[str, np.ndarray] = {}

    def update(self, embeddings: dict[str, np.ndarray]) -> None:
        self.known.update(embeddings)

    def __call__(self, refs: Sequence[RefImage]) -> np.ndarray:
        others = [r for r in refs if r.sha256 not in self.known]
        if others:
            for ref, vec in zip(others, self.encoder.embed_images([r.open() for r in others])):
                self.known[ref.sha256] = np.asarray(vec, dtype=np.float32)
        return np.stack([self.known[r.sha256] for r in refs])


def prompt_texts(jobs: Sequence[PanelJob]) -> list[str]:
    """Every text the generator will encode for ``jobs``: the panels' prompts and their print passes'
    (encoded together before the text encoders are freed)."""
    from ipprompt.upscale.apply import pass_texts

    return [j.text for j in jobs] + pass_texts(list(jobs))


class PanelMaker:
    """A generator and a scorer that make panels: the same object in this process and on a worker."""

    def __init__(self, settings: "RunSettings", note: Note, *, backend: "Backend | None" = None, encoder: "ClipEncoder | None" = None) -> None:
        self.settings = settings
        self.note = note
        self.backend = backend
        self.references = ReferenceEmbeddings(encoder) if encoder is not None else None
        self.scorer = Scorer(encoder, self.references)
        self._encoded = False

    def ready(self, texts: Sequence[str], doing: str = "") -> "Backend":
        """Load the generator once; encode every prompt given, then free the text encoders."""
        from ipprompt.backends.factory import create_backend
        from ipprompt.pipeline.execute import out_of_memory_is_a_user_error

        if self.backend is None:
            with out_of_memory_is_a_user_error(f"loading the model{doing}"):
                self.backend = create_backend(self.settings, self.note)
        if not self._encoded:
            with out_of_memory_is_a_user_error(f"encoding the prompts{doing}"):
                self.backend.encode_texts(list(dict.fromkeys(texts)))
                self.backend.release_text_encoders()
            self._encoded = True
        return self.backend

    def make(self, job: PanelJob, embeddings: dict[str, np.ndarray], progress: "SearchProgress | None" = None) -> "PanelResult":
        """Make one panel: its method's candidate search, scored against the panel's references."""
        from ipprompt.pipeline.execute import execute

        backend = self.ready([job.text])
        if self.references is not None:
            self.references.update(embeddings)
        return execute(job, backend, self.scorer, progress)

    def finish(self, job: PanelJob, entry: PanelEntry, embeddings: dict[str, np.ndarray], progress: "SearchProgress | None" = None) -> "FinishedPick":
        """Finish the candidate the author picked from its preview (the search's own code)."""
        from ipprompt.pipeline.finish_pick import finish_pick

        backend = self.ready([job.text])
        if self.references is not None:
            self.references.update(embeddings)
        return finish_pick(job, entry, backend, self.scorer, progress)
