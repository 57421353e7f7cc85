"""Every write of a panel's images: commits of made panels and finished picks, picks, history.

One rule holds in all of them, also when two processes work on one panel at once: **no take is
ever lost**. Whatever is the panel image when it is replaced goes to ``history/`` first unless an
identical copy is already kept there (or, for a pick between candidates, in the candidate's own
file). The decision and the writes of a commit happen in one hold of the run folder's lock; only
the image encoding (the slow part) happens before it, so a background commit barely delays the
next panel. A take that arrives after a newer reroll of its panel was committed goes straight to
``history/``: the panel keeps showing the newest reroll, and its recorded reroll count never drops.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ipprompt.atomic import atomic_save_image, atomic_write_bytes, encode_image
from ipprompt.errors import IppromptError
from ipprompt.runfolder.manifest import (
    ArrangementEntry,
    CandidateEntry,
    CellEntry,
    CharacterEntry,
    DialogueEntry,
    ElementEntry,
    LoraEntry,
    PanelEntry,
    RefEntry,
    Scores,
)
from ipprompt.runfolder.print_writes import retire_print_image
from ipprompt.runfolder.store import write_record
from ipprompt.runfolder.safepath import UnsafePath

if TYPE_CHECKING:
    from PIL import Image

    from ipprompt.dvp.grid import RefImage
    from ipprompt.pipeline.execute import PanelResult
    from ipprompt.pipeline.finish_pick import FinishedPick
    from ipprompt.pipeline.plan import Overlay
    from ipprompt.runfolder.folder import RunFolder

THUMB_PX = 256
# Visual prompts of candidates not chosen are shown as thumbnails (and can be rebuilt from their
# arrangement), so a half-size JPEG beats a 1536 px PNG's ~0.3 s encoding; the chosen one stays lossless.
GRID_PREVIEW_SIDE = 768
GRID_PREVIEW_QUALITY = 85


def image_file_problem(path: Path) -> str | None:
    """``ipprompt.images.image_file_problem``, imported late: a storyboard page needs no Pillow."""
    from ipprompt.images import image_file_problem as check

    return check(path)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")


class PanelWrites:
    """The panel-writing half of ``RunFolder`` (paths, lock and manifest are in ``folder``)."""

    def __init__(self) -> None:
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future[PanelEntry]] = []

    # ------------------------------------------------------------------ checks
    def has_files(self: "RunFolder", entry: PanelEntry) -> bool:
        """Every file the entry names is inside the folder and exists, and the panel image decodes
        (a corrupt one is made again; the file goes to ``history/`` as ``NN-...-damaged.png``)."""
        files = [entry.image, entry.mask] + [c.grid for c in entry.candidates]
        try:
            paths = [self.resolve(f) for f in files]
        except UnsafePath:
            return False
        return all(p.is_file() for p in paths) and image_file_problem(paths[0]) is None

    def panel_problem(self: "RunFolder", entry: PanelEntry) -> str | None:
        """Why a done panel's image cannot be shown ("missing", "corrupt: ..."), or None."""
        try:
            path = self.resolve(entry.image, f"panels[{entry.number}].image")
        except UnsafePath as exc:
            return exc.message
        if not path.is_file():
            return "missing"
        problem = image_file_problem(path)
        return None if problem is None else f"corrupt: {problem}"

    # ------------------------------------------------------------------ history
    def write_record(self: "RunFolder", entry: PanelEntry) -> None:
        """The panel's own record beside its files (what the index points to)."""
        write_record(self.root, entry)

    def keep_current_image(self: "RunFolder", entry: PanelEntry | None, *, candidates_count: bool = True, number: int | None = None) -> Path | None:
        """Before the panel image is replaced: copy it to ``history/`` unless a copy exists already.

        An earlier history file with the same bytes is a copy, and so (``candidates_count``) is a
        candidate's own file: picking between candidates adds nothing to history, while an image
        found nowhere else is kept, so nothing is ever lost. A commit, which is about to overwrite
        the candidates' files, passes ``candidates_count=False``.
        """
        n = entry.number if entry is not None else number
        assert n is not None
        image = self.panel_image(n)
        if not image.is_file():
            return None
        data = image.read_bytes()
        copies: list[Path] = []
        if entry is not None and candidates_count:
            for c in entry.candidates:
                try:
                    copies.append(self.resolve(c.image)) if c.image else None
                except UnsafePath:
                    pass
        copies += sorted(self.history_dir().glob(f"{n:02d}-*.png"))
        if any(p.is_file() and p.stat().st_size == len(data) and p.read_bytes() == data for p in copies):
            return None
        stem = (entry.key if entry is not None else None) or _stamp()
        if image_file_problem(image) is not None:
            stem += "-damaged"
        dest = self.history_path(n, stem)
        atomic_write_bytes(dest, data)
        return dest

    def show_image(self: "RunFolder", entry: PanelEntry, source: Path, *, to_history: bool = False) -> None:
        """Make ``source`` (a file inside the run folder) the panel image, keeping the image it replaces.

        ``to_history`` (bringing back an earlier image): the current image goes to ``history/`` even
        when a candidate holds the same pixels, so the history lists it to flip back to. Call inside
        ``update_panel``'s change, so the check and the write are one step under the lock.
        """
        data = source.read_bytes()
        image = self.panel_image(entry.number)
        # A choice forgets the print pass (picks): its large image goes to history with it.
        retire_print_image(self, entry.number, stem=entry.upscale.key if entry.upscale else None)
        if image.is_file() and image.stat().st_size == len(data) and image.read_bytes() == data:
            return  # shown already: nothing is replaced, nothing written
        self.keep_current_image(entry, candidates_count=not to_history)
        atomic_write_bytes(image, data)

    def change_done_panel(self: "RunFolder", number: int, change: Callable[[PanelEntry], PanelEntry]) -> PanelEntry:
        """Apply an author's choice (``picks``) to a done panel under the lock: its record and the index.

        ``change`` gets the current full entry and returns the new one; it writes the panel image
        through ``show_image``. A panel that is not made yet is refused by ``change``'s caller.
        """
        result: dict[str, PanelEntry] = {}

        def apply(entry: PanelEntry | None) -> PanelEntry:
            if entry is None:
                raise IppromptError(f"{self.root} has no panel {number}.", "`ipprompt story render RUN` shows its panels.")
            result["entry"] = change(entry)
            return result["entry"]

        self.update_panel(number, apply)
        return result["entry"]

    # ------------------------------------------------------------------ starting a panel
    def begin_panel(self: "RunFolder", number: int, overlay: "Overlay", reroll: int = 0) -> None:
        """Before a panel is made again: mark it pending, move its image to history, clear its files.

        All under the lock, in this order, so a Ctrl-C never leaves a "done" panel whose files are
        gone. A panel already showing (or making) a newer reroll than this one is left alone: this
        take will go to ``history/`` when it is committed.
        """

        seen: dict[str, PanelEntry | None] = {}
        newer = {"made or making": False}

        def mark(old: PanelEntry | None) -> PanelEntry | None:
            seen["old"] = old
            if old is not None and old.reroll > reroll:
                newer["made or making"] = True
                return None
            reserved = max(reroll, old.rerolls_reserved if old is not None else 0)
            return pending_entry(number, overlay, reroll).model_copy(update={"rerolls_reserved": reserved})

        with self.lock():
            self.update_panel(number, mark)
            previous = seen.get("old")
            if newer["made or making"]:
                return
            image, history = self.panel_image(number), None
            if image.is_file():
                stem = (previous.key if previous is not None else None) or _stamp()
                if image_file_problem(image) is not None:
                    stem += "-damaged"
                history = self.history_path(number, stem)
                history.parent.mkdir(parents=True, exist_ok=True)
                os.replace(image, history)
            retire_print_image(self, number, paired=history, stem=previous.key if previous is not None else None)
            pdir = self.panel_dir(number)
            if pdir.is_dir():
                shutil.rmtree(pdir, ignore_errors=True)

    # ------------------------------------------------------------------ committing a made panel
    def thumb(self: "RunFolder", ref: RefImage) -> str:
        """A reference's thumbnail in ``refs/`` (named by its content, so concurrent writers agree)."""
        path = self.ref_thumb(ref.sha256)
        if not path.exists():
            image = ref.open()
            image.thumbnail((THUMB_PX, THUMB_PX))
            atomic_save_image(path, image, quality=85)
        return self.rel(path)

    def _ref_entry(self: "RunFolder", ref: RefImage) -> RefEntry:
        return RefEntry(sha256=ref.sha256, caption=ref.caption, score=ref.score, file=ref.path.name, thumb=self.thumb(ref))

    def commit_async(self: "RunFolder", result: "PanelResult") -> "Future[PanelEntry]":
        """``commit`` on a background writer thread, so the GPU starts the next panel meanwhile.

        One writer thread keeps commits in order. Call ``flush`` before reading what a commit
        writes (continuity, rendering).
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

    def commit(self: "RunFolder", result: "PanelResult") -> PanelEntry:
        """Write a made panel: its files, the panel image, its record, then its index entry.

        The images are encoded first, without the lock; then, under it, the image the panel shows
        now goes to ``history/`` (unless kept there already) and the new files are written, or, when
        a newer reroll of the panel was committed meanwhile, this take goes to ``history/``.
        """
        job, search = result.job, result.search
        n = job.number
        pdir = self.panel_dir(n)
        from ipprompt.backends.lora import parse_lora
        from ipprompt.dvp.grid import target_mask
        from ipprompt.pipeline.execute import grid_spec

        files: dict[Path, bytes] = {pdir / "mask.png": encode_image(target_mask(grid_spec(job)), ".png")}
        candidates = []
        for c in search.candidates:
            grid_path, grid_bytes = self._grid_bytes(pdir, c.index, c.canvas, chosen=c.index == search.chosen)
            files[grid_path] = grid_bytes
            cand_path = pdir / f"cand-{c.index}.png"
            if c.cell is not None:
                files[cand_path] = encode_image(c.cell, ".png")
            cells = [
                CellEntry(row=p.cell[0], col=p.cell[1], element=p.element, pinned=p.pinned, sha256=p.ref.sha256, thumb=self.thumb(p.ref), caption=p.ref.caption)
                for p in c.arrangement.placements
            ]
            prompt = c.prompt or job.text
            candidates.append(
                CandidateEntry(
                    index=c.index,
                    round=c.round,
                    seed=c.seed,
                    arrangement=ArrangementEntry(order=list(c.arrangement.order), offsets=list(c.arrangement.offsets), cells=cells),
                    grid=self.rel(grid_path),
                    image=self.rel(cand_path) if c.cell is not None else None,
                    prompt=None if prompt == job.text else prompt,  # stored once, as the panel's text
                    steps_run=c.steps_run,
                    finished=c.finished,
                    pruned=c.pruned,
                    preview_scores=Scores(**c.preview_scores.to_json()) if c.preview_scores else None,
                    scores=Scores(**c.scores.to_json()) if c.scores else None,
                    chosen=c.index == search.chosen,
                    judged_at=list(c.judged_at),
                )
            )
        image_bytes = encode_image(search.image, ".png")
        entry = pending_entry(n, job.overlay).model_copy(
            update=dict(
                status="done",
                key=job.key,
                content_key=job.content_key,
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
                rungs=list(search.rungs),
                schedule_source=search.schedule.source if search.schedule is not None else None,
                nfe=search.nfe,
                seconds=result.seconds,
                peak_gpu_bytes=result.peak_gpu_bytes,
            )
        )

        shown = {"yes": True}

        def place(old: PanelEntry | None) -> PanelEntry | None:
            if old is not None and old.done and old.reroll > job.reroll:
                shown["yes"] = False
                # A newer reroll is shown: keep this take, leave the panel as it is.
                atomic_write_bytes(self.history_path(n, job.key or _stamp()), image_bytes)
                return None
            self.keep_current_image(old, candidates_count=False, number=n)
            for path, data in files.items():
                atomic_write_bytes(path, data)
            atomic_write_bytes(self.panel_image(n), image_bytes)
            reserved = max(entry.reroll, old.rerolls_reserved if old is not None else 0)
            return entry.model_copy(update={"rerolls_reserved": reserved})

        placed = self.update_panel(n, place)
        return placed if shown["yes"] and placed is not None else entry

    def commit_finished_pick(self: "RunFolder", number: int, finished: "FinishedPick") -> PanelEntry:
        """Write a picked candidate the run just finished: its image (the first preview is kept
        beside it as ``preview-K.png``), the panel image, then the entry, which now names it chosen
        by the author. The image it replaces is kept (``keep_current_image``)."""
        i = finished.index
        pdir = self.panel_dir(number)
        cand_path, preview_path = pdir / f"cand-{i}.png", pdir / f"preview-{i}.png"
        cell = encode_image(finished.cell, ".png")

        def change(entry: PanelEntry | None) -> PanelEntry:
            if entry is None:
                raise IppromptError(f"Panel {number} left the manifest while its picked candidate was finished.")
            if cand_path.is_file() and not preview_path.exists():  # a retry after a kill keeps the first preview
                os.replace(cand_path, preview_path)
            atomic_write_bytes(cand_path, cell)
            self.keep_current_image(entry)
            retire_print_image(self, number, stem=entry.upscale.key if entry.upscale else None)
            atomic_write_bytes(self.panel_image(number), cell)
            candidates = []
            for c in entry.candidates:
                if c.index == i:
                    c = c.model_copy(update=dict(
                        image=self.rel(cand_path),
                        preview_image=self.rel(preview_path) if preview_path.is_file() else c.preview_image,
                        finished=True,
                        pruned=False,
                        scores=Scores(**finished.scores.to_json()),
                        steps_run=finished.steps_run,
                    ))
                candidates.append(c.model_copy(update={"chosen": c.index == i}))
            return entry.model_copy(update=dict(
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

        placed = self.update_panel(number, change)
        assert placed is not None
        return placed

    @staticmethod
    def _grid_bytes(pdir: Path, index: int, canvas: "Image.Image", *, chosen: bool) -> tuple[Path, bytes]:
        if chosen:
            return pdir / f"grid-{index}.png", encode_image(canvas, ".png")
        small = canvas.copy()
        small.thumbnail((GRID_PREVIEW_SIDE, GRID_PREVIEW_SIDE))
        return pdir / f"grid-{index}.jpg", encode_image(small, ".jpg", quality=GRID_PREVIEW_QUALITY)


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
