"""What the storyboard shows beyond the manifest's own data: the author's picks and the page layout.

Kept apart from ``render`` (which turns a manifest into the template's view) because both parts
follow rules of their own: a pick shows the command that makes it, so that the page written by a
run is also the place where the author chooses; the comic page places wide and tall panels with
the layout rule the exporter uses too (``ipprompt.storyboard.pagelayout``), so screen, print and export agree.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from ipprompt.runfolder.manifest import PanelEntry

# Columns of the comic page: three on a wide screen, two on a narrower one and on paper (the
# print sheet), one on a phone (panels then simply follow each other).
PAGE_COLUMNS = (2, 3)
# The <img> size hints of a panel's art per shape (the browser reserves the box before loading).
FRAME_SIZES = {"square": (512, 512), "wide": (512, 256), "tall": (256, 512)}


def run_argument(root: Path) -> str:
    """The run folder as a command line names it: relative to here when below here, quoted."""
    root = Path(root)
    try:
        rel = os.path.relpath(root.resolve(), Path.cwd().resolve())
    except ValueError:  # another drive (Windows)
        rel = str(root.resolve())
    text = rel if not rel.startswith("..") else str(root.resolve())
    return shlex.quote(text)


def pick_command(run_arg: str, number: int, candidate: int) -> str:
    return f"ipprompt story pick {run_arg} {number} {candidate}"


def add_pick_views(view: dict[str, Any], panel: PanelEntry, run_arg: str) -> None:
    """Pick state of a panel view: the badges, the frame's image and every candidate's command."""
    pending = panel.pick_to_finish if panel.done else None
    for cand in view["candidates"]:
        cand["pick_command"] = pick_command(run_arg, panel.number, cand["index"])
        cand["pick_pending"] = cand["index"] == pending
        cand["picked"] = cand["chosen"] and panel.picked_by == "author"
    waiting = next((c for c in view["candidates"] if c["pick_pending"]), None)
    view["pick_pending"] = waiting
    view["picked"] = view["done"] and (panel.picked_by == "author" or waiting is not None)
    view["auto_command"] = f"ipprompt story pick {run_arg} {panel.number} --auto"
    # Until the next run finishes it, a picked preview stands in for the panel's image.
    view["frame_url"] = (waiting["image_url"] if waiting and waiting["image_url"] else None) or view["image_url"]
    # A manifest is a file anyone can edit: only known shapes become class names and sizes.
    shape = panel.shape if panel.shape in FRAME_SIZES else "square"
    view["shape_class"] = f"shape-{shape}"
    view["frame_width"], view["frame_height"] = FRAME_SIZES[shape]


def page_layouts(shapes: list[str]) -> dict[int, list[dict[str, int]]]:
    """Per column count, each panel's cells on the comic page (from 1, as CSS grid lines count).

    The storyboard is one long page, so the rule gets rows enough for every panel.
    """
    from ipprompt.storyboard.pagelayout import layout_panels

    rows = max(1, 2 * len(shapes))
    out: dict[int, list[dict[str, int]]] = {}
    for columns in PAGE_COLUMNS:
        out[columns] = [
            {"index": p.index, "col": p.col + 1, "row": p.row + 1, "colspan": p.colspan, "rowspan": p.rowspan}
            for p in layout_panels(shapes, columns, rows)
        ]
    return out
