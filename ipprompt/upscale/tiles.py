"""Overlapping tiles over a large image and a seamless blend of what was made of them.

FLUX works best near one megapixel; a 4x panel of a 512 px grid is 2048 px on a side. The pass
therefore re-details such a panel tile by tile. Each tile is re-drawn on its own, so two
neighbours never agree exactly in their overlap; a hard paste would show a seam at every tile
edge. Here every tile is weighted by a raised-cosine ramp that rises from ~0 at an edge that
has a neighbour to 1 one overlap inside it, and the result is the weighted mean: at the place
where one tile ends its weight has already fallen to ~0, so no edge of any tile is visible.
With the ramps of two neighbours spanning the same overlap, their weights sum to 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

ALIGN = 16  # FLUX works on 16 px blocks: tile sides and offsets are multiples of it


@dataclass(frozen=True)
class Tile:
    """One tile's pixel box (left, top, right, bottom) in the large image."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.right, self.bottom

    @property
    def size(self) -> tuple[int, int]:
        return self.right - self.left, self.bottom - self.top


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets along one axis: as few tiles as keep every overlap >= ``overlap``, spread evenly."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    last = length - tile
    # Even spacing, snapped to the 16 px grid; the last tile ends exactly at the edge.
    return sorted({min(last, round(i * last / (count - 1) / ALIGN) * ALIGN) for i in range(count)})


def plan_tiles(width: int, height: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles at most ``tile`` px on a side covering a ``width`` x ``height`` image, row by row.

    An image no larger than ``tile`` either way is one tile: the whole image.
    """
    if tile % ALIGN or overlap % ALIGN or not 0 <= overlap < tile // 2 + 1:
        raise ValueError(f"tile {tile} and overlap {overlap} must be multiples of {ALIGN}, overlap at most half the tile")
    tw, th = min(tile, width), min(tile, height)
    return [Tile(x, y, x + tw, y + th) for y in _starts(height, th, overlap) for x in _starts(width, tw, overlap)]


def _ramp(length: int, lead: int | None, trail: int | None) -> np.ndarray:
    """1-D weights of a tile: a raised-cosine rise over ``lead`` px at its start and a fall over
    ``trail`` px at its end (None: that side is the image's edge, weight 1 up to it)."""
    w = np.ones(length, dtype=np.float64)
    x = np.arange(length, dtype=np.float64) + 0.5
    if lead:
        w *= np.where(x < lead, 0.5 - 0.5 * np.cos(np.pi * np.clip(x / lead, 0, 1)), 1.0)
    if trail:
        y = length - x
        w *= np.where(y < trail, 0.5 - 0.5 * np.cos(np.pi * np.clip(y / trail, 0, 1)), 1.0)
    return w


def tile_weights(tiles: Sequence[Tile], width: int, height: int) -> list[np.ndarray]:
    """Each tile's (h, w) weight map: ramps span the real overlap with each neighbour."""
    out = []
    for t in tiles:
        lefts = [o.right for o in tiles if o.top < t.bottom and o.bottom > t.top and o.left < t.left < o.right]
        rights = [o.left for o in tiles if o.top < t.bottom and o.bottom > t.top and o.left < t.right < o.right]
        tops = [o.bottom for o in tiles if o.left < t.right and o.right > t.left and o.top < t.top < o.bottom]
        bottoms = [o.top for o in tiles if o.left < t.right and o.right > t.left and o.top < t.bottom < o.bottom]
        tw, th = t.size
        wx = _ramp(tw, max(lefts) - t.left if lefts else None, t.right - min(rights) if rights else None)
        wy = _ramp(th, max(tops) - t.top if tops else None, t.bottom - min(bottoms) if bottoms else None)
        out.append(np.outer(wy, wx))
    return out


def blend(tiles: Sequence[Tile], images: Sequence[Image.Image], size: tuple[int, int]) -> Image.Image:
    """The weighted mean of the tiles' images (each the size of its tile) over a ``size`` canvas."""
    width, height = size
    acc = np.zeros((height, width, 3), dtype=np.float64)
    total = np.zeros((height, width, 1), dtype=np.float64)
    for t, image, w in zip(tiles, images, tile_weights(tiles, width, height)):
        if image.size != t.size:
            raise ValueError(f"tile {t.box} came back {image.size[0]}x{image.size[1]}, not {t.size[0]}x{t.size[1]}")
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
        acc[t.top : t.bottom, t.left : t.right] += pixels * w[..., None]
        total[t.top : t.bottom, t.left : t.right] += w[..., None]
    return Image.fromarray(np.clip(np.rint(acc / np.maximum(total, 1e-12)), 0, 255).astype(np.uint8))
