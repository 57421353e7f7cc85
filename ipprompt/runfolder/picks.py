"""The author's choices after a run: pick a candidate, return to the scorer's, bring back an old image.

The scorer's choice is a suggestion; the author decides. ``pick`` makes another candidate the
panel's image (a previewed, pruned one is marked to be finished by the next run, which makes only
that candidate), ``pick_auto`` returns to the scorer's choice, ``history`` lists the panel's earlier
images (``history/NN-*.png``: images replaced by a rerun or a reroll) and ``restore`` brings one
back. A later run keeps all of this as long as the panel's key is unchanged.

Nothing here writes a file: every change is ``RunFolder.change_done_panel`` (the panel's record
and the index, under the folder's lock) and every image ``RunFolder.show_image``. Nothing is ever
deleted: the image a choice replaces stays where it was (a candidate's own file) or is copied to
``history/`` first. Every file named by the manifest is found through ``RunFolder.resolve``, so a
tampered manifest cannot make a pick copy a file from outside the run folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from ipprompt.errors import IppromptError
from ipprompt.runfolder.manifest import PanelEntry, RunManifest, read_manifest
from ipprompt.runfolder.folder import RunFolder
from ipprompt.runfolder.safepath import inside_or_none


@dataclass(frozen=True)
class HistoryImage:
    """One earlier image of a panel, in the run folder's ``history/``."""

    name: str  # the file name: what ``restore`` and ``--from-history`` take
    path: Path
    modified: str  # ISO time, UTC
    width: int | None
    height: int | None
    current: bool  # the panel shows these very pixels now


def _panel(manifest: RunManifest, run_dir: Path, number: int) -> PanelEntry:
    entry = manifest.panel(number)
    if entry is None:
        raise IppromptError(f"{run_dir} has no panel {number}.", f"Its panels are numbered 1-{len(manifest.panels)}.")
    return entry


def _with_chosen(entry: PanelEntry, chosen: int | None, **update: object) -> PanelEntry:
    """The entry with ``chosen`` as the panel's candidate (None: the image is not a candidate)."""
    candidates = [c.model_copy(update={"chosen": c.index == chosen}) for c in entry.candidates]
    # upscale=None: the large image was made from the image this choice replaces (the next run remakes it).
    return entry.model_copy(update={"candidates": candidates, "chosen": chosen, "upscale": None, **update})


def _change_panel(run_dir: Path, number: int, change: Callable[[RunFolder, PanelEntry], PanelEntry]) -> PanelEntry:
    """Apply ``change`` to a done panel under the run folder's lock (its record and the index)."""
    read_manifest(run_dir)  # a clear error when run_dir is no run folder
    folder = RunFolder(run_dir)
    return folder.change_done_panel(number, lambda entry: change(folder, _done_panel_entry(entry, folder.root, number)))


def _done_panel_entry(entry: PanelEntry, run_dir: Path, number: int) -> PanelEntry:
    if not entry.done:
        raise IppromptError(
            f"Panel {number} of {run_dir} has not been made yet, so there is nothing to pick.",
            f"Make it first: `ipprompt story run STORY --out {run_dir} --panels {number}`.",
        )
    return entry


def _show(folder: RunFolder, entry: PanelEntry, source: Path, *, to_history: bool = False) -> str:
    """Make ``source`` the panel image (``RunFolder.show_image``); returns the shape of the image
    now shown: an earlier image may have another shape than the panel's candidates, and the
    storyboard frames the panel by it."""
    folder.show_image(entry, source, to_history=to_history)
    width, height = _size(source)
    return shape_of(width, height) if width and height else entry.shape


def _candidate_image(folder: RunFolder, entry: PanelEntry, index: int, image: str | None) -> Path | None:
    """The candidate's image file, checked to lie inside the run folder (``UnsafePath`` otherwise)."""
    if not image:
        return None
    return folder.resolve(image, f"panels[{entry.number}].candidates[{index}].image")


