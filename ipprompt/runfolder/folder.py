"""The run folder: where a story's panels, visual prompts and manifest live on disk.

``RunFolder`` is the only writer of a run folder: panels, picks, the storyboard pages and
``eval.json`` all go through it, every file through the one atomic-write helper, and every change
under the folder's file lock, so several processes (two GPUs with disjoint ``--panels``, two
rerolls of one panel) can share a folder without losing anything. A panel's full entry lives in
its own record (``panels/NN/panel.json``) and ``manifest.json`` holds the run-level facts and a
small index (see ``ipprompt.runfolder.manifest``): a commit rewrites one record and the index, so
its cost does not grow with the number of panels. Every path read from a manifest goes through
``resolve``. The panel writes themselves (commit, picks, history) are in ``panel_writes``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from ipprompt.atomic import atomic_write_text, is_temporary_name, remove_stale_temporaries
from ipprompt.errors import IppromptError, classify
from ipprompt.runfolder.index_cache import IndexCache
from ipprompt.runfolder.lock import ACTIVE_LOCK, ActiveRun, FolderLock, LockTimeout
from ipprompt.runfolder.manifest import (
    FORMAT,
    MANIFEST,
    PANEL_RECORD,
    ManifestDamaged,
    PanelEntry,
    RunManifest,
    StoryInfo,
    now_iso,
)
from ipprompt.runfolder.store import load_records, read_manifest_bytes, read_record_file, write_record
from ipprompt.runfolder.panel_writes import PanelWrites, overlay_fields, pending_entry
from ipprompt.runfolder.safepath import resolve_inside

__all__ = ["RunFolder", "overlay_fields", "pending_entry"]

LOCK = ".manifest.lock"
STORYBOARD = "storyboard.html"
STORYBOARD_SINGLE = "storyboard-single.html"
EVAL_FILE = "eval.json"
PAGES = (STORYBOARD, STORYBOARD_SINGLE)
LOCK_WAIT_S = 600
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


class RunFolder(PanelWrites):
    """Paths inside one run folder and every write to it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.notes: list[str] = []
        self.active = ActiveRun(self.root)
        self._lock: FolderLock | None = None
        self._index = IndexCache()
        PanelWrites.__init__(self)

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

    def resolve(self, rel: object, key: str = "a path in the manifest") -> Path:
        """The file a manifest or record path names, refusing any that leads outside the folder.

        The one check every reader uses (pick, history, finish, render, export, eval): an
        ``UnsafePath`` error names ``key`` (e.g. ``panels[2].candidates[1].image``).
        """
        return resolve_inside(self.root, rel, key)

    # ------------------------------------------------------------------ the lock
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder's lock (other processes and threads on the same folder wait).

        Re-entrant in one thread. Where the lock file cannot be created because the folder is
        read-only for us, nobody can write through us either: reading goes on without the lock,
        and the first write fails with the atomic writer's clear message.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            known = classify(exc)  # a symbolic link loop, a full or read-only disk: say which
            if known is not None:
                raise IppromptError(f"Cannot create the run folder {self.root}: {known.message}", known.hint) from None
            raise IppromptError(f"Cannot create the run folder {self.root}: {exc.strerror or exc}.", "Choose another --out, or fix its permissions.") from None
        if self._lock is None:
            self._lock = FolderLock(self.root / LOCK, LOCK_WAIT_S)
        try:
            self._lock.acquire()
            held = True
        except LockTimeout:
            raise IppromptError(f"Another process has held {self.root / LOCK} for 10 minutes.", "Is a run on this folder stuck? Stop it, then run again.") from None
        except OSError as exc:
            if exc.errno not in _READ_ONLY or os.access(self.root, os.W_OK):
                raise IppromptError(
                    f"Cannot lock the run folder {self.root} ({self.root / LOCK}: {exc.strerror or exc}).",
                    "Check the folder's permissions; another user's run may own the lock file.",
                ) from None
            held = False  # read-only folder: nothing can be written, so nothing needs the lock
        try:
            yield
        finally:
            if held:
                self._lock.release()

    # ------------------------------------------------------------------ the manifest
    def read(self, full_panels: Iterable[int] | None = None) -> RunManifest | None:
        """The manifest on disk; None when there is none.

        Every panel comes with its full entry, or (``full_panels``) only those panels, the others
        as their index entries (status, key, image, picks, story text; no candidates), which keeps
        a read per panel independent of the panel count. A damaged manifest is rebuilt from the
        panels' own records (the damaged file is kept as ``manifest.json.damaged-<time>``).
        """
        try:
            data = read_manifest_bytes(self.manifest_path)
        except FileNotFoundError:
            return self._rebuild() if self._panel_records() else None
        try:
            manifest = self._index.parse(data, self.manifest_path)
        except ManifestDamaged as exc:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
            kept = self.manifest_path.with_name(f"{MANIFEST}.damaged-{stamp}-{os.getpid()}")
            try:
                os.replace(self.manifest_path, kept)
            except FileNotFoundError:  # another process set it aside first
                return self.read(full_panels)
            except OSError as err:
                raise IppromptError(f"{exc.message} It cannot be set aside ({err.strerror or err}).", "Check the folder's permissions.") from None
            self.notes.append(f"{exc.message} Kept it as {kept.name} and rebuilt the manifest from the finished panels.")
            return self._rebuild()
        return load_records(self.root, manifest, full_panels)

    def update(self, change: Callable[[RunManifest], None]) -> RunManifest:
        """Read-modify-write the whole manifest under the lock, so concurrent writers merge.

        Reads every record, so its cost grows with the panels: for run-level changes (once per
        run). A panel's own changes go through ``update_panel``.
        """
        with self.lock():
            manifest = self.read() or RunManifest(created=now_iso())
            legacy = manifest._loaded_format != FORMAT or not self.manifest_path.exists()
            before = {p.number: p.model_dump_json() for p in manifest.panels if p.done}
            change(manifest)
            for entry in manifest.panels:
                if entry.done and (legacy or before.get(entry.number) != entry.model_dump_json()):
                    write_record(self.root, entry)
            self._index.write(self.root, manifest)
            return manifest

    def update_panels(self, numbers: Iterable[int], change: Callable[[PanelEntry | None], PanelEntry | None]) -> dict[int, PanelEntry | None]:
        """Change each of ``numbers``' entries under one hold of the lock; returns the new entries.

        ``change`` gets the panel's full entry (None when the manifest has no such panel) and
        returns the new one, or None to leave it. Only those panels' records and the small index
        are read and written.
        """
        numbers = list(dict.fromkeys(numbers))
        with self.lock():
            manifest = self.read(full_panels=numbers) or RunManifest(created=now_iso())
            if manifest._loaded_format != FORMAT:  # an older manifest: convert it once, wholly
                load_records(self.root, manifest)
            out: dict[int, PanelEntry | None] = {}
            changed = False
            for n in numbers:
                old = manifest.panel(n)
                new = change(old)
                if new is None or new == old:  # nothing to write (a read-only folder stays readable)
                    out[n] = old
                    continue
                if new.done:
                    write_record(self.root, new)
                manifest.set_panel(new)
                out[n] = new
                changed = True
            if changed or manifest._loaded_format != FORMAT:
                if manifest._loaded_format != FORMAT:
                    for entry in manifest.panels:
                        if entry.done and entry.number not in out:
                            write_record(self.root, entry)
                self._index.write(self.root, manifest)
            return out

    def update_panel(self, number: int, change: Callable[[PanelEntry | None], PanelEntry | None]) -> PanelEntry | None:
        """``update_panels`` for one panel: the commit path, whose cost does not grow with the panels."""
        return self.update_panels([number], change)[number]

    def reserve_rerolls(self, numbers: list[int]) -> dict[int, int]:
        """Hand out the next reroll count of each panel, persisted under the lock.

        Two rerolls of one panel started together get different counts, hence different seeds:
        the author asked for two takes and gets two. The count is one past the highest ever handed
        out or made (``rerolls_reserved``, ``reroll``).
        """
        counts: dict[int, int] = {}

        def bump(entry: PanelEntry | None, n: int) -> PanelEntry:
            base = entry or PanelEntry(number=n)
            counts[n] = max(base.reroll, base.rerolls_reserved) + 1
            return base.model_copy(update={"rerolls_reserved": counts[n]})

        with self.lock():
            for n in numbers:
                self.update_panels([n], lambda e, n=n: bump(e, n))
        return counts

    def _panel_records(self) -> list[Path]:
        return sorted((self.root / "panels").glob(f"*/{PANEL_RECORD}"))

    def read_record(self, number: int) -> PanelEntry | None:
        """A panel's own record (``panels/NN/panel.json``), when it is readable, done and its files are whole."""
        entry = read_record_file(self.root, number)
        return entry if entry is not None and entry.done and self.has_files(entry) else None

    def _rebuild(self) -> RunManifest:
        manifest = RunManifest(created=now_iso())
        for record in self._panel_records():
            entry = self.read_record(int(record.parent.name)) if record.parent.name.isdigit() else None
            if entry is not None:
                manifest.set_panel(entry)
        manifest._loaded_format = 0  # not on disk as it is: the next write writes it wholly
        return manifest

    # ------------------------------------------------------------------ claiming the folder
    def claim(self, story_path: Path) -> None:
        """Claim the folder for this story, then clean a killed run's leftovers.

        A mistyped ``--out`` must never overwrite (or clean) someone's files or another story's
        run, so the folder is judged before anything in it is touched. Checking that no other story
        owns it and writing a manifest that names this story happen in one hold of the lock, so of
        two stories racing into one new folder (``a/story.toml`` and ``b/story.toml`` both default
        to ``runs/story/``) exactly one wins, before any model loads. Temporary files are removed
        only when no other run is active on the folder.
        """
        root = self.root
        if root.exists() and not root.is_dir():
            raise IppromptError(f"--out {root} is a file, not a folder.", "Choose a folder for the run.")
        if root.is_dir():
            if not os.access(root, os.W_OK):
                raise IppromptError(f"Cannot write to the run folder {root} (read-only).", "Choose another --out, or fix its permissions.")
            ours = {MANIFEST, LOCK, ACTIVE_LOCK, "panels", "refs", "history", *PAGES, EVAL_FILE}
            foreign = [p.name for p in root.iterdir() if p.name not in ours and not is_temporary_name(p.name) and not p.name.startswith(f"{MANIFEST}.damaged-")]
            if foreign and not self.manifest_path.exists() and not self._panel_records():
                raise IppromptError(
                    f"{root} is not empty and holds no ipprompt run; nothing was written there.",
                    "Choose another --out (default: runs/<story name>/).",
                )
        story = Path(story_path).resolve()
        with self.lock():
            manifest = self.read(full_panels=())
            if manifest is not None and manifest.story.path and Path(manifest.story.path).resolve() != story:
                raise IppromptError(
                    f"{root} holds the run of another story ({manifest.story.path}); nothing was written there.",
                    "Choose another --out for this story.",
                )
            if manifest is None:
                self.update(lambda m: setattr(m, "story", StoryInfo(path=str(story))))
            elif not self.manifest_path.exists() or manifest._loaded_format != FORMAT:
                self.update(lambda m: None)  # rebuilt from panel records, or older: say so on disk now
        if self.active.enter():  # no other run on this folder: what temporary files remain are stale
            removed = remove_stale_temporaries([root, root / "panels", *(root / "panels").glob("*/"), root / "refs", self.history_dir()])
            if removed:
                self.notes.append(f"Removed {len(removed)} temporary file(s) an interrupted run left in {root}.")

    def release(self) -> None:
        """This run is over: let the next one know (and wait for the background writer)."""
        self.flush()
        self.active.leave()

    # ------------------------------------------------------------------ pages and evaluations
    def write_storyboard(self, name: str, html: str) -> Path:
        """Write a storyboard page (``storyboard.html`` or ``storyboard-single.html``) under the lock."""
        if name not in PAGES:
            raise ValueError(f"not a storyboard page: {name}")
        path = self.root / name
        with self.lock():
            try:
                same = path.is_file() and path.read_text(encoding="utf-8") == html
            except (OSError, UnicodeDecodeError):
                same = False
            if not same:  # an unchanged page is not rewritten (a read-only run folder still renders)
                atomic_write_text(path, html)
        return path

    def write_eval(self, change: Callable[[str | None], str]) -> Path:
        """Read-modify-write ``eval.json`` under the lock (``change`` gets its text, None when absent
        or unreadable, and returns the new text), so two evaluations never drop each other's result."""
        path = self.root / EVAL_FILE
        with self.lock():
            try:
                current: str | None = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                current = None
            atomic_write_text(path, change(current))
        return path
