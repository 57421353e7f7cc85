"""The reference rules of visual prompting: cells, shares, pinned cells, masks, crops, orderings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ipprompt.dvp.grid import (
    EMPTY_CELL_COLOR,
    GridSpec,
    RefImage,
    build_canvas,
    crop_target,
    element_orders,
    element_shares,
    fit_to_tile,
    place_references,
    target_mask,
)


def refs(prefix: str, n: int) -> list[RefImage]:
    return [RefImage(f"{prefix}{i:02d}".ljust(64, "0"), Path(f"/{prefix}{i}.png"), score=1 - i / 10) for i in range(n)]


def test_attention_order_and_target_3x3() -> None:
    spec = GridSpec(3, 256)
    assert spec.target == (1, 1)
    assert spec.attention_order == ((0, 1), (0, 0), (0, 2), (1, 0), (1, 2), (2, 1), (2, 0), (2, 2))
    assert spec.pinned_cells == ((0, 1), (2, 1), (1, 0), (1, 2))  # top, bottom, left, right
    assert spec.size == 768


def test_2x2_target_is_bottom_right() -> None:
    spec = GridSpec(2, 256)
    assert spec.target == (1, 1)
    assert set(spec.attention_order) == {(0, 0), (0, 1), (1, 0)}
    assert spec.box(spec.target) == (256, 256, 512, 512)


@pytest.mark.parametrize("grid,tile", [(4, 256), (3, 250)])
def test_bad_grid_specs(grid: int, tile: int) -> None:
    with pytest.raises(ValueError):
        GridSpec(grid, tile)


def test_equal_shares_remainder_to_highest_attention() -> None:
    assert element_shares(8, (0, 1, 2)) == {0: 3, 1: 3, 2: 2}
    assert element_shares(8, (2, 0, 1)) == {2: 3, 0: 3, 1: 2}
    assert element_shares(8, (0, 1)) == {0: 4, 1: 4}
    assert element_shares(6, (0, 1, 2)) == {0: 2, 1: 2, 2: 2}


def test_elements_fill_cells_in_attention_order() -> None:
    spec = GridSpec(3, 256)
    ranked = [refs("a", 9), refs("b", 9), refs("c", 9)]
    arr = place_references(spec, ranked, (1, 0, 2))
    by_cell = {p.cell: p for p in arr.placements}
    order = spec.attention_order
    assert [by_cell[c].element for c in order] == [1, 1, 1, 0, 0, 0, 2, 2]
    # Each element takes its best-ranked references first.
    assert [by_cell[c].ref.sha256[:3] for c in order[:3]] == ["b00", "b01", "b02"]
    assert spec.target not in by_cell


def test_pinned_refs_take_cells_next_to_target() -> None:
    spec = GridSpec(3, 256)
    pinned = refs("p", 2)
    arr = place_references(spec, [refs("a", 9), refs("b", 9)], (0, 1), pinned=pinned)
    pinned_cells = [p.cell for p in arr.placements if p.pinned]
    assert pinned_cells == [(0, 1), (2, 1)]
    free = [p for p in arr.placements if not p.pinned]
    assert len(free) == 6 and [p.element for p in free].count(0) == 3
    assert all(p.cell not in pinned_cells for p in free)


def test_duplicates_skipped_and_offsets_move_to_next_ranked() -> None:
    spec = GridSpec(3, 256)
    a = refs("a", 9)
    arr = place_references(spec, [a, a[:4] + refs("b", 5)], (0, 1))
    shas = [p.ref.sha256 for p in arr.placements]
    assert len(shas) == len(set(shas)) == 8
    advanced = place_references(spec, [a, refs("b", 9)], (0, 1), offsets=(4, 0))
    assert advanced.refs_of(0)[0].sha256.startswith("a04")


def test_short_lists_pass_cells_on_and_leave_grey() -> None:
    spec = GridSpec(3, 256)
    arr = place_references(spec, [refs("a", 1), refs("b", 3)], (0, 1))
    assert len(arr.placements) == 4  # 1 + 3 references for 8 cells


def test_orderings_count_and_order() -> None:
    assert element_orders(3, 6) == [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    assert element_orders(3, 4) == [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0)]
    assert len(element_orders(4, 6)) == 6 and len(element_orders(1, 6)) == 1


def test_mask_is_white_on_target_only() -> None:
    spec = GridSpec(3, 256)
    mask = np.array(target_mask(spec))
    assert mask.shape == (768, 768)
    assert (mask[256:512, 256:512] == 255).all()
    mask[256:512, 256:512] = 0
    assert (mask == 0).all()


def test_centre_crop_keeps_proportions() -> None:
    wide = Image.new("RGB", (400, 200), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 80, 200))  # blue band at the far left is cropped away
    tile = fit_to_tile(wide, 256)
    assert tile.size == (256, 256)
    assert tile.getpixel((0, 128)) == (255, 0, 0)


def test_canvas_places_refs_and_crop_returns_target(tmp_path: Path) -> None:
    spec = GridSpec(3, 256)
    colours = {}
    ranked = []
    for i in range(2):
        path = tmp_path / f"r{i}.png"
        colour = (40 * (i + 1), 200, 10)
        Image.new("RGB", (300, 300), colour).save(path)
        colours[path] = colour
        ranked.append([RefImage(f"{i}".ljust(64, "0"), path)])
    arr = place_references(spec, ranked, (1, 0))
    canvas = build_canvas(spec, arr, lambda r: Image.open(r.path))
    assert canvas.size == (768, 768)
    assert canvas.getpixel((384, 100)) == colours[ranked[1][0].path]  # top-centre: first in order
    assert canvas.getpixel((100, 100)) == colours[ranked[0][0].path]  # top-left
    assert canvas.getpixel((384, 384)) == EMPTY_CELL_COLOR
    assert crop_target(spec, canvas).size == (256, 256)
