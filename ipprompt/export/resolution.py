"""Which panels a page enlarges: fewer pixels than their place on the page at the chosen dpi.

A printed page at 300 dpi wants ~1,900 px across a full-width panel of a comic page; a grid cell
is 512 px. Enlarged by the page, a panel prints soft, and the author should know which ones
before sending a PDF to a print shop: the fix is the print pass (``--upscale 2|3|4``) or a lower
``--dpi``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from ipprompt.export.pages import Book, cell_box


@dataclass(frozen=True)
class Shortfall:
    """A panel the page enlarges: its pixels, the pixels its place needs, and by how much."""

    number: int
    image: tuple[int, int]
    place: tuple[int, int]
    factor: int = 1  # the print pass the image already had (1: none)

    @property
    def needed_factor(self) -> int:
        """The ``--upscale`` that would give the place its pixels (may exceed 4)."""
        return math.ceil(self.enlargement * self.factor - 1e-9)

    @property
    def enlargement(self) -> float:
        """How much the page enlarges the image to fill its place (it is cropped to fit, so the larger ratio)."""
        return max(self.place[0] / self.image[0], self.place[1] / self.image[1])


def _size(path: object) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:  # type: ignore[arg-type]
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def under_resolved(book: Book) -> list[Shortfall]:
    """Panels with fewer pixels than their place on the page at the book's dpi, in story order."""
    out = []
    for art, placement in zip(book.arts, book.placements):
        if art.image is None:
            continue
        size = _size(art.image)
        box = cell_box(book.spec, placement)
        if size is None or box.width <= 0 or box.height <= 0:
            continue
        entry = book.manifest.panel(art.number)
        factor = entry.upscale.factor if entry is not None and entry.upscale is not None else 1
        short = Shortfall(art.number, size, (box.width, box.height), factor)
        if short.enlargement > 1.0:
            out.append(short)
    return out


def shortfall_warning(shortfalls: list[Shortfall], dpi: int) -> str | None:
    """One warning naming every under-resolved panel and what to do, or None."""
    if not shortfalls:
        return None
    worst = max(s.enlargement for s in shortfalls)
    names = ", ".join(f"{s.number} ({s.image[0]}x{s.image[1]} px for {s.place[0]}x{s.place[1]})" for s in shortfalls)
    needed = max(s.needed_factor for s in shortfalls)
    fix = (
        f"Run the story again with --upscale {max(2, needed)} (only the print pass runs), or export at a lower --dpi."
        if needed <= 4 else "Even --upscale 4 is not enough at this dpi: export at a lower --dpi, or accept a softer print."
    )
    plural = len(shortfalls) != 1
    return (
        f"warning: at {dpi} dpi the page enlarges {len(shortfalls)} panel{'s' if plural else ''} "
        f"(up to {worst:.1f}x), which print{'' if plural else 's'} soft: panel{'s' if plural else ''} {names}. {fix}"
    )
