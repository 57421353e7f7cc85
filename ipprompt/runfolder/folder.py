"""The run folder: where a story's panels, visual prompts and manifest live on disk.

``RunFolder`` is the only writer of a run folder. Every file goes through the one atomic-write
helper, and every manifest change is a read-modify-write under a file lock, so several processes
(two GPUs with disjoint ``--panels``) can share a folder: each only replaces its own panels'
entries. A panel's entry is also written beside its files (``panels/NN/panel.json``) before the
manifest names it done, so a damaged manifest can be rebuilt from the panels themselves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from ipprompt.atomic import atomic_save_image, atomic_write_bytes, atomic_write_text, is_temporary_name, remove_stale_temporaries
from ipprompt.backends.lora import parse_lora
from ipprompt.dvp.grid import RefImage, target_mask
from ipprompt.errors import IppromptError
from ipprompt.runfolder.lock import ACTIVE_LOCK, ActiveRun
from ipprompt.runfolder.manifest import (
    MANIFEST,
    ArrangementEntry,
    CandidateEntry,
    CellEntry,
    CharacterEntry,
    DialogueEntry,
    ElementEntry,
    LoraEntry,
    ManifestError,
    PanelEntry,
    RefEntry,
    RunManifest,
    Scores,
    now_iso,
    parse_manifest,
    write_manifest,
)

if TYPE_CHECKING:
    from PIL import Image

    from ipprompt.pipeline.execute import PanelResult
    from ipprompt.pipeline.plan import Overlay

THUMB_PX = 256
# Visual prompts of candidates that were not chosen: the inspector shows them as thumbnails with a
# zoom, and the exact canvas can be rebuilt from the arrangement and the references, so a JPEG at
# half size says all they have to say at a fraction of a full-size PNG's encoding time (a 1536 px
# grid PNG costs ~0.3 s; a panel has up to 10 grids). The chosen one stays full-size and lossless:
# it is the exact visual prompt of the panel.
GRID_PREVIEW_SIDE = 768
GRID_PREVIEW_QUALITY = 85
LOCK = ".manifest.lock"
PANEL_RECORD = "panel.json"


class RunFolder:
    """Paths inside one run folder and every write to it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.notes: list[str] = []
        self._writer: ThreadPoolExecutor | None = None
        self.active = ActiveRun(self.root)
        self._pending: list[Future[PanelEntry]] = []

    # ------------------------------------------------------------------ paths
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def panel_image(self, number: int) -> Path:
        return self.root / "panels" / f"{number:02d}.png"

    def panel_dir(self, number: int) -> Path:
        return self.root / "panels" / f"{number:02d}"

    def ref_thumb(self, sha256: str) -> Path:
        return self.root / "refs" / f"{sha256[:16]}.jpg"

    def history_dir(self) -> Path:
        return self.root / "history"

    def history_path(self, number: int, stem: str) -> Path:
        """A free name in ``history/`` for one of panel ``number``'s earlier images (never overwrites)."""
        folder = self.history_dir()
        path = folder / f"{number:02d}-{stem}.png"
        n = 2
        while path.exists():
            path = folder / f"{number:02d}-{stem}-{n}.png"
            n += 1
        return path

    def rel(self, path: Path) -> str:
        """A path relative to the run folder, with forward slashes (for HTML links)."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    # ------------------------------------------------------------------ the manifest
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder's lock (other processes on the same folder wait)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            lock = FileLock(str(self.root / LOCK), timeout=600)
            lock.acquire()
        except Timeout:
            raise IppromptError(f"Another process has held {self.root / LOCK} for 10 minutes.", "Is a run on this folder stuck? Stop it, then run again.") from None
        try:
            yield
        finally:
            lock.release()

    def read(self) -> RunManifest | None:
        """The manifest on disk; None when there is none. A damaged one is rebuilt from the
        panels' own records (the damaged file is kept as ``manifest.json.damaged-<time>``)."""
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._rebuild() if self._panel_records() else None
        except (OSError, UnicodeDecodeError) as exc:
            raise IppromptError(f"Cannot read {self.manifest_path}: {exc}", "Check the folder's permissions.") from None
        try:
            return parse_manifest(text, self.manifest_path)
        except ManifestError as exc:
            if "manifest format" in exc.message:
                raise  # another version's manifest: never rewrite it
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
            kept = self.manifest_path.with_name(f"{MANIFEST}.damaged-{stamp}-{os.getpid()}")
            try:
                os.replace(self.manifest_path, kept)
            except FileNotFoundError:  # another process set it aside first
                return self.read()
            self.notes.append(f"{exc.message} Kept it as {kept.name} and rebuilt the manifest from the finished panels.")
            return self._rebuild()

    def update(self, change: Callable[[RunManifest], None]) -> RunManifest:
        """Read-modify-write the manifest under the lock, so concurrent writers merge."""
        with self.lock():
            manifest = self.read() or RunManifest(created=now_iso())
            change(manifest)
            write_manifest(self.root, manifest)
            return manifest

    def _panel_records(self) -> list[Path]:
        return sorted((self.root / "panels").glob(f"*/{PANEL_RECORD}"))

    def read_record(self, number: int) -> PanelEntry | None:
        """A panel's own record (``panels/NN/panel.json``), when it is readable and its files exist."""
        try:
            entry = PanelEntry.model_validate_json((self.panel_dir(number) / PANEL_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return entry if entry.number == number and entry.done and self.has_files(entry) else None

    def _rebuild(self) -> RunManifest:
        manifest = RunManifest(created=now_iso())
        for record in self._panel_records():
            entry = self.read_record(int(record.parent.name)) if record.parent.name.isdigit() else None
            if entry is not None:
                manifest.set_panel(entry)
        return manifest

    # ------------------------------------------------------------------ claiming the folder
    def claim(self, story_path: Path) -> None:
        """Make sure the folder is free or holds this story's run, then clean a killed run's leftovers.

        A mistyped ``--out`` must never overwrite (or clean) someone's files or another story's
        run, so the folder is judged before anything in it is touched; temporary files are removed
        only when no other run is active on the folder.
        """
        root = self.root
        if root.exists() and not root.is_dir():
            raise IppromptError(f"--out {root} is a file, not a folder.", "Choose a folder for the run.")
        if root.is_dir():
            if not os.access(root, os.W_OK):
                raise IppromptError(f"Cannot write to the run folder {root} (read-only).", "Choose another --out, or fix its permissions.")
            ours = {MANIFEST, LOCK, ACTIVE_LOCK, "panels", "refs", "history", "storyboard.html", "storyboard-single.html", "eval.json"}
            foreign = [p.name for p in root.iterdir() if p.name not in ours and not is_temporary_name(p.name)]
            if foreign and not self.manifest_path.exists() and not self._panel_records():
                raise IppromptError(
                    f"{root} is not empty and holds no ipprompt run; nothing was written there.",
                    "Choose another --out (default: runs/<story name>/).",
                )
        with self.lock():
            manifest = self.read()
            if manifest is not None and manifest.story.path and Path(manifest.story.path).resolve() != Path(story_path).resolve():
                raise IppromptError(
                    f"{root} holds the run of another story ({manifest.story.path}); nothing was written there.",
                    "Choose another --out for this story.",
                )
            if manifest is not None and not self.manifest_path.exists():
                write_manifest(root, manifest)  # rebuilt from panel records: say so on disk now
        if self.active.enter():  # no other run on this folder: what temporary files remain are stale
            removed = remove_stale_temporaries([root, root / "panels", *(root / "panels").glob("*/"), root / "refs", self.history_dir()])
            if removed:
                self.notes.append(f"Removed {len(removed)} temporary file(s) an interrupted run left in {root}.")

    def release(self) -> None:
        """This run is over: let the next one know (and wait for the background writer)."""
        self.flush()
        self.active.leave()

    # ------------------------------------------------------------------ panels
    def has_files(self, entry: PanelEntry) -> bool:
        files = [entry.image, entry.mask] + [c.grid for c in entry.candidates]
        return all(isinstance(f, str) and (self.root / f).is_file() for f in files)

    def begin_panel(self, number: int, overlay: "Overlay", reroll: int = 0) -> None:
        """Before a panel is made again: mark it pending on disk, then move its old image to history.

        In this order a Ctrl-C never leaves a "done" panel whose files are gone.
        """
        old: dict[str, PanelEntry | None] = {"entry": None}

        def mark(manifest: RunManifest) -> None:
            old["entry"] = manifest.panel(number)
            manifest.set_panel(pending_entry(number, overlay, reroll))  # an interrupted reroll keeps its count

        self.update(mark)
        image = self.panel_image(number)
        history: Path | None = None
        previous = old["entry"]
        key = (previous.key if previous else None) or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        if image.is_file():
            history = self.history_path(number, key)
            history.parent.mkdir(parents=True, exist_ok=True)
            os.replace(image, history)
        # --- print-resolution pass: the large panel goes to history beside its grid-size image ---
        from ipprompt.upscale.apply import retire_print_image

        retire_print_image(self, number, paired=history, stem=key)
        # --- end print-resolution pass ---
        pdir = self.panel_dir(number)
        if pdir.is_dir():
            shutil.rmtree(pdir, ignore_errors=True)

    def write_record(self, entry: PanelEntry) -> None:
        """The panel's own record beside its files (what a damaged manifest is rebuilt from)."""
        atomic_write_text(self.panel_dir(entry.number) / PANEL_RECORD, entry.model_dump_json(indent=1))

    def keep_current_image(self, entry: PanelEntry, *, candidates_count: bool = True) -> Path | None:
        """Before the panel image is replaced: copy it to ``history/`` unless a copy exists already.

        An earlier history file with the same bytes is a copy, and so (``candidates_count``) is a
        candidate's own file: picking between candidates adds nothing to history, while an image
        found nowhere else is kept, so nothing is ever lost.
        """
        image = self.panel_image(entry.number)
        if not image.is_file():
            return None
        data = image.read_bytes()
        copies = [self.root / c.image for c in entry.candidates if c.image and candidates_count] + sorted(self.history_dir().glob(f"{entry.number:02d}-*.png"))
        if any(p.is_file() and p.stat().st_size == len(data) and p.read_bytes() == data for p in copies):
            return None
        dest = self.history_path(entry.number, entry.key or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S"))
        atomic_write_bytes(dest, data)
        return dest

    def thumb(self, ref: RefImage) -> str:
        path = self.ref_thumb(ref.sha256)
        if not path.exists():
            image = ref.open()
            image.thumbnail((THUMB_PX, THUMB_PX))
            atomic_save_image(path, image, quality=85)
        return self.rel(path)

    def _ref_entry(self, ref: RefImage) -> RefEntry:
        return RefEntry(sha256=ref.sha256, caption=ref.caption, score=ref.score, file=ref.path.name, thumb=self.thumb(ref))

    def commit_async(self, result: "PanelResult") -> "Future[PanelEntry]":
        """``commit`` on a background writer thread, so the GPU starts the next panel meanwhile.

        One writer thread keeps commits in order; each still writes files, then the panel record,
        then the manifest entry, so the manifest never names a panel done before its files exist.
        Call ``flush`` before reading what a commit writes (continuity, rendering).
        """
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipprompt-writer")
        future = self._writer.submit(self.commit, result)
        self._pending.append(future)
        return future

    def flush(self) -> list[PanelEntry]:
        """Wait for every background commit; the first write error is raised here."""
        pending, self._pending = self._pending, []
        return [f.result() for f in pending]

    def commit(self, result: "PanelResult") -> PanelEntry:
        """Write a made panel's files, its record, then its manifest entry (in that order)."""
        job, search = result.job, result.search
        n = job.number
        pdir = self.panel_dir(n)
        from ipprompt.pipeline.execute import grid_spec

        atomic_save_image(pdir / "mask.png", target_mask(grid_spec(job)))
        candidates = []
        for c in search.candidates:
            grid_path, cand_path = self._save_grid(pdir, c.index, c.canvas, chosen=c.index == search.chosen), pdir / f"cand-{c.index}.png"
            if c.cell is not None:
                atomic_save_image(cand_path, c.cell)
            cells = [
                CellEntry(row=p.cell[0], col=p.cell[1], element=p.element, pinned=p.pinned, sha256=p.ref.sha256, thumb=self.thumb(p.ref), caption=p.ref.caption)
                for p in c.arrangement.placements
            ]
            candidates.append(
                CandidateEntry(
                    index=c.index,
                    round=c.round,
                    seed=c.seed,
                    arrangement=ArrangementEntry(order=list(c.arrangement.order), offsets=list(c.arrangement.offsets), cells=cells),
                    grid=self.rel(grid_path),
                    image=self.rel(cand_path) if c.cell is not None else None,
                    prompt=c.prompt or job.text,
                    steps_run=c.steps_run,
                    finished=c.finished,
                    pruned=c.pruned,
                    preview_scores=Scores(**c.preview_scores.to_json()) if c.preview_scores else None,
                    scores=Scores(**c.scores.to_json()) if c.scores else None,
                    chosen=c.index == search.chosen,
                )
            )
        atomic_save_image(self.panel_image(n), search.image)
        entry = pending_entry(n, job.overlay).model_copy(
            update=dict(
                status="done",
                key=job.key,
                text=job.text,
                description=job.description,
                method=job.settings.method,
                seed=job.seed,
                reroll=job.reroll,
                shape=job.shape,
                elements=[
                    ElementEntry(kind=e.kind, text=e.text, source=e.source, label=e.label, refs=[self._ref_entry(r) for r in refs])
                    for e, refs in zip(job.elements, job.ranked)
                ],
                pinned=[self._ref_entry(r) for r in job.pinned],
                mask=self.rel(pdir / "mask.png"),
                candidates=candidates,
                chosen=search.chosen,
                scorer_choice=search.chosen,
                image=self.rel(self.panel_image(n)),
                settings=job.settings.model_dump(),
                machine=result.machine,
                fast=job.settings.fast,
                loras=[LoraEntry(source=spec.source, scale=spec.scale) for spec in map(parse_lora, job.settings.lora_specs)],
                rounds_run=search.rounds_run,
                nfe=search.nfe,
                seconds=result.seconds,
                peak_gpu_bytes=result.peak_gpu_bytes,
            )
        )
        self.write_record(entry)
        self.update(lambda m: m.set_panel(entry))
        return entry

    @staticmethod
    def _save_grid(pdir: Path, index: int, canvas: "Image.Image", *, chosen: bool) -> Path:
        if chosen:
            path = pdir / f"grid-{index}.png"
            atomic_save_image(path, canvas)
            return path
        path = pdir / f"grid-{index}.jpg"
        small = canvas.copy()
        small.thumbnail((GRID_PREVIEW_SIDE, GRID_PREVIEW_SIDE))
        atomic_save_image(path, small, quality=GRID_PREVIEW_QUALITY)
        return path


def pending_entry(number: int, overlay: "Overlay", reroll: int = 0) -> PanelEntry:
    """A panel not made (yet): only the story's text, which the storyboard shows in its frame."""
    return PanelEntry(number=number, status="pending", shape=overlay.shape, reroll=reroll, **overlay_fields(overlay))


def overlay_fields(overlay: "Overlay") -> dict[str, object]:
    """The story text of a panel as manifest fields (refreshed on every run, kept panels too)."""
    return {
        "prompt": overlay.prompt,
        "caption": overlay.caption,
        "dialogue": [DialogueEntry(speaker=s, name=name, text=t) for s, name, t in overlay.dialogue],
        "characters": [CharacterEntry(id=i, name=name) for i, name in overlay.characters],
        "scene": overlay.scene,
    }
