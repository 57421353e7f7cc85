"""Visual prompts: where each reference goes on the grid, and the canvas and mask it makes.

The rules follow the IP-Prompter reference implementation: the target cell is masked (centre of a
3x3 grid, bottom-right of a 2x2 grid); references fill the other cells in the order of attention
the target pays them (highest first); each element gets an equal share of those cells; pinned
(user-specific) references take the cells adjacent to the target. Unlike the reference code we
never paste a reference into the target cell (the mask would erase it and one element would silently
lose a tile).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

Cell = tuple[int, int]  # (row, column)

# Attention the target cell pays its neighbours, highest first (measured in the paper for 3x3).
_ATTENTION_ORDER: dict[int, tuple[Cell, ...]] = {
    3: ((0, 1), (0, 0), (0, 2), (1, 0), (1, 2), (2, 1), (2, 0), (2, 2)),
    # 2x2: the two cells sharing an edge with the bottom-right target, then the diagonal.
    2: ((0, 1), (1, 0), (0, 0)),
}
_TARGET: dict[int, Cell] = {3: (1, 1), 2: (1, 1)}
# Cells adjacent to the target, in the order pinned references take them: top, bottom, left, right.
_PINNED_CELLS: dict[int, tuple[Cell, ...]] = {3: ((0, 1), (2, 1), (1, 0), (1, 2)), 2: ((0, 1), (1, 0))}
EMPTY_CELL_COLOR = (128, 128, 128)


SHAPES = ("square", "wide", "tall")


def shape_tile(tile: int, shape: str) -> tuple[int, int]:
    """A tile's (width, height) in pixels for a panel shape.

    ``square`` is ``tile`` x ``tile``. ``wide`` (2:1) and ``tall`` (1:2) keep about the square
    tile's pixel count, so a panel costs about the same whatever its shape: the short side is
    ``tile / sqrt(2)`` rounded to the nearest multiple of 16 (FLUX works on 16 px blocks) and the
    long side is twice that. Tile 512 gives 736 x 368, tile 256 gives 352 x 176.
    """
    if shape == "square":
        return tile, tile
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    short = max(16, round(tile / 2**0.5 / 16) * 16)
    return (2 * short, short) if shape == "wide" else (short, 2 * short)


@dataclass(frozen=True)
class GridSpec:
    """A ``grid`` x ``grid`` layout of tiles; ``tile`` is the side of a square tile in px.

    ``shape`` gives every tile (and so the generated panel) that aspect ratio: see ``shape_tile``.
    """

    grid: int
    tile: int
    shape: str = "square"

    def __post_init__(self) -> None:
        if self.grid not in _TARGET:
            raise ValueError(f"grid must be 2 or 3, not {self.grid}")
        if self.tile % 16 or self.tile <= 0:
            raise ValueError(f"tile must be a positive multiple of 16, not {self.tile}")
        shape_tile(self.tile, self.shape)  # refuses an unknown shape

    @property
    def tile_size(self) -> tuple[int, int]:
        """(width, height) of one tile."""
        return shape_tile(self.tile, self.shape)

    @property
    def tile_w(self) -> int:
        return self.tile_size[0]

    @property
    def tile_h(self) -> int:
        return self.tile_size[1]

    @property
    def width(self) -> int:
        return self.grid * self.tile_w

    @property
    def height(self) -> int:
        return self.grid * self.tile_h

    @property
    def canvas_size(self) -> tuple[int, int]:
        """(width, height) of the whole canvas, as Pillow sizes are written."""
        return self.width, self.height

    @property
    def size(self) -> int:
        """The side of a square canvas (use ``width`` and ``height`` for other shapes)."""
        if self.shape != "square":
            raise ValueError(f"a {self.shape} grid has no single size: use width and height")
        return self.width

    @property
    def target(self) -> Cell:
        return _TARGET[self.grid]

    @property
    def attention_order(self) -> tuple[Cell, ...]:
        return _ATTENTION_ORDER[self.grid]

    @property
    def pinned_cells(self) -> tuple[Cell, ...]:
        return _PINNED_CELLS[self.grid]

    def box(self, cell: Cell) -> tuple[int, int, int, int]:
        """Pixel box (left, top, right, bottom) of a cell."""
        row, col = cell
        w, h = self.tile_size
        return (col * w, row * h, (col + 1) * w, (row + 1) * h)


@dataclass(frozen=True)
class RefImage:
    """A reference image offered for placement (a theme image, a pinned file, an earlier panel)."""

    sha256: str
    path: Path
    caption: str = ""
    score: float | None = None  # retrieval similarity, when it came from retrieval
    # The file's bytes, when the job travels to a worker that cannot read ``path``.
    data: bytes | None = field(default=None, compare=False, repr=False)

    def open(self, mode: str = "upright") -> Image.Image:
        """The reference as RGB pixels (from its bytes when it travelled, else from its file),
        through the package's one image opener (size limits, modes, EXIF, transparency; ``mode``
        "plain" opens as the reference method does)."""
        from ipprompt.images import open_image

        return open_image(self.data if self.data is not None else self.path, name=str(self.path), mode=mode)


@dataclass(frozen=True)
class Placement:
    cell: Cell
    ref: RefImage
    element: int | None  # index into the panel's elements; None for a pinned reference

    @property
    def pinned(self) -> bool:
        return self.element is None


@dataclass(frozen=True)
class Arrangement:
    """One visual prompt: which reference sits in which cell.

    ``order`` lists element indices from highest to lowest attention; ``offsets`` says how many of
    each element's ranked references were skipped (refinement moves to next-ranked ones).
    """

    order: tuple[int, ...]
    offsets: tuple[int, ...]
    placements: tuple[Placement, ...] = field(default=())

    @property
    def signature(self) -> str:
        """Identity of the visual prompt's pixels: two arrangements with one signature are one prompt."""
        text = ";".join(f"{p.cell[0]},{p.cell[1]}={p.ref.sha256}" for p in sorted(self.placements, key=lambda p: p.cell))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def refs_of(self, element: int) -> list[RefImage]:
        return [p.ref for p in self.placements if p.element == element]

    def to_json(self) -> dict[str, object]:
        return {
            "order": list(self.order),
            "offsets": list(self.offsets),
            "cells": [
                {"row": p.cell[0], "col": p.cell[1], "element": p.element, "pinned": p.pinned, "sha256": p.ref.sha256}
                for p in self.placements
            ],
        }


