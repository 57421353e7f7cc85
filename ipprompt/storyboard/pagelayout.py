"""Where each panel goes on a comic page: one rule shared by the exporter and the storyboard.

A panel is ``square`` (one cell), ``wide`` (2:1, two columns) or ``tall`` (1:2, two rows). Pages
are a grid of ``columns`` x ``rows`` cells; the default 2 x 3 gives cells close to square on A4,
US letter and comic-book pages, so square art is cropped least.

Panels are packed in story order, and reading order (rows top to bottom, left to right in a row)
must stay story order: each panel takes the first free slot that fits *after* the slot of the
panel before it, on the same page if it can, else on a fresh page. That fills every hole the order
allows (the cell beside a tall panel, the next row's cells), and leaves a hole only where filling
it would put a later panel before an earlier one (a square followed by a wide one in two columns).
Holes are never filled by moving a later panel up, because a reader would then read the story out
of order.

The function is pure and knows nothing about pixels, images or HTML, so both renderers share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_COLUMNS = 2
DEFAULT_ROWS = 3

# (rowspan, colspan) per shape. Unknown shapes (a manifest from a newer ipprompt) lay out as
# squares rather than fail: an export should never be blocked by a layout nicety.
SPANS: dict[str, tuple[int, int]] = {"square": (1, 1), "wide": (1, 2), "tall": (2, 1)}


@dataclass(frozen=True)
class Placement:
    """One panel's cells: ``page`` from 0, ``row`` and ``col`` of its top-left cell from 0."""

    index: int
    page: int
    row: int
    col: int
    rowspan: int
    colspan: int


def spans(shape: str, columns: int = DEFAULT_COLUMNS, rows: int = DEFAULT_ROWS) -> tuple[int, int]:
    """(rowspan, colspan) of a shape, clipped to the grid so that every panel fits on a page."""
    rowspan, colspan = SPANS.get(shape, (1, 1))
    return min(rowspan, rows), min(colspan, columns)


def layout_panels(
    shapes: Sequence[str], columns: int = DEFAULT_COLUMNS, rows: int = DEFAULT_ROWS
) -> list[Placement]:
    """Place panels of these shapes on pages of ``columns`` x ``rows`` cells, in reading order.

    Returns one Placement per shape, in the same order. Raises ValueError for a grid smaller than
    one cell.
    """
    if columns < 1 or rows < 1:
        raise ValueError(f"a page needs at least one cell, not {columns} x {rows}")
    placements: list[Placement] = []
    page = 0
    taken: set[tuple[int, int]] = set()
    after = -1  # row-major slot of the previous panel on this page; a panel goes after it
    for index, shape in enumerate(shapes):
        rowspan, colspan = spans(shape, columns, rows)
        slot = _first_fit(taken, after, rowspan, colspan, columns, rows)
        if slot is None:
            page, taken, after = page + 1, set(), -1
            slot = _first_fit(taken, after, rowspan, colspan, columns, rows)
            assert slot is not None  # spans are clipped to the grid, so an empty page fits any panel
        row, col = slot
        taken.update((r, c) for r in range(row, row + rowspan) for c in range(col, col + colspan))
        after = row * columns + col
        placements.append(Placement(index, page, row, col, rowspan, colspan))
    return placements


def page_count(placements: Sequence[Placement]) -> int:
    """How many pages the placements use (0 for no panels)."""
    return max((p.page for p in placements), default=-1) + 1


def _first_fit(
    taken: set[tuple[int, int]], after: int, rowspan: int, colspan: int, columns: int, rows: int
) -> tuple[int, int] | None:
    """The first (row, col) after row-major slot ``after`` whose cells are all free, or None."""
    for slot in range(after + 1, rows * columns):
        row, col = divmod(slot, columns)
        if row + rowspan > rows or col + colspan > columns:
            continue
        cells = ((r, c) for r in range(row, row + rowspan) for c in range(col, col + colspan))
        if not any(cell in taken for cell in cells):
            return row, col
    return None
