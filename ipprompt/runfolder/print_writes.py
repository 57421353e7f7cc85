"""A panel's large image (the print pass): where it lives, and how it is replaced without loss.

The grid-size image stays ``panels/NN.png`` (what the search chose, what picks, ``eval`` and
continuity use); the large panel is ``panels/NN-print.png`` and its record is the panel entry's
``upscale``. A large panel that is replaced (a new pass, a pick, a rerun, ``upscale = 1``) moves to
``history/`` first, as ``NN-<name>.print.png`` beside the grid-size image it was made from when
that moved there too. Like every write to a run folder, these go through the run folder's lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ipprompt.atomic import atomic_save_image
from ipprompt.runfolder.manifest import PanelEntry, UpscaleEntry

if TYPE_CHECKING:
    from PIL import Image

    from ipprompt.runfolder.folder import RunFolder

PRINT_SUFFIX = ".print.png"


def print_image_path(folder: "RunFolder", number: int) -> Path:
    """Where a panel's large image lives: ``panels/NN-print.png`` beside the grid-size ``NN.png``."""
    return folder.root / "panels" / f"{number:02d}-print.png"


def is_print_history(name: str) -> bool:
    """A history file holding a large panel (listed with, never instead of, the grid-size images)."""
    return name.endswith(PRINT_SUFFIX)


def retire_print_image(folder: "RunFolder", number: int, *, paired: Path | None = None, stem: str | None = None) -> Path | None:
    """Move the panel's large image to ``history/`` (named after ``paired``, the grid-size image's
    history file, when it moved too). Returns where it went, or None when there was none."""
    with folder.lock():
        current = print_image_path(folder, number)
        if not current.is_file():
            return None
        if paired is not None:
            dest = paired.with_name(paired.name[: -len(".png")] + PRINT_SUFFIX)
            n = 2
            while dest.exists():
                dest = paired.with_name(f"{paired.name[: -len('.png')]}-{n}{PRINT_SUFFIX}")
                n += 1
        else:
            dest = folder.history_path(number, f"{stem or 'earlier'}.print")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(current, dest)
        return dest


def set_upscale(folder: "RunFolder", number: int, record: UpscaleEntry | None) -> PanelEntry | None:
    """Record (or forget, with None) the panel's pass in its entry; a panel not in the run is left."""
    return folder.update_panel(number, lambda entry: entry.model_copy(update={"upscale": record}) if entry is not None else None)


def forget_print_image(folder: "RunFolder", number: int, *, stem: str | None = None) -> None:
    """Forget the panel's pass (``upscale = 1``): its large image moves to history, its record goes."""
    with folder.lock():
        retire_print_image(folder, number, stem=stem)
        set_upscale(folder, number, None)


def write_print_image(folder: "RunFolder", number: int, image: "Image.Image", record: UpscaleEntry, *, old_key: str | None) -> None:
    """Write a panel's new large image (the one it replaces goes to history first), then its record."""
    with folder.lock():
        retire_print_image(folder, number, stem=old_key)
        atomic_save_image(print_image_path(folder, number), image)
        set_upscale(folder, number, record)