def element_shares(free_cells: int, order: Sequence[int]) -> dict[int, int]:
    """Cells per element: an equal share, the remainder going to the highest-attention elements."""
    if not order:
        return {}
    base, extra = divmod(free_cells, len(order))
    return {e: base + (1 if rank < extra else 0) for rank, e in enumerate(order)}


def place_references(
    spec: GridSpec,
    ranked: Sequence[Sequence[RefImage]],
    order: Sequence[int],
    offsets: Sequence[int] | None = None,
    pinned: Sequence[RefImage] = (),
) -> Arrangement:
    """Lay references out on the grid for one ordering of the elements.

    ``ranked[e]`` is element e's references, best first. Pinned references take the cells next to
    the target; the other cells go, in attention order, to the elements in ``order``, each taking
    its share from its ranked list (starting at its offset, skipping images already on the grid).
    Cells an element cannot fill pass to the next element with references left; cells nobody can
    fill stay empty (neutral grey).
    """
    offsets = tuple(offsets) if offsets is not None else tuple(0 for _ in ranked)
    if sorted(order) != list(range(len(ranked))):
        raise ValueError(f"order {tuple(order)} is not a permutation of {len(ranked)} elements")
    used: set[str] = set()
    placements: list[Placement] = []
    pinned_slots = list(spec.pinned_cells)
    for ref in pinned:
        if not pinned_slots:
            break
        if ref.sha256 in used:
            continue
        placements.append(Placement(pinned_slots.pop(0), ref, None))
        used.add(ref.sha256)
    taken = {p.cell for p in placements}
    free = [c for c in spec.attention_order if c not in taken]
    shares = element_shares(len(free), order)
    queues = {e: [r for r in ranked[e][offsets[e]:]] for e in order}

    def next_ref(e: int) -> RefImage | None:
        while queues[e]:
            ref = queues[e].pop(0)
            if ref.sha256 not in used:
                return ref
        return None

    picks: dict[int, list[RefImage]] = {e: [] for e in order}

    def take(e: int) -> bool:
        ref = next_ref(e)
        if ref is None:
            return False
        picks[e].append(ref)
        used.add(ref.sha256)
        return True

    for e in order:
        while len(picks[e]) < shares[e] and take(e):
            pass
    # Cells an element could not fill go to the elements that still have references.
    missing = len(free) - sum(len(v) for v in picks.values())
    progressed = True
    while missing > 0 and progressed:
        progressed = False
        for e in order:
            if missing > 0 and take(e):
                missing -= 1
                progressed = True
    cells = iter(free)
    for e in order:
        for ref in picks[e]:
            placements.append(Placement(next(cells), ref, e))
    return Arrangement(tuple(order), offsets, tuple(placements))


def element_orders(n_elements: int, limit: int) -> list[tuple[int, ...]]:
    """The first round's orderings, at most ``limit``.

    Up to 3 elements: permutations in lexicographic order (with 6 candidates, all of them). From 4
    elements on, lexicographic order would give every one of the first ``limit`` orderings to
    element 0 (it has (n-1)! of them), so the orderings come in cyclic rotations instead:
    (0,1,2,3), (1,2,3,0), (2,3,0,1), (3,0,1,2), then the rotations of (0,1,3,2), ... Each block
    of n is a Latin square (every element holds every rank once) and all n! orderings still come,
    each exactly once.
    """
    if n_elements < 4:
        return list(itertools.islice(itertools.permutations(range(n_elements)), limit))
    rotations = (
        base[k:] + base[:k]
        for rest in itertools.permutations(range(1, n_elements))
        for base in [(0, *rest)]
        for k in range(n_elements)
    )
    return list(itertools.islice(rotations, limit))


def fit_to_tile(image: Image.Image, tile: int | tuple[int, int]) -> Image.Image:
    """Centre-crop to the tile's aspect ratio and resize to it (references keep their proportions).

    ``tile`` is a square side or a (width, height) pair (``GridSpec.tile_size``).
    """
    size = (tile, tile) if isinstance(tile, int) else tuple(tile)
    return ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def target_mask(spec: GridSpec) -> Image.Image:
    """White over the target cell (repaint), black elsewhere (keep)."""
    mask = Image.new("L", spec.canvas_size, 0)
    mask.paste(255, spec.box(spec.target))
    return mask


def build_canvas(
    spec: GridSpec, arrangement: Arrangement, open_image: Callable[[RefImage], Image.Image]
) -> Image.Image:
    """The visual prompt's canvas: every placed reference fitted into its cell, the rest grey."""
    canvas = Image.new("RGB", spec.canvas_size, EMPTY_CELL_COLOR)
    for p in arrangement.placements:
        if p.cell == spec.target:
            raise ValueError("a reference may never be placed in the target cell")
        canvas.paste(fit_to_tile(open_image(p.ref), spec.tile_size), spec.box(p.cell)[:2])
    return canvas


def crop_target(spec: GridSpec, image: Image.Image) -> Image.Image:
    """The generated panel: the target cell of a filled canvas."""
    return image.crop(spec.box(spec.target))