def pick(run_dir: str | Path, number: int, candidate: int) -> PanelEntry:
    """Make candidate ``candidate`` panel ``number``'s image, chosen by the author.

    A finished candidate becomes the panel image at once. A pruned one (only previewed) is marked
    ``pick_to_finish``: the panel keeps its image until the next ``story run``, which finishes that
    candidate alone and shows it.
    """

    def change(folder: RunFolder, entry: PanelEntry) -> PanelEntry:
        cand = entry.candidate(candidate)
        if cand is None:
            have = ", ".join(str(c.index) for c in entry.candidates) or "none"
            raise IppromptError(
                f"Panel {number} has no candidate {candidate} (its candidates: {have}).",
                "The storyboard's inspector shows every candidate with the command that picks it.",
            )
        image = _candidate_image(folder, entry, candidate, cand.image)
        if cand.finished and not cand.pruned:
            if image is None or not image.is_file():
                raise IppromptError(f"Candidate {candidate} of panel {number} has no image file ({cand.image}).", "Run the panel again with --force.")
            shape = _show(folder, entry, image)
            return _with_chosen(entry, candidate, picked_by="author", picked_from_history=None, pick_to_finish=None, shape=shape)
        if not cand.arrangement.cells:
            raise IppromptError(f"Candidate {candidate} of panel {number} has no recorded arrangement, so it cannot be finished.", "Pick a finished candidate.")
        return entry.model_copy(update={"pick_to_finish": candidate})

    return _change_panel(Path(run_dir), number, change)


def pick_auto(run_dir: str | Path, number: int) -> PanelEntry:
    """Return panel ``number`` to the scorer's choice (and forget a pick waiting to be finished)."""

    def change(folder: RunFolder, entry: PanelEntry) -> PanelEntry:
        choice = entry.scorer_choice if entry.scorer_choice is not None else entry.chosen
        cand = entry.candidate(choice) if choice is not None else None
        image = _candidate_image(folder, entry, choice, cand.image) if cand is not None and choice is not None else None
        if image is None or not image.is_file():
            raise IppromptError(f"Panel {number}: the scorer's choice has no image file.", "Run the panel again with --force.")
        shape = _show(folder, entry, image)
        return _with_chosen(entry, choice, picked_by="scorer", picked_from_history=None, pick_to_finish=None, shape=shape)

    return _change_panel(Path(run_dir), number, change)


def _size(path: Path) -> tuple[int | None, int | None]:
    try:
        with Image.open(path) as im:  # the header only
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, None


def history(run_dir: str | Path, number: int) -> list[HistoryImage]:
    """Panel ``number``'s earlier images, oldest first."""
    run_dir = Path(run_dir)
    _panel(read_manifest(run_dir), run_dir, number)
    folder = RunFolder(run_dir)
    current = folder.panel_image(number)
    now = current.read_bytes() if current.is_file() else None
    # A link in history/ that leads out of the run folder is no earlier image of this panel.
    files = [p for p in folder.history_dir().glob(f"{number:02d}-*.png") if inside_or_none(folder.root, folder.rel(p)) is not None and p.is_file()]
    files = [p for p in files if not p.name.endswith(".print.png")]  # large panels: kept beside, not restorable as the grid image
    files.sort(key=lambda p: (p.stat().st_mtime, p.name))
    out = []
    for path in files:
        width, height = _size(path)
        modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
        out.append(HistoryImage(path.name, path, modified, width, height, now is not None and path.read_bytes() == now))
    return out


def shape_of(width: int, height: int) -> str:
    """The panel shape an image has (wide 2:1, tall 1:2, else square)."""
    ratio = width / height
    return "wide" if ratio >= 1.5 else "tall" if ratio <= 1 / 1.5 else "square"


def restore(run_dir: str | Path, number: int, name: str) -> PanelEntry:
    """Bring back an earlier image of panel ``number`` from ``history/`` (the current one goes there)."""
    run_dir = Path(run_dir)
    items = history(run_dir, number)
    wanted = name if name.endswith(".png") else f"{name}.png"
    found = next((h for h in items if h.name in (wanted, f"{number:02d}-{wanted}")), None)
    if found is None:
        have = ", ".join(h.name for h in items[-5:]) or "none"
        raise IppromptError(
            f"Panel {number} has no earlier image named {name!r} (latest: {have}).",
            f"List them with `ipprompt story history {run_dir} {number}`.",
        )

    def change(folder: RunFolder, entry: PanelEntry) -> PanelEntry:
        shape = _show(folder, entry, found.path, to_history=True)
        return _with_chosen(entry, None, picked_by="author", picked_from_history=found.name, pick_to_finish=None, shape=shape)

    return _change_panel(run_dir, number, change)
