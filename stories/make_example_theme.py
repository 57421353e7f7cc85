#!/usr/bin/env python3
"""Draw the example theme for "The Lighthouse Keeper" story.

Regenerates, deterministically and with Pillow only:

* ``stories/themes/lighthouse/*.png`` -- 512x512 RGB reference images in one
  flat-illustration style (shared limited palette, thick dark outlines, flat
  shapes, banded gradients), each with a one-line caption ``same_name.txt``;
* ``stories/themes/lighthouse/theme.toml``;
* ``stories/refs/mira.png`` -- a pinned reference image of Mira (no caption).

Usage::

    python stories/make_example_theme.py

Everything is drawn at 2x and downsampled, then reduced to a small palette so
the PNGs stay tiny. No randomness outside seeded ``random.Random`` instances,
no fonts, no network.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Callable, Iterable, Sequence

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
THEME_DIR = HERE / "themes" / "lighthouse"
REFS_DIR = HERE / "refs"

SIZE = 512
SS = 2  # supersampling factor

Color = tuple[int, int, int]
Point = tuple[float, float]

# --------------------------------------------------------------------------
# Palette (shared by every image)
# --------------------------------------------------------------------------
INK: Color = (28, 26, 38)
NAVY: Color = (22, 32, 64)
NAVY_MID: Color = (40, 58, 102)
NAVY_LIGHT: Color = (72, 94, 138)
TEAL_DARK: Color = (22, 86, 98)
TEAL: Color = (36, 128, 130)
TEAL_LIGHT: Color = (104, 184, 172)
SKY: Color = (164, 212, 214)
CREAM: Color = (246, 234, 204)
WHITE: Color = (252, 250, 242)
MUSTARD: Color = (232, 176, 42)
MUSTARD_LIGHT: Color = (250, 216, 112)
CORAL: Color = (226, 94, 76)
CORAL_DARK: Color = (172, 62, 58)
GREEN: Color = (98, 158, 74)
GREEN_DARK: Color = (60, 112, 60)
STONE: Color = (156, 156, 164)
STONE_DARK: Color = (102, 106, 124)
WOOD: Color = (156, 100, 60)
WOOD_DARK: Color = (106, 66, 46)
SKIN: Color = (244, 198, 162)
HAIR: Color = (96, 54, 40)
GREY: Color = (192, 198, 206)
STORM: Color = (62, 70, 96)
BEAM: Color = (255, 226, 130)  # lamp light, blended over whatever is behind it

OW = 4.0  # default outline width (in 512-space pixels)


def lerp(a: Color, b: Color, t: float) -> Color:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


# --------------------------------------------------------------------------
# Canvas with supersampling and outlined primitives
# --------------------------------------------------------------------------
class Canvas:
    def __init__(self, bg: Color = CREAM) -> None:
        self.im = Image.new("RGB", (SIZE * SS, SIZE * SS), bg)
        self.d = ImageDraw.Draw(self.im)

    # coordinate helpers -------------------------------------------------
    @staticmethod
    def _pts(pts: Iterable[Point]) -> list[tuple[float, float]]:
        return [(x * SS, y * SS) for x, y in pts]

    @staticmethod
    def _box(b: Sequence[float]) -> list[float]:
        x0, y0, x1, y1 = b
        return [min(x0, x1) * SS, min(y0, y1) * SS, max(x0, x1) * SS, max(y0, y1) * SS]

    @staticmethod
    def _w(w: float) -> int:
        return max(1, round(w * SS))

    # primitives -----------------------------------------------------------
    def poly(self, pts: Sequence[Point], fill: Color | None, ow: float = OW) -> None:
        p = self._pts(pts)
        if fill is not None:
            self.d.polygon(p, fill=fill)
        if ow:
            self.d.line(p + [p[0], p[1]], fill=INK, width=self._w(ow), joint="curve")

    def ellipse(self, box: Sequence[float], fill: Color | None, ow: float = OW) -> None:
        if ow:
            self.d.ellipse(self._box(box), fill=fill, outline=INK, width=self._w(ow))
        else:
            self.d.ellipse(self._box(box), fill=fill)

    def circle(self, cx: float, cy: float, r: float, fill: Color | None, ow: float = OW) -> None:
        self.ellipse((cx - r, cy - r, cx + r, cy + r), fill, ow)

    def rect(self, box: Sequence[float], fill: Color | None, ow: float = OW, radius: float = 0) -> None:
        kw = {"outline": INK, "width": self._w(ow)} if ow else {}
        if radius:
            self.d.rounded_rectangle(self._box(box), radius=radius * SS, fill=fill, **kw)
        else:
            self.d.rectangle(self._box(box), fill=fill, **kw)

    def line(self, pts: Sequence[Point], color: Color = INK, w: float = OW, caps: bool = True) -> None:
        p = self._pts(pts)
        self.d.line(p, fill=color, width=self._w(w), joint="curve")
        if caps:
            r = w * SS / 2
            for x, y in (p[0], p[-1]):
                self.d.ellipse([x - r, y - r, x + r, y + r], fill=color)

    def arc(self, box: Sequence[float], start: float, end: float, color: Color = INK, w: float = OW) -> None:
        self.d.arc(self._box(box), start, end, fill=color, width=self._w(w))

    def chord(self, box: Sequence[float], start: float, end: float, fill: Color, ow: float = OW) -> None:
        kw = {"outline": INK, "width": self._w(ow)} if ow else {}
        self.d.chord(self._box(box), start, end, fill=fill, **kw)

    def pieslice(self, box: Sequence[float], start: float, end: float, fill: Color, ow: float = OW) -> None:
        kw = {"outline": INK, "width": self._w(ow)} if ow else {}
        self.d.pieslice(self._box(box), start, end, fill=fill, **kw)

    def limb(self, pts: Sequence[Point], color: Color, w: float, ow: float = OW) -> None:
        """A thick rounded stroke with a dark outline (arms, legs, ropes)."""
        self.line(pts, INK, w + 2 * ow)
        self.line(pts, color, w)

    def blob(self, circles: Sequence[tuple[float, float, float]], fill: Color, ow: float = OW) -> None:
        """Union of circles with a single outer outline (clouds, smoke, foam)."""
        for x, y, r in circles:
            self.circle(x, y, r + ow, INK, 0)
        for x, y, r in circles:
            self.circle(x, y, r, fill, 0)

    # output -------------------------------------------------------------
    def finish(self) -> Image.Image:
        """Downsample (anti-aliasing the edges), then snap every pixel to a small palette.

        The palette is the flat colours actually drawn plus a few blends of each with the
        outline ink, so edges stay smooth while the PNG stays small.
        """
        flat = sorted(col for _, col in (self.im.getcolors(1 << 16) or []))
        pal: list[Color] = []
        for col in flat + [INK]:
            for t in (0.0, 0.33, 0.66):
                b = lerp(col, INK, t)
                if b not in pal:
                    pal.append(b)
        pal = pal[:256]
        pimg = Image.new("P", (1, 1))
        pimg.putpalette([v for col in pal for v in col] + list(INK) * (256 - len(pal)))
        im = self.im.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
        return im.quantize(palette=pimg, dither=Image.Dither.NONE).convert("RGB")


class Tf:
    """Local figure transform: origin (cx, by) at the feet, scale s, optional mirror."""

    def __init__(self, cx: float, by: float, s: float = 1.0, flip: bool = False) -> None:
        self.cx, self.by, self.s, self.f = cx, by, s, -1.0 if flip else 1.0

    def p(self, dx: float, dy: float) -> Point:
        return (self.cx + dx * self.s * self.f, self.by + dy * self.s)

    def pts(self, pts: Iterable[Point]) -> list[Point]:
        return [self.p(x, y) for x, y in pts]

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        a, b = self.p(x0, y0), self.p(x1, y1)
        return (min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1]))

    def w(self, v: float) -> float:
        return v * self.s


def rotate(pts: Iterable[Point], cx: float, cy: float, deg: float) -> list[Point]:
    a = math.radians(deg)
    ca, sa = math.cos(a), math.sin(a)
    return [(cx + (x - cx) * ca - (y - cy) * sa, cy + (x - cx) * sa + (y - cy) * ca) for x, y in pts]


# --------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------
def bands(c: Canvas, top: Color, bottom: Color, y0: float = 0, y1: float = SIZE, n: int = 6) -> None:
    """Banded (posterised) vertical gradient -- the only kind of gradient we use."""
    h = (y1 - y0) / n
    for i in range(n):
        col = lerp(top, bottom, i / max(1, n - 1))
        c.rect((0, y0 + i * h, SIZE, y0 + (i + 1) * h + 1), col, ow=0)


def sky_day(c: Canvas, horizon: float = SIZE) -> None:
    bands(c, SKY, CREAM, 0, horizon, 5)


def sky_night(c: Canvas, horizon: float = SIZE) -> None:
    bands(c, NAVY, NAVY_MID, 0, horizon, 5)


def sky_storm(c: Canvas, horizon: float = SIZE) -> None:
    bands(c, (38, 42, 62), STORM, 0, horizon, 5)


def sky_dawn(c: Canvas, horizon: float = SIZE) -> None:
    bands(c, NAVY_LIGHT, CORAL, 0, horizon * 0.55, 3)
    bands(c, CORAL, MUSTARD_LIGHT, horizon * 0.55, horizon, 3)


def stars(c: Canvas, rng: random.Random, n: int, y1: float, avoid: Callable[[float, float], bool] | None = None) -> None:
    for _ in range(n):
        x, y = rng.uniform(8, SIZE - 8), rng.uniform(8, y1)
        if avoid and avoid(x, y):
            continue
        if rng.random() < 0.25:
            r = rng.uniform(5, 8)
            c.poly([(x, y - r), (x + r * 0.28, y - r * 0.28), (x + r, y), (x + r * 0.28, y + r * 0.28),
                    (x, y + r), (x - r * 0.28, y + r * 0.28), (x - r, y), (x - r * 0.28, y - r * 0.28)],
                   MUSTARD_LIGHT, ow=0)
        else:
            c.circle(x, y, rng.uniform(1.2, 2.6), CREAM, ow=0)


def moon(c: Canvas, x: float, y: float, r: float, sky: Color, crescent: bool = True) -> None:
    c.circle(x, y, r * 1.5, lerp(sky, CREAM, 0.15), ow=0)
    c.circle(x, y, r, CREAM)
    if crescent:
        c.circle(x + r * 0.45, y - r * 0.25, r * 0.85, sky, ow=0)


def cloud(c: Canvas, x: float, y: float, s: float, fill: Color) -> None:
    c.blob([(x, y, 26 * s), (x + 30 * s, y - 14 * s, 32 * s), (x + 64 * s, y, 26 * s),
            (x + 30 * s, y + 8 * s, 24 * s)], fill)


def rain(c: Canvas, rng: random.Random, n: int, color: Color, y1: float = SIZE, slant: float = 14) -> None:
    for _ in range(n):
        x, y = rng.uniform(-20, SIZE), rng.uniform(-10, y1)
        ln = rng.uniform(16, 30)
        c.line([(x, y), (x - slant * ln / 30, y + ln)], color, 2.2)


def calm_sea(c: Canvas, horizon: float, base: Color = TEAL, crest: Color = TEAL_LIGHT, seed: int = 1) -> None:
    c.rect((-5, horizon, SIZE + 5, SIZE + 5), base, ow=0)
    c.line([(-5, horizon), (SIZE + 5, horizon)], INK, 4, caps=False)
    rng = random.Random(seed)
    y, gap, k = horizon + 14, 12.0, 0
    while y < SIZE:
        w = 10 + (y - horizon) * 0.12
        x = rng.uniform(-w, w) + (k % 2) * w
        while x < SIZE:
            c.arc((x, y - w * 0.35, x + w, y + w * 0.35), 200, 340, crest, 2.5 + (y - horizon) * 0.012)
            x += w * rng.uniform(2.2, 3.4)
        y += gap
        gap *= 1.18
        k += 1


def wave_band(c: Canvas, y: float, amp: float, wl: float, fill: Color, phase: float = 0,
              foam: Color | None = CREAM, ow: float = OW) -> None:
    """A band of peaked waves (crest cusp on top) filled down to the bottom."""
    pts: list[Point] = [(-10, SIZE + 10)]
    x = -10.0
    while x <= SIZE + 10:
        t = abs(math.sin(math.pi * (x + phase) / wl))
        pts.append((x, y - amp * (1 - t) ** 1.6))
        x += 3
    pts.append((SIZE + 10, SIZE + 10))
    c.poly(pts, fill, ow)
    if foam:
        k = math.ceil((-10 + phase) / wl)
        while True:
            cx = k * wl - phase
            if cx > SIZE + 20:
                break
            cy = y - amp
            c.blob([(cx + 2, cy + 6, amp * 0.16 + 3), (cx + amp * 0.22, cy + 10, amp * 0.12 + 3),
                    (cx - amp * 0.18, cy + 12, amp * 0.1 + 2)], foam, ow=3)
            k += 1


def cliff(c: Canvas, right: float = 280, top: float = 330, side: str = "left") -> list[Point]:
    """Grassy cliff; returns the grass top line (left to right)."""
    if side == "left":
        face = [(-10, top - 6), (right - 20, top), (right + 10, top + 30), (right - 6, top + 80),
                (right + 24, top + 130), (right + 10, SIZE + 10), (-10, SIZE + 10)]
        grass = [(-10, top - 8), (right - 20, top - 2), (right + 12, top + 28), (right - 14, top + 34),
                 (right - 60, top + 26), (right - 100, top + 38), (right - 160, top + 28), (60, top + 40),
                 (-10, top + 32)]
    else:
        face = [(SIZE + 10, top - 6), (SIZE - right + 20, top), (SIZE - right - 10, top + 30),
                (SIZE - right + 6, top + 80), (SIZE - right - 24, top + 130), (SIZE - right - 10, SIZE + 10),
                (SIZE + 10, SIZE + 10)]
        grass = [(SIZE + 10, top - 8), (SIZE - right + 20, top - 2), (SIZE - right - 12, top + 28),
                 (SIZE - right + 14, top + 34), (SIZE - right + 60, top + 26), (SIZE - right + 100, top + 38),
                 (SIZE - 60, top + 40), (SIZE + 10, top + 32)]
    c.poly(face, STONE_DARK)
    # a few rock cracks
    for i in range(3):
        if side == "left":
            x = right - 40 - i * 70
        else:
            x = SIZE - right + 40 + i * 70
        c.line([(x, top + 70 + i * 25), (x + 14, top + 100 + i * 25), (x + 4, top + 128 + i * 25)], INK, 3)
    c.poly(grass, GREEN)
    return grass


def lighthouse(c: Canvas, x: float, base: float, h: float, wb: float, lit: bool,
               window_col: Color = NAVY) -> Point:
    """White tower with coral stripes; returns the lamp centre."""
    wt = wb * 0.64
    top = base - h

    def half(y: float) -> float:
        return wt / 2 + (wb - wt) / 2 * (y - top) / h

    c.poly([(x - wb / 2, base), (x - wt / 2, top), (x + wt / 2, top), (x + wb / 2, base)], WHITE)
    for f0, f1 in ((0.2, 0.36), (0.56, 0.72)):
        y0, y1 = top + h * f0, top + h * f1
        c.poly([(x - half(y0), y0), (x + half(y0), y0), (x + half(y1), y1), (x - half(y1), y1)], CORAL)
    # door and windows
    dw = wb * 0.22
    c.chord((x - dw, base - wb * 0.52, x + dw, base - wb * 0.52 + 2 * dw), 180, 360, CORAL_DARK)
    c.rect((x - dw, base - wb * 0.52 + dw, x + dw, base), CORAL_DARK)
    c.rect((x - dw + 4, base - wb * 0.52 + dw - 3, x + dw - 4, base - wb * 0.52 + dw + 3), CORAL_DARK, ow=0)
    for fy in (0.46, 0.82):
        y = top + h * fy
        c.rect((x - wb * 0.07, y - wb * 0.1, x + wb * 0.07, y + wb * 0.1), window_col, radius=wb * 0.05)
    # gallery
    gw = wt * 1.35
    c.rect((x - gw / 2, top - wb * 0.09, x + gw / 2, top + 1), NAVY_MID)
    # lamp room
    lw, lh = wt * 0.78, h * 0.15
    ly0 = top - wb * 0.09 - lh
    c.rect((x - lw / 2, ly0, x + lw / 2, top - wb * 0.09), MUSTARD_LIGHT if lit else NAVY_LIGHT)
    if lit:
        c.circle(x, ly0 + lh / 2, lh * 0.3, WHITE, ow=0)
    for fx in (-0.17, 0.17):
        c.line([(x + lw * fx, ly0), (x + lw * fx, top - wb * 0.09)], INK, 3, caps=False)
    # railing
    rail_y = top - wb * 0.09 - lh * 0.42
    c.line([(x - gw / 2, rail_y), (x + gw / 2, rail_y)], INK, 3)
    for i in range(7):
        rx = x - gw / 2 + gw * i / 6
        c.line([(rx, rail_y), (rx, top - wb * 0.09)], INK, 2.5, caps=False)
    # roof
    c.chord((x - lw * 0.66, ly0 - lh * 0.75, x + lw * 0.66, ly0 + lh * 0.75), 180, 360, CORAL)
    c.line([(x, ly0 - lh * 0.75), (x, ly0 - lh * 1.1)], INK, 3)
    c.circle(x, ly0 - lh * 0.78, lh * 0.12, CORAL, ow=3)
    return (x, ly0 + lh / 2)


def beams(c: Canvas, lamp: Point, sky: Color, spread: float = 70, reach: float = 600,
          angles: Sequence[float] = (180, 0), strength: float = 0.5) -> None:
    col = lerp(sky, BEAM, strength)
    lx, ly = lamp
    for a in angles:
        r = math.radians(a)
        tx, ty = lx + reach * math.cos(r), ly + reach * math.sin(r)
        nx, ny = -math.sin(r), math.cos(r)
        c.poly([(lx, ly - 3), (tx + nx * spread, ty + ny * spread), (tx - nx * spread, ty - ny * spread),
                (lx, ly + 3)], col, ow=0)


def rays(c: Canvas, x: float, y: float, r0: float, r1: float, n: int = 12, color: Color = MUSTARD_LIGHT,
         w: float = 5, phase: float = 0.0) -> None:
    """Short radiating strokes around a light source (the flat way to draw a glow)."""
    for k in range(n):
        a = phase + 2 * math.pi * k / n
        rr = r1 if k % 2 == 0 else r0 + (r1 - r0) * 0.6
        c.line([(x + r0 * math.cos(a), y + r0 * math.sin(a)), (x + rr * math.cos(a), y + rr * math.sin(a))],
               color, w)


def lightning(c: Canvas, x: float, y: float, s: float = 1.0) -> None:
    pts = [(0, 0), (26, 0), (10, 44), (30, 44), (-12, 120), (2, 62), (-18, 62)]
    c.poly([(x + px * s, y + py * s) for px, py in pts], MUSTARD_LIGHT, ow=3)


def stone_wall(c: Canvas, box: Sequence[float], base: Color = STONE, mortar: Color = STONE_DARK,
               bw: float = 64, bh: float = 28) -> None:
    x0, y0, x1, y1 = box
    c.rect(box, base, ow=0)
    row, y = 0, y0
    while y < y1:
        c.line([(x0, y), (x1, y)], mortar, 3, caps=False)
        x = x0 + (bw / 2 if row % 2 else 0)
        while x < x1:
            c.line([(x, y), (x, min(y + bh, y1))], mortar, 3, caps=False)
            x += bw
        y += bh
        row += 1


def wood_floor(c: Canvas, y0: float, col: Color = WOOD, seam: Color = WOOD_DARK) -> None:
    c.rect((-5, y0, SIZE + 5, SIZE + 5), col)
    y, gap = y0 + 14, 14.0
    while y < SIZE:
        c.line([(-5, y), (SIZE + 5, y)], seam, 2.5, caps=False)
        gap *= 1.3
        y += gap


# --------------------------------------------------------------------------
# Props
# --------------------------------------------------------------------------
def lantern(c: Canvas, x: float, y: float, s: float = 1.0, lit: bool = True, glow_bg: Color | None = None) -> None:
    """Lantern hanging from (x, y) (top of the ring)."""
    if lit and glow_bg is not None:
        c.circle(x, y + 46 * s, 44 * s, lerp(glow_bg, BEAM, 0.55), ow=0)
        rays(c, x, y + 46 * s, 50 * s, 66 * s, 14, MUSTARD_LIGHT, max(2.0, 3.5 * s), phase=0.1)
    ow = max(2.5, 3.5 * s)
    c.arc((x - 9 * s, y, x + 9 * s, y + 18 * s), 180, 360, INK, ow)
    c.poly([(x - 14 * s, y + 12 * s), (x + 14 * s, y + 12 * s), (x + 21 * s, y + 26 * s),
            (x - 21 * s, y + 26 * s)], NAVY_MID, ow)
    c.rect((x - 16 * s, y + 26 * s, x + 16 * s, y + 64 * s), MUSTARD_LIGHT if lit else GREY, ow)
    if lit:
        c.poly([(x, y + 32 * s), (x + 7 * s, y + 47 * s), (x + 4 * s, y + 54 * s), (x - 4 * s, y + 54 * s),
                (x - 7 * s, y + 47 * s)], CORAL, ow=0)
        c.poly([(x, y + 40 * s), (x + 3.5 * s, y + 49 * s), (x, y + 53 * s), (x - 3.5 * s, y + 49 * s)],
               WHITE, ow=0)
    for fx in (-8, 8):
        c.line([(x + fx * s, y + 26 * s), (x + fx * s, y + 64 * s)], INK, max(1.5, 2 * s), caps=False)
    c.rect((x - 21 * s, y + 63 * s, x + 21 * s, y + 72 * s), NAVY_MID, ow, radius=3 * s)


def fishing_boat(c: Canvas, x: float, y: float, s: float = 1.0, tilt: float = 0.0, light: bool = False) -> None:
    """Small red fishing boat; (x, y) is the waterline centre."""
    def R(pts: Sequence[Point]) -> list[Point]:
        return rotate([(x + px * s, y + py * s) for px, py in pts], x, y, tilt)

    ow = max(2.5, OW * s)
    # mast and flag
    c.line(R([(18, -12), (18, -110)]), INK, 5 * s)
    c.poly(R([(20, -108), (52, -98), (20, -88)]), MUSTARD, ow)
    c.line(R([(18, -100), (80, -14)]), INK, 2 * s, caps=False)
    # cabin
    c.poly(R([(-44, -12), (-44, -56), (2, -56), (2, -12)]), CREAM, ow)
    c.poly(R([(-50, -56), (8, -56), (4, -66), (-46, -66)]), NAVY_MID, ow)
    c.poly(R([(-34, -46), (-10, -46), (-10, -28), (-34, -28)]), MUSTARD_LIGHT if light else TEAL_LIGHT, ow * 0.8)
    # hull
    c.poly(R([(-86, -16), (90, -22), (66, 24), (-62, 24)]), CORAL, ow)
    c.poly(R([(-80, -4), (84, -10), (80, -2), (-76, 4)]), CREAM, 0)
    c.line(R([(-80, -4), (84, -10)]), INK, 2 * s, caps=False)
    c.line(R([(-76, 4), (80, -2)]), INK, 2 * s, caps=False)


def rowboat(c: Canvas, x: float, y: float, s: float = 1.0) -> None:
    ow = max(2.5, OW * s)
    P = lambda pts: [(x + px * s, y + py * s) for px, py in pts]  # noqa: E731
    c.poly(P([(-110, -30), (110, -36), (86, 12), (-90, 12)]), TEAL, ow)
    c.poly(P([(-104, -24), (104, -30), (100, -18), (-100, -12)]), WOOD_DARK, ow * 0.7)
    c.line(P([(-100, -2), (96, -8)]), CREAM, 5 * s, caps=False)
    for bx in (-40, 30):
        (x0, y0), (x1, y1) = P([(bx - 14, -36), (bx + 14, -28)])
        c.rect((x0, y0, x1, y1), WOOD, ow * 0.7)
    # oars
    c.limb(P([(-20, -34), (-150, 30)]), WOOD, 6 * s, ow * 0.6)
    c.poly(P([(-150, 30), (-172, 38), (-176, 52), (-142, 40)]), WOOD, ow * 0.7)


def seagull(c: Canvas, x: float, y: float, s: float = 1.0, flap: float = 0.0) -> None:
    ow = max(2.5, OW * s)
    P = lambda pts: [(x + px * s, y + py * s) for px, py in pts]  # noqa: E731
    up = -40 * flap
    # far wing
    c.poly(P([(10, -6), (60, -50 + up), (120, -70 + up), (90, -30 + up * 0.5), (40, 0)]), GREY, ow)
    c.poly(P([(120, -70 + up), (102, -48 + up * 0.8), (90, -30 + up * 0.5), (110, -52 + up)]), INK, 0)
    # body
    c.ellipse((x - 70 * s, y - 20 * s, x + 50 * s, y + 22 * s), WHITE, ow)
    c.poly(P([(-64, -4), (-104, -20), (-100, 14), (-62, 10)]), WHITE, ow)
    # head
    c.circle(x + 52 * s, y - 18 * s, 24 * s, WHITE, ow)
    c.poly(P([(72, -20), (104, -12), (72, -6)]), MUSTARD, ow * 0.8)
    c.circle(x + 100 * s, y - 13 * s, 2.5 * s, CORAL, 0)
    c.circle(x + 58 * s, y - 24 * s, 4 * s, INK, 0)
    # near wing
    c.poly(P([(-20, -4), (-70, -60 + up), (-150, -86 + up), (-110, -40 + up * 0.5), (-40, 10)]), GREY, ow)
    c.poly(P([(-150, -86 + up), (-124, -60 + up * 0.8), (-110, -40 + up * 0.5), (-134, -64 + up)]), INK, 0)
    # legs
    c.line(P([(-6, 18), (-12, 34)]), MUSTARD, 4 * s)
    c.line(P([(12, 18), (8, 34)]), MUSTARD, 4 * s)


def teapot(c: Canvas, x: float, y: float, s: float = 1.0, col: Color = CORAL) -> None:
    """Teapot standing on (x, y)."""
    ow = max(2.5, OW * s)
    P = lambda pts: [(x + px * s, y + py * s) for px, py in pts]  # noqa: E731
    c.arc((x + 36 * s, y - 92 * s, x + 96 * s, y - 22 * s), 270, 90, INK, 16 * s)
    c.arc((x + 36 * s, y - 92 * s, x + 96 * s, y - 22 * s), 270, 90, col, 9 * s)
    c.poly(P([(-50, -50), (-96, -96), (-108, -96), (-98, -84), (-62, -20)]), col, ow)
    c.chord((x - 62 * s, y - 120 * s, x + 62 * s, y + 10 * s), 180, 360, col, ow)
    c.ellipse((x - 66 * s, y - 100 * s, x + 66 * s, y), col, ow)
    c.rect((x - 40 * s, y - 8 * s, x + 40 * s, y + 2 * s), col, ow)
    c.line(P([(-56, -58), (56, -58)]), CREAM, 8 * s, caps=False)
    c.chord((x - 34 * s, y - 118 * s, x + 34 * s, y - 82 * s), 180, 360, col, ow)
    c.circle(x, y - 120 * s, 9 * s, MUSTARD, ow * 0.8)


def cup(c: Canvas, x: float, y: float, s: float = 1.0, col: Color = CREAM, steam: bool = True) -> None:
    ow = max(2.5, OW * s)
    c.ellipse((x - 40 * s, y - 8 * s, x + 40 * s, y + 8 * s), col, ow)
    c.arc((x + 14 * s, y - 40 * s, x + 44 * s, y - 12 * s), 270, 90, INK, 11 * s)
    c.arc((x + 14 * s, y - 40 * s, x + 44 * s, y - 12 * s), 270, 90, col, 5 * s)
    c.poly([(x - 28 * s, y - 46 * s), (x + 28 * s, y - 46 * s), (x + 22 * s, y - 4 * s),
            (x - 22 * s, y - 4 * s)], col, ow)
    c.line([(x - 27 * s, y - 34 * s), (x + 27 * s, y - 34 * s)], CORAL, 5 * s, caps=False)
    c.ellipse((x - 28 * s, y - 52 * s, x + 28 * s, y - 40 * s), WOOD_DARK, ow * 0.8)
    if steam:
        for k, dx in enumerate((-10, 10)):
            pts = [(x + dx * s + 6 * s * math.sin(t / 3 + k), y - 60 * s - t * 3 * s) for t in range(0, 12)]
            c.line(pts, WHITE, 3.5 * s)


# --------------------------------------------------------------------------
# Characters
# --------------------------------------------------------------------------
def mira_head(c: Canvas, cx: float, cy: float, r: float, look: float = 0.0) -> None:
    """Mira's face in her yellow hood; (cx, cy) is the face centre, r its radius."""
    ow = max(3.0, r * 0.11)
    c.ellipse((cx - r * 1.38, cy - r * 1.55, cx + r * 1.38, cy + r * 1.22), MUSTARD, ow)
    c.ellipse((cx - r, cy - r, cx + r, cy + r), SKIN, ow)
    c.chord((cx - r, cy - r, cx + r, cy + r), 198, 342, HAIR, ow)
    # small fringe bumps
    for fx in (-0.45, 0.0, 0.45):
        c.circle(cx + fx * r, cy - r * 0.36, r * 0.2, HAIR, 0)
    ex = r * 0.36
    for sx in (-1, 1):
        c.circle(cx + sx * ex + look * r * 0.1, cy + r * 0.02, r * 0.1, INK, 0)
        c.circle(cx + sx * ex + look * r * 0.1 + r * 0.03, cy - r * 0.02, r * 0.035, WHITE, 0)
        c.circle(cx + sx * r * 0.6, cy + r * 0.36, r * 0.15, CORAL, 0)
    c.arc((cx - r * 0.24, cy + r * 0.06, cx + r * 0.24, cy + r * 0.5), 25, 155, INK, max(2.5, r * 0.07))


def mira(c: Canvas, cx: float, by: float, s: float = 1.0, pose: str = "stand", flip: bool = False,
         bg: Color | None = None) -> None:
    """Mira full figure. Feet at (cx, by); about 250*s tall.

    poses: stand, walk, lantern, wave, sit (sitting on a bench, holding a cup)
    """
    T = Tf(cx, by, s, flip)
    ow = max(2.5, OW * s)
    feet = {"walk": [(-38, 0), (32, -28)], "sit": [(-18, 0), (18, 0)]}.get(pose, [(-17, 0), (17, 0)])
    hips_y = -45 if pose != "sit" else -62
    # legs + boots
    for (fx, fy), hx in zip(feet, (-14, 14)):
        c.limb(T.pts([(hx, hips_y), (fx, fy - 20)]), NAVY_MID, T.w(13), ow)
        c.rect(T.box(fx - 14, fy - 32, fx + 14, fy), CORAL, ow, radius=T.w(6))
        c.line(T.pts([(fx - 14, fy - 4), (fx + 14, fy - 4)]), INK, T.w(3), caps=False)
    if pose == "sit":
        coat = [(-30, -150), (30, -150), (52, -58), (-52, -58)]
        sh_y, head_y = -140, -178
    else:
        coat = [(-30, -168), (30, -168), (56, -40), (-56, -40)]
        sh_y, head_y = -156, -196
    c.poly(T.pts(coat), MUSTARD, ow)
    c.line(T.pts([(0, coat[0][1] + 8), (0, coat[2][1])]), INK, T.w(3), caps=False)
    for k in range(3):
        c.circle(*T.p(9, coat[0][1] + 26 + k * 26), T.w(4.5), INK, 0)
    c.line(T.pts([(-44, coat[2][1] - 34), (-22, coat[2][1] - 34)]), INK, T.w(3))
    c.line(T.pts([(22, coat[2][1] - 34), (44, coat[2][1] - 34)]), INK, T.w(3))
    # arms: (left hand path), (right hand path)
    L = [(-30, sh_y), (-46, sh_y + 64)]
    Rr = [(30, sh_y), (46, sh_y + 64)]
    if pose == "walk":
        L = [(-30, sh_y), (-56, sh_y + 56)]
        Rr = [(30, sh_y), (50, sh_y + 34), (40, sh_y + 48)]
    elif pose == "lantern":
        Rr = [(30, sh_y), (62, sh_y + 30), (74, sh_y + 38)]
    elif pose == "wave":
        Rr = [(30, sh_y), (60, sh_y - 20), (66, sh_y - 72)]
    elif pose == "sit":
        L = [(-30, sh_y), (-34, sh_y + 44), (-10, sh_y + 40)]
        Rr = [(30, sh_y), (34, sh_y + 44), (10, sh_y + 40)]
    for arm in (L, Rr):
        c.limb(T.pts(arm), MUSTARD, T.w(20), ow)
        c.circle(*T.p(*arm[-1]), T.w(10), SKIN, ow * 0.8)
    if pose == "wave":
        hx, hy = T.p(*Rr[-1])
        for k in (1, 2):
            c.arc((hx - 22 * k * s, hy - 22 * k * s, hx + 22 * k * s, hy + 22 * k * s),
                  (300 if not flip else 200), (350 if not flip else 250), INK, T.w(3))
    if pose == "lantern":
        hx, hy = T.p(*Rr[-1])
        lantern(c, hx, hy - 6 * s, s * 0.9, True, bg)
        c.circle(hx, hy, T.w(10), SKIN, ow * 0.8)
    if pose == "sit":
        cup(c, *T.p(0, sh_y + 40), s * 0.45, CREAM, steam=True)
    mira_head(c, *T.p(0, head_y), T.w(35), look=0.0)


def keeper_head(c: Canvas, T: Tf, hy: float, ow: float, pipe: bool = False) -> None:
    """The keeper's head: cap, white beard; hy is the face centre (local)."""
    for sx in (-1, 1):
        c.circle(*T.p(sx * 33, hy - 2), T.w(11), WHITE, ow)
    c.circle(*T.p(0, hy), T.w(34), SKIN, ow)
    c.chord(T.box(-38, hy - 48, 38, hy + 66), 0, 180, WHITE, ow)
    c.poly(T.pts([(-37, hy + 9), (37, hy + 9), (24, hy + 62), (0, hy + 76), (-24, hy + 62)]), WHITE, 0)
    c.line(T.pts([(-37, hy + 9), (-24, hy + 62), (0, hy + 76), (24, hy + 62), (37, hy + 9)]), INK, ow)
    for sx in (-1, 1):
        c.ellipse(T.box(sx * 3, hy + 6, sx * 24, hy + 20), WHITE, ow * 0.8)
        c.circle(*T.p(sx * 13, hy - 8), T.w(4), INK, 0)
        c.rect(T.box(sx * 5, hy - 21, sx * 22, hy - 15), WHITE, ow * 0.6, radius=T.w(2))
        c.circle(*T.p(sx * 22, hy + 2), T.w(6), CORAL, 0)
    c.circle(*T.p(0, hy + 2), T.w(8), lerp(SKIN, CORAL, 0.35), ow * 0.8)
    # cap
    c.rect(T.box(-35, hy - 52, 35, hy - 24), NAVY, ow, radius=T.w(8))
    c.rect(T.box(-40, hy - 28, 44, hy - 19), INK, 0, radius=T.w(3))
    c.circle(*T.p(0, hy - 38), T.w(6), MUSTARD, ow * 0.6)
    if pipe:
        c.line(T.pts([(8, hy + 16), (34, hy + 22)]), WOOD_DARK, T.w(5))
        c.rect(T.box(30, hy + 4, 44, hy + 28), WOOD, ow * 0.8, radius=T.w(3))


def keeper(c: Canvas, cx: float, by: float, s: float = 1.0, pose: str = "stand", flip: bool = False,
           bg: Color | None = None) -> None:
    """The old keeper. Feet at (cx, by); about 285*s tall.

    poses: stand, pipe (pipe + lantern), climb, match (reaching up with a lit match), sit (with a cup)
    """
    T = Tf(cx, by, s, flip)
    ow = max(2.5, OW * s)
    sit = pose == "sit"
    if sit:
        # chair behind
        c.rect(T.box(-54, -210, 54, -96), WOOD, ow, radius=T.w(10))
        c.rect(T.box(-40, -196, 40, -110), WOOD_DARK, ow * 0.7, radius=T.w(6))
        for lx in (-50, 50):
            c.line(T.pts([(lx, -96), (lx, 0)]), INK, T.w(8))
        feet = [(-22, 0), (22, 0)]
        hips_y = -100
    else:
        feet = {"climb": [(-24, 0), (26, -40)]}.get(pose, [(-20, 0), (20, 0)])
        hips_y = -50
    for (fx, fy), hx in zip(feet, (-16, 16)):
        knee = [] if pose != "climb" or fx < 0 else [(30, fy - 44)]
        c.limb(T.pts([(hx, hips_y)] + knee + [(fx, fy - 16)]), (52, 52, 66), T.w(18), ow)
        c.rect(T.box(fx - 16, fy - 22, fx + 22, fy), WOOD_DARK, ow, radius=T.w(7))
    top = -160 if sit else -190
    if sit:
        coat = [(-40, top), (40, top), (54, -92), (-54, -92)]
    else:
        coat = [(-40, top), (40, top), (58, -46), (-58, -46)]
    c.poly(T.pts(coat), NAVY_MID, ow)
    c.poly(T.pts([(-40, top), (-4, top), (-10, top + 44)]), NAVY_LIGHT, ow * 0.8)
    c.poly(T.pts([(40, top), (4, top), (10, top + 44)]), NAVY_LIGHT, ow * 0.8)
    nb = 2 if sit else 4
    for k in range(nb):
        for sx in (-1, 1):
            c.circle(*T.p(sx * 13, top + 58 + k * 30), T.w(5), MUSTARD, ow * 0.5)
    sh_y = top + 10
    L = [(-40, sh_y), (-52, sh_y + 90)]
    Rr = [(40, sh_y), (52, sh_y + 90)]
    extra: list[tuple[str, Point]] = []
    if pose == "pipe":
        Rr = [(40, sh_y), (52, sh_y + 46), (38, sh_y - 4)]
        L = [(-40, sh_y), (-58, sh_y + 50), (-66, sh_y + 76)]
        extra.append(("lantern", L[-1]))
    elif pose == "climb":
        Rr = [(40, sh_y), (64, sh_y - 26), (74, sh_y - 60)]
        L = [(-40, sh_y), (-58, sh_y + 50), (-66, sh_y + 72)]
        extra.append(("lantern", L[-1]))
    elif pose == "match":
        Rr = [(40, sh_y), (72, sh_y - 20), (86, sh_y - 60)]
        extra.append(("match", Rr[-1]))
    elif sit:
        L = [(-40, sh_y), (-46, sh_y + 60), (-14, sh_y + 58)]
        Rr = [(40, sh_y), (46, sh_y + 60), (14, sh_y + 58)]
        extra.append(("cup", (0, sh_y + 58)))
    for arm in (L, Rr):
        c.limb(T.pts(arm), NAVY_MID, T.w(22), ow)
    keeper_head(c, T, top - 36, ow, pipe=pose == "pipe")
    for arm in (L, Rr):
        c.circle(*T.p(*arm[-1]), T.w(11), SKIN, ow * 0.8)
    for kind, (px, py) in extra:
        hx, hy = T.p(px, py)
        if kind == "lantern":
            lantern(c, hx, hy - 6 * s, s * 0.95, True, bg)
            c.circle(hx, hy, T.w(11), SKIN, ow * 0.8)
        elif kind == "match":
            c.line([(hx, hy), T.p(px + 6, py - 30)], WOOD, T.w(4))
            fx, fy = T.p(px + 6, py - 34)
            c.poly([(fx, fy - 16 * s), (fx + 6 * s, fy), (fx, fy + 5 * s), (fx - 6 * s, fy)], CORAL, ow * 0.6)
            c.circle(hx, hy, T.w(11), SKIN, ow * 0.8)
        elif kind == "cup":
            cup(c, hx, hy, s * 0.5, CREAM, steam=True)
    if pose == "pipe":
        sx, sy = T.p(40, top - 36 + 4)
        c.blob([(sx + 10 * s * T.f, sy - 22 * s, 8 * s), (sx + 22 * s * T.f, sy - 46 * s, 11 * s),
                (sx + 16 * s * T.f, sy - 78 * s, 14 * s)], CREAM, ow * 0.7)


# --------------------------------------------------------------------------
# Interiors
# --------------------------------------------------------------------------
def tower_interior_wall(c: Canvas, dark: bool = False) -> None:
    if dark:
        stone_wall(c, (0, 0, SIZE, SIZE), NAVY_LIGHT, NAVY_MID)
    else:
        stone_wall(c, (0, 0, SIZE, SIZE), STONE, STONE_DARK)


def round_window(c: Canvas, x: float, y: float, r: float, inside: Callable[[Canvas], None] | None = None,
                 sky: Color = STORM) -> None:
    c.circle(x, y, r + 12, STONE_DARK)
    c.circle(x, y, r, sky)
    if inside:
        inside(c)
    c.line([(x - r, y), (x + r, y)], INK, 5, caps=False)
    c.line([(x, y - r), (x, y + r)], INK, 5, caps=False)
    c.circle(x, y, r, None, 5)


def side_stairs(c: Canvas, n: int = 17, x0: float = 256, amp: float = 150,
                y_top: float = 40, y_bot: float = 500, col_a: Color = WOOD, col_b: Color = CREAM,
                rail: bool = True, phase: float = 0.0) -> None:
    """Spiral stairs seen from the side in a cutaway tower, around a central column."""
    dy = (y_bot - y_top) / n
    steps = []
    for i in range(n):
        a = phase + i * 0.55
        steps.append((i, a, y_bot - i * dy, math.sin(a), math.cos(a)))
    back = [st for st in steps if st[4] < 0]
    front = [st for st in steps if st[4] >= 0]

    def draw_step(st: tuple[int, float, float, float, float]) -> None:
        i, a, y, sn, cs = st
        xc = x0 + amp * sn
        half = 34 + 24 * abs(cs)
        depth = 8 + 10 * abs(cs)
        col = col_a if i % 2 == 0 else col_b
        c.poly([(xc - half, y), (xc + half, y), (xc + half - 6, y - depth), (xc - half + 6, y - depth)],
               lerp(col, WHITE, 0.25))
        c.rect((xc - half, y, xc + half, y + 14), col)

    for st in sorted(back, key=lambda s: -s[4]):
        draw_step(st)
    c.rect((x0 - 24, -5, x0 + 24, SIZE + 5), CREAM)
    c.line([(x0 - 10, -5), (x0 - 10, SIZE + 5)], lerp(CREAM, STONE, 0.5), 6, caps=False)
    for st in sorted(front, key=lambda s: s[4]):
        draw_step(st)
    if rail:
        pts = []
        for i, a, y, sn, cs in steps:
            if cs >= 0:
                xc = x0 + amp * sn
                half = 34 + 24 * abs(cs)
                px = xc + half * (1 if sn >= 0 else -1) * 0.8
                c.line([(px, y), (px, y - 52)], INK, 3, caps=False)
                pts.append((px, y - 52))
        # rail segments between consecutive front posts
        for p0, p1 in zip(pts, pts[1:]):
            if abs(p0[0] - p1[0]) < 120:
                c.line([p0, p1], INK, 5)


def fresnel_lens(c: Canvas, cx: float, cy: float, w: float, h: float, lit: bool, bg: Color) -> None:
    base_y = cy + h / 2
    if lit:
        c.ellipse((cx - w * 0.72, cy - h * 0.66, cx + w * 0.72, cy + h * 0.66), lerp(bg, BEAM, 0.55), ow=0)
        rays(c, cx, cy, max(w, h) * 0.72, max(w, h) * 0.9, 20, MUSTARD_LIGHT, 6, phase=0.08)
    # pedestal
    c.poly([(cx - w * 0.22, base_y - 10), (cx + w * 0.22, base_y - 10), (cx + w * 0.34, base_y + 60),
            (cx - w * 0.34, base_y + 60)], MUSTARD)
    c.rect((cx - w * 0.46, base_y + 56, cx + w * 0.46, base_y + 82), NAVY_MID)
    glass = MUSTARD_LIGHT if lit else lerp(TEAL_LIGHT, GREY, 0.45)
    rib = MUSTARD if lit else TEAL
    c.ellipse((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), glass, 5)
    n = 9
    for k in range(1, n):
        y = cy - h / 2 + k * h / n
        t = (y - cy) / (h / 2)
        hw = w / 2 * math.sqrt(max(0.0, 1 - t * t)) - 4
        c.line([(cx - hw, y), (cx + hw, y)], rib, 5, caps=False)
        c.line([(cx - hw, y + 4), (cx + hw, y + 4)], INK, 2, caps=False)
    for fx in (-0.28, 0.28):
        x = cx + w * fx
        t = (x - cx) / (w / 2)
        hh = h / 2 * math.sqrt(max(0.0, 1 - t * t)) - 4
        c.line([(x, cy - hh), (x, cy + hh)], MUSTARD if lit else NAVY_LIGHT, 6, caps=False)
    for r, col in ((w * 0.26, WHITE if lit else GREY), (w * 0.17, CREAM if lit else TEAL_LIGHT),
                   (w * 0.08, WHITE if lit else GREY)):
        c.circle(cx, cy, r, col, 4)
    if lit:
        c.circle(cx, cy, w * 0.05, MUSTARD, 0)
    # brass cap
    c.chord((cx - w * 0.3, cy - h / 2 - 24, cx + w * 0.3, cy - h / 2 + 24), 180, 360, MUSTARD)


def lamp_room(c: Canvas, rng: random.Random, outside: str, lit: bool, lens_x: float = 256) -> None:
    """Lamp room interior: glass panes all round, the big lens in the middle."""
    sky = {"night": NAVY, "storm": STORM, "dawn": CORAL}[outside]
    if outside == "night":
        sky_night(c, 360)
        stars(c, rng, 70, 330)
        moon(c, 420, 80, 26, NAVY)
    elif outside == "storm":
        sky_storm(c, 360)
        cloud(c, 20, 60, 1.2, NAVY_LIGHT)
        cloud(c, 330, 40, 1.3, NAVY_LIGHT)
        lightning(c, 400, 110, 0.9)
    else:
        sky_dawn(c, 360)
    # distant sea through the glass
    c.rect((-5, 250, SIZE + 5, 360), TEAL_DARK if outside != "dawn" else TEAL, ow=0)
    c.line([(-5, 250), (SIZE + 5, 250)], INK, 3, caps=False)
    if lit:
        beams(c, (lens_x, 200), sky, spread=60, reach=400, angles=(200, 340), strength=0.65)
    if outside == "storm":
        rain(c, rng, 120, lerp(STORM, GREY, 0.6), 360)
    # window frames
    for x in (0, 128, 384, 512):
        c.rect((x - 12, -5, x + 12, 372), NAVY_MID)
    c.rect((-5, 170, SIZE + 5, 182), NAVY_MID)
    # parapet wall + floor
    c.rect((-5, 360, SIZE + 5, 440), NAVY_MID)
    c.line([(-5, 384), (SIZE + 5, 384)], INK, 3, caps=False)
    wood_floor(c, 440, WOOD, WOOD_DARK)
    fresnel_lens(c, lens_x, 210, 190, 250, lit, NAVY_MID)


# --------------------------------------------------------------------------
# The images
# --------------------------------------------------------------------------
IMAGES: list[tuple[str, str, Callable[[], Canvas]]] = []


def image(name: str, caption: str) -> Callable[[Callable[[], Canvas]], Callable[[], Canvas]]:
    def deco(fn: Callable[[], Canvas]) -> Callable[[], Canvas]:
        IMAGES.append((name, caption, fn))
        return fn
    return deco


def grass_ground(c: Canvas, y: float, col: Color = GREEN) -> None:
    c.poly([(-10, y + 6), (140, y - 6), (300, y + 4), (SIZE + 10, y - 8), (SIZE + 10, SIZE + 10),
            (-10, SIZE + 10)], col)
    rng = random.Random(int(y))
    for _ in range(14):
        x, yy = rng.uniform(10, 500), rng.uniform(y + 30, 500)
        c.line([(x, yy), (x - 4, yy - 12)], GREEN_DARK, 3)
        c.line([(x + 6, yy), (x + 8, yy - 10)], GREEN_DARK, 3)


# ---- Mira ---------------------------------------------------------------
@image("mira_raincoat_standing", "a girl in a yellow raincoat and red boots standing on the grass")
def _mira_standing() -> Canvas:
    c = Canvas()
    sky_day(c, 360)
    cloud(c, 40, 90, 1.0, WHITE)
    cloud(c, 360, 140, 0.8, WHITE)
    calm_sea(c, 330, seed=2)
    grass_ground(c, 380)
    mira(c, 256, 470, 1.45, "stand")
    return c


@image("mira_walking_cliff_path_rain",
       "a girl in a yellow raincoat and red boots walking along a cliff path in the rain")
def _mira_walking() -> Canvas:
    c = Canvas()
    rng = random.Random(11)
    sky_storm(c, 300)
    cloud(c, -20, 70, 1.4, NAVY_LIGHT)
    cloud(c, 300, 50, 1.2, NAVY_LIGHT)
    c.rect((-5, 290, SIZE + 5, SIZE + 5), TEAL_DARK, ow=0)
    wave_band(c, 320, 26, 90, TEAL_DARK, phase=20)
    c.poly([(-10, 360), (200, 344), (SIZE + 10, 330), (SIZE + 10, SIZE + 10), (-10, SIZE + 10)], GREEN_DARK)
    c.poly([(120, SIZE + 10), (250, 350), (300, 346), (380, SIZE + 10)], lerp(STONE, CREAM, 0.3))
    mira(c, 270, 478, 1.25, "walk")
    rain(c, rng, 110, lerp(STORM, GREY, 0.7))
    return c


@image("mira_holding_lantern_night",
       "a girl in a yellow raincoat and red boots holding a glowing lantern at night")
def _mira_lantern() -> Canvas:
    c = Canvas()
    rng = random.Random(12)
    sky_night(c)
    stars(c, rng, 60, 300)
    moon(c, 90, 90, 30, NAVY)
    c.poly([(-10, 420), (250, 404), (SIZE + 10, 416), (SIZE + 10, SIZE + 10), (-10, SIZE + 10)], GREEN_DARK)
    mira(c, 230, 480, 1.35, "lantern", bg=NAVY_MID)
    return c


@image("mira_waving_by_the_sea", "a girl in a yellow raincoat and red boots waving hello by the sea")
def _mira_waving() -> Canvas:
    c = Canvas()
    sky_day(c, 300)
    c.circle(420, 80, 40, MUSTARD_LIGHT)
    calm_sea(c, 300, seed=4)
    c.poly([(-10, 430), (200, 400), (SIZE + 10, 420), (SIZE + 10, SIZE + 10), (-10, SIZE + 10)],
           lerp(CREAM, MUSTARD_LIGHT, 0.4))
    seagull(c, 110, 120, 0.45, flap=0.6)
    mira(c, 256, 490, 1.3, "wave", flip=True)
    return c


@image("mira_face_closeup_hood", "close-up of the face of a girl wearing the hood of her yellow raincoat")
def _mira_face() -> Canvas:
    c = Canvas()
    rng = random.Random(14)
    bands(c, TEAL, TEAL_LIGHT, 0, SIZE, 4)
    rain(c, rng, 70, lerp(TEAL, WHITE, 0.45))
    c.poly([(40, SIZE + 10), (90, 420), (256, 390), (422, 420), (472, SIZE + 10)], MUSTARD, 8)
    c.line([(256, 410), (256, SIZE + 10)], INK, 6)
    c.circle(236, 462, 8, INK, 0)
    mira_head(c, 256, 250, 130)
    for x, y in ((60, 110), (440, 320), (420, 60)):
        c.poly([(x, y), (x + 6, y + 14), (x, y + 20), (x - 6, y + 14)], lerp(TEAL_LIGHT, WHITE, 0.6), 3)
    return c


@image("mira_knocking_lighthouse_door",
       "a girl in a yellow raincoat knocking at the red door of the lighthouse in the rain")
def _mira_door() -> Canvas:
    c = Canvas()
    rng = random.Random(15)
    sky_storm(c)
    # tower base, close
    c.poly([(150, -10), (470, -10), (500, 450), (120, 450)], WHITE, 6)
    c.poly([(146, 50), (474, 50), (478, 130), (142, 130)], CORAL, 6)
    c.chord((230, 170, 390, 330), 180, 360, CORAL_DARK, 6)
    c.rect((230, 250, 390, 450), CORAL_DARK, 6)
    c.rect((236, 246, 384, 256), CORAL_DARK, 0)
    c.line([(310, 180), (310, 450)], INK, 4)
    c.circle(360, 350, 9, MUSTARD, 3)
    c.rect((200, 440, 420, 470), STONE, 5)
    c.poly([(-10, 460), (SIZE + 10, 456), (SIZE + 10, SIZE + 10), (-10, SIZE + 10)], GREEN_DARK)
    mira(c, 150, 496, 1.15, "wave", bg=STORM)
    for k in (1, 2, 3):
        c.arc((200 - 10 * k, 230 - 10 * k, 220 + 10 * k, 250 + 10 * k), 300, 60, WHITE, 3)
    rain(c, rng, 120, lerp(STORM, GREY, 0.7))
    return c


# ---- The keeper -------------------------------------------------------------
@image("keeper_standing_by_door",
       "an old lighthouse keeper with a white beard and a navy coat standing by the lighthouse")
def _keeper_standing() -> Canvas:
    c = Canvas()
    sky_day(c)
    cloud(c, 30, 70, 0.9, WHITE)
    calm_sea(c, 330, seed=6)
    lighthouse(c, 400, 420, 330, 120, lit=False)
    grass_ground(c, 410)
    keeper(c, 200, 488, 1.3, "stand")
    return c


@image("keeper_pipe_and_lantern",
       "an old lighthouse keeper with a white beard smoking a pipe and holding a lantern at night")
def _keeper_pipe() -> Canvas:
    c = Canvas()
    rng = random.Random(21)
    sky_night(c)
    stars(c, rng, 70, 330)
    moon(c, 430, 80, 28, NAVY)
    c.poly([(-10, 430), (220, 414), (SIZE + 10, 424), (SIZE + 10, SIZE + 10), (-10, SIZE + 10)], GREEN_DARK)
    keeper(c, 280, 490, 1.3, "pipe", bg=NAVY_MID)
    return c


@image("keeper_climbing_stairs",
       "an old lighthouse keeper in a navy coat climbing the spiral stairs with a lantern")
def _keeper_climbing() -> Canvas:
    c = Canvas()
    tower_interior_wall(c)
    # big diagonal steps rising to the right
    for i in range(7):
        x0 = -40 + i * 80
        y0 = 500 - i * 62
        c.poly([(x0, y0), (x0 + 110, y0), (x0 + 110, y0 + 24), (x0, y0 + 24)], WOOD)
        c.poly([(x0, y0), (x0 + 110, y0), (x0 + 96, y0 - 14), (x0 + 12, y0 - 14)], lerp(WOOD, WHITE, 0.3))
        c.rect((x0 + 40, y0 + 24, x0 + 110, SIZE + 10), STONE_DARK)
    c.line([(0, 400), (SIZE, 30)], INK, 8)
    for i in range(7):
        x = 30 + i * 75
        y = 400 - (x / SIZE) * 370
        c.line([(x, y), (x, y + 70)], INK, 4, caps=False)
    keeper(c, 250, 396, 1.05, "climb", bg=STONE)
    return c


@image("keeper_lighting_the_lamp",
       "an old lighthouse keeper with a white beard lighting the great lamp with a match")
def _keeper_lamp() -> Canvas:
    c = Canvas()
    rng = random.Random(23)
    lamp_room(c, rng, "night", lit=False, lens_x=330)
    keeper(c, 130, 496, 1.15, "match")
    return c


@image("keeper_sitting_with_tea",
       "an old lighthouse keeper with a white beard sitting in a chair with a cup of tea")
def _keeper_tea() -> Canvas:
    c = Canvas()
    bands(c, CREAM, lerp(CREAM, MUSTARD_LIGHT, 0.5), 0, 400, 3)
    round_window(c, 400, 140, 60, sky=lerp(CORAL, MUSTARD_LIGHT, 0.4))
    c.rect((40, 80, 150, 110), WOOD_DARK)
    c.rect((56, 50, 80, 80), CORAL, 3)
    c.rect((90, 40, 110, 80), TEAL, 3)
    wood_floor(c, 400)
    # table with teapot
    c.rect((330, 300, 520, 320), WOOD, 5)
    c.line([(350, 320), (350, 460)], INK, 10)
    teapot(c, 420, 300, 0.6)
    keeper(c, 200, 470, 1.2, "sit")
    return c


# ---- Cliff scene ----------------------------------------------------------------
@image("lighthouse_cliff_day", "a white lighthouse on a grassy cliff above the sea on a sunny day")
def _cliff_day() -> Canvas:
    c = Canvas()
    sky_day(c, 340)
    c.circle(420, 90, 42, MUSTARD_LIGHT)
    cloud(c, 250, 110, 0.9, WHITE)
    calm_sea(c, 340, seed=7)
    cliff(c, 300, 310)
    lighthouse(c, 150, 320, 250, 90, lit=False)
    seagull(c, 380, 210, 0.35, 0.3)
    return c


@image("lighthouse_cliff_night", "a white lighthouse on a grassy cliff shining its beam over the sea at night")
def _cliff_night() -> Canvas:
    c = Canvas()
    rng = random.Random(31)
    sky_night(c, 330)
    stars(c, rng, 80, 320)
    moon(c, 110, 240, 24, NAVY_MID)
    calm_sea(c, 330, TEAL_DARK, TEAL, seed=8)
    beams(c, (330, 120), NAVY, spread=70, reach=520, angles=(195, 350), strength=0.6)
    cliff(c, 300, 340, side="right")
    lighthouse(c, 330, 350, 230, 88, lit=True)
    return c


@image("lighthouse_cliff_storm_rain",
       "a dark lighthouse on a grassy cliff above a stormy sea with rain and lightning")
def _cliff_storm() -> Canvas:
    c = Canvas()
    rng = random.Random(32)
    sky_storm(c, 360)
    cloud(c, -10, 50, 1.5, NAVY_LIGHT)
    cloud(c, 220, 30, 1.3, NAVY_LIGHT)
    cloud(c, 380, 70, 1.2, NAVY_LIGHT)
    lightning(c, 380, 130, 1.0)
    c.rect((-5, 360, SIZE + 5, SIZE + 5), TEAL_DARK, ow=0)
    cliff(c, 260, 300)
    lighthouse(c, 130, 310, 220, 80, lit=False)
    wave_band(c, 400, 60, 130, TEAL_DARK, phase=30)
    wave_band(c, 460, 50, 110, TEAL, phase=70)
    rain(c, rng, 160, lerp(STORM, GREY, 0.6))
    return c


@image("lighthouse_from_the_sea",
       "a white lighthouse on a distant cliff seen from the waves of the open sea at dusk")
def _cliff_from_sea() -> Canvas:
    c = Canvas()
    sky_dawn(c, 300)
    c.circle(110, 230, 50, MUSTARD_LIGHT)
    c.rect((-5, 280, SIZE + 5, SIZE + 5), TEAL_DARK, ow=0)
    c.poly([(250, 285), (300, 246), (440, 240), (500, 260), (SIZE + 10, 285)], GREEN_DARK)
    lighthouse(c, 380, 250, 110, 40, lit=True)
    wave_band(c, 330, 30, 70, TEAL_DARK, phase=0, foam=None)
    wave_band(c, 390, 46, 110, TEAL, phase=40)
    wave_band(c, 460, 64, 160, TEAL_LIGHT, phase=100)
    return c


# ---- Stairs scene -----------------------------------------------------------
@image("spiral_stairs_looking_up",
       "spiral stairs inside the lighthouse tower seen from below, winding up to a light")
def _stairs_up() -> Canvas:
    c = Canvas(NAVY)
    cx, cy = 256, 256
    for i, r in enumerate((360, 300, 240, 180, 130, 90)):
        c.circle(cx, cy, r, lerp(STONE_DARK, NAVY, i / 6), 4)
    c.circle(cx, cy, 42, MUSTARD_LIGHT, 4)
    c.circle(cx, cy, 22, WHITE, 0)
    n = 26
    for i in reversed(range(n)):
        ro = 330 * 0.9 ** i
        ri = max(ro * 0.42, 40)
        a0 = math.radians(i * 32)
        a1 = a0 + math.radians(38)
        pts: list[Point] = []
        for k in range(9):
            a = a0 + (a1 - a0) * k / 8
            pts.append((cx + ro * math.cos(a), cy + ro * math.sin(a)))
        for k in range(9):
            a = a1 - (a1 - a0) * k / 8
            pts.append((cx + ri * math.cos(a), cy + ri * math.sin(a)))
        col = lerp(WOOD if i % 2 else CREAM, NAVY, min(0.6, i / 40))
        c.poly(pts, col, max(2.0, 4 - i * 0.08))
    return c


@image("spiral_stairs_cutaway_window",
       "spiral stairs winding around a column inside the stone lighthouse tower, with a round window")
def _stairs_side() -> Canvas:
    c = Canvas()
    rng = random.Random(41)
    tower_interior_wall(c)

    def storm_view(cv: Canvas) -> None:
        for _ in range(18):
            x, y = rng.uniform(60, 140), rng.uniform(70, 150)
            cv.line([(x, y), (x - 5, y + 12)], GREY, 2)

    round_window(c, 100, 110, 50, storm_view)
    side_stairs(c)
    return c


@image("spiral_stairs_lantern_glow",
       "dark spiral stairs inside the lighthouse tower lit by a lantern hanging on the wall")
def _stairs_lantern() -> Canvas:
    c = Canvas()
    rng = random.Random(42)
    tower_interior_wall(c, dark=True)

    def stars_view(cv: Canvas) -> None:
        for _ in range(8):
            cv.circle(rng.uniform(380, 460), rng.uniform(60, 140), 2, CREAM, 0)

    round_window(c, 420, 100, 44, stars_view, sky=NAVY)
    side_stairs(c, n=12, x0=200, amp=120, y_top=120, y_bot=520, col_a=WOOD_DARK, col_b=NAVY_LIGHT,
                phase=1.2)
    c.line([(360, 230), (400, 230)], INK, 6)
    lantern(c, 394, 230, 1.2, True, NAVY_LIGHT)
    return c


# ---- Lamp room scene ----------------------------------------------------------
@image("lamp_room_great_lens_lit",
       "the lamp room at the top of the lighthouse with a great glass lens shining at night")
def _lamp_lit() -> Canvas:
    c = Canvas()
    lamp_room(c, random.Random(51), "night", lit=True)
    return c


@image("lamp_room_lens_dark_storm",
       "the dark lamp room at the top of the lighthouse with an unlit glass lens during a storm")
def _lamp_dark() -> Canvas:
    c = Canvas()
    lamp_room(c, random.Random(52), "storm", lit=False, lens_x=300)
    return c


@image("lamp_room_from_gallery",
       "the glass lamp room at the top of the lighthouse seen from the outside gallery, its lens glowing")
def _lamp_gallery() -> Canvas:
    c = Canvas()
    rng = random.Random(53)
    sky_night(c)
    stars(c, rng, 60, 500)
    beams(c, (256, 250), NAVY, spread=80, reach=400, angles=(185, 355), strength=0.6)
    # roof dome
    c.chord((90, 10, 422, 190), 180, 360, CORAL, 6)
    c.line([(256, 10), (256, -10)], INK, 6)
    # glass room
    c.rect((120, 100, 392, 380), lerp(NAVY_MID, BEAM, 0.4), 6)
    c.circle(256, 250, 120, lerp(NAVY_MID, BEAM, 0.7), 0)
    c.ellipse((196, 150, 316, 340), MUSTARD_LIGHT, 5)
    for k in range(1, 7):
        y = 150 + k * 190 / 7
        t = (y - 245) / 95
        hw = 60 * math.sqrt(max(0.0, 1 - t * t)) - 3
        c.line([(256 - hw, y), (256 + hw, y)], MUSTARD, 4, caps=False)
    c.circle(256, 245, 26, WHITE, 4)
    for x in (120, 188, 324, 392):
        c.rect((x - 7, 100, x + 7, 380), NAVY_MID, 4)
    c.rect((110, 92, 402, 106), NAVY_MID, 4)
    # gallery floor and railing in front
    c.rect((-5, 380, SIZE + 5, 408), NAVY_MID, 5)
    c.poly([(100, 408), (412, 408), (430, SIZE + 10), (82, SIZE + 10)], WHITE, 6)
    c.poly([(98, 440), (414, 440), (418, 480), (94, 480)], CORAL, 6)
    c.line([(-5, 330), (SIZE + 5, 330)], INK, 7)
    for i in range(12):
        x = -10 + i * 48
        c.line([(x, 330), (x, 392)], INK, 5, caps=False)
    return c


# ---- Objects and others -------------------------------------------------------
@image("lantern_glowing", "an old brass lantern glowing warmly in the dark")
def _lantern() -> Canvas:
    c = Canvas(NAVY)
    bands(c, NAVY, NAVY_MID, 0, SIZE, 4)
    c.line([(256, -5), (256, 70)], INK, 5)
    lantern(c, 256, 60, 4.6, True, NAVY_MID)
    return c


@image("red_fishing_boat_stormy_waves", "a small red fishing boat tossed on stormy waves")
def _fishing_boat() -> Canvas:
    c = Canvas()
    rng = random.Random(61)
    sky_storm(c, 330)
    cloud(c, 20, 60, 1.3, NAVY_LIGHT)
    cloud(c, 300, 90, 1.1, NAVY_LIGHT)
    c.rect((-5, 300, SIZE + 5, SIZE + 5), TEAL_DARK, ow=0)
    wave_band(c, 320, 40, 120, TEAL_DARK, phase=10)
    fishing_boat(c, 250, 330, 1.5, tilt=-12)
    wave_band(c, 400, 60, 150, TEAL, phase=60)
    wave_band(c, 470, 50, 120, TEAL_LIGHT, phase=20)
    rain(c, rng, 90, lerp(STORM, GREY, 0.6), 440)
    return c


@image("seagull_flying_over_sea", "a white seagull with grey wings flying over the sea")
def _seagull() -> Canvas:
    c = Canvas()
    sky_day(c, 380)
    cloud(c, 330, 70, 1.0, WHITE)
    calm_sea(c, 380, seed=9)
    seagull(c, 250, 250, 1.35, flap=0.2)
    return c


@image("teapot_and_cups", "a red teapot and two cups of tea on a wooden table")
def _teapot() -> Canvas:
    c = Canvas()
    bands(c, CREAM, lerp(CREAM, CORAL, 0.25), 0, 330, 3)
    c.rect((-5, 320, SIZE + 5, SIZE + 5), WOOD)
    c.rect((-5, 320, SIZE + 5, 350), lerp(WOOD, WHITE, 0.2))
    for x in range(0, SIZE, 64):
        c.line([(x, 350), (x - 40, SIZE + 5)], WOOD_DARK, 3)
    teapot(c, 210, 380, 1.6)
    cup(c, 400, 400, 1.15)
    cup(c, 90, 450, 1.0, MUSTARD_LIGHT)
    return c


@image("rowboat_stone_harbour", "a wooden rowboat tied up at a stone harbour wall on calm water")
def _rowboat() -> Canvas:
    c = Canvas()
    sky_day(c, 200)
    c.rect((-5, 200, SIZE + 5, SIZE + 5), TEAL, ow=0)
    stone_wall(c, (-5, 150, 200, 340), STONE, STONE_DARK, 56, 30)
    c.rect((-5, 140, 204, 158), STONE_DARK, 5)
    c.line([(200, 158), (200, 340)], INK, 5, caps=False)
    c.rect((150, 100, 180, 142), INK, 0, radius=6)
    c.rect((144, 96, 186, 108), INK, 0, radius=4)
    calm_sea(c, 340, TEAL, TEAL_LIGHT, seed=10)
    c.line([(-5, 340), (200, 340)], INK, 5, caps=False)
    rowboat(c, 330, 330, 1.2)
    c.line([(165, 120), (230, 200), (210, 290)], CREAM, 4, caps=False)
    return c


@image("starry_night_sky_over_sea", "a starry night sky with a crescent moon over the calm sea")
def _starry() -> Canvas:
    c = Canvas()
    rng = random.Random(71)
    sky_night(c, 360)
    stars(c, rng, 160, 350)
    moon(c, 340, 130, 46, lerp(NAVY, NAVY_MID, 0.3))
    c.rect((-5, 360, SIZE + 5, SIZE + 5), NAVY_MID, ow=0)
    c.line([(-5, 360), (SIZE + 5, 360)], INK, 4, caps=False)
    for k in range(7):
        y = 372 + k * 20
        w = 30 + k * 16
        c.line([(320 - w, y), (320 + w, y)], CREAM if k % 2 == 0 else MUSTARD_LIGHT, 5)
    return c


@image("lighthouse_beam_saves_boat",
       "the lighthouse beam shining on a small red fishing boat in a stormy sea at night")
def _beam_boat() -> Canvas:
    c = Canvas()
    rng = random.Random(81)
    sky_night(c, 300)
    stars(c, rng, 30, 200)
    c.rect((-5, 290, SIZE + 5, SIZE + 5), TEAL_DARK, ow=0)
    beams(c, (70, 150), NAVY, spread=120, reach=560, angles=(22,), strength=0.6)
    c.poly([(-10, 230), (110, 232), (150, 300), (-10, 300)], GREEN_DARK)
    lighthouse(c, 70, 236, 120, 44, lit=True)
    wave_band(c, 320, 30, 90, TEAL_DARK, phase=0)
    fishing_boat(c, 340, 360, 1.0, tilt=8, light=True)
    wave_band(c, 420, 50, 140, TEAL, phase=50)
    wave_band(c, 480, 40, 100, TEAL_LIGHT, phase=10)
    return c


@image("mira_and_keeper_tea_at_dawn",
       "a girl in a yellow raincoat and an old lighthouse keeper drinking tea on a bench at dawn")
def _tea_dawn() -> Canvas:
    c = Canvas()
    sky_dawn(c, 330)
    c.circle(256, 330, 70, MUSTARD_LIGHT)
    calm_sea(c, 330, TEAL, TEAL_LIGHT, seed=12)
    c.poly([(-10, 420), (SIZE + 10, 410), (SIZE + 10, SIZE + 10), (-10, SIZE + 10)], GREEN)
    # bench
    c.rect((70, 400, 450, 418), WOOD, 5)
    for x in (96, 424):
        c.line([(x, 418), (x, 480)], INK, 9)
    keeper(c, 340, 470, 0.95, "sit")
    mira(c, 170, 470, 1.0, "sit")
    teapot(c, 470, 480, 0.4)
    return c


def draw_mira_ref() -> Canvas:
    """The user's pinned reference: Mira, front view, plain background."""
    c = Canvas(CREAM)
    bands(c, CREAM, lerp(CREAM, MUSTARD_LIGHT, 0.35), 0, SIZE, 3)
    c.ellipse((136, 470, 376, 500), lerp(CREAM, STONE, 0.5), 0)
    mira(c, 256, 486, 1.7, "stand")
    return c


THEME_TOML = '''name = "lighthouse"
description = "Flat illustration style for The Lighthouse Keeper example story"
'''


def save(c: Canvas, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    c.finish().save(path, format="PNG", optimize=True)


def main() -> None:
    THEME_DIR.mkdir(parents=True, exist_ok=True)
    REFS_DIR.mkdir(parents=True, exist_ok=True)
    names = [n for n, _, _ in IMAGES]
    assert len(names) == len(set(names)), "duplicate image names"
    for name, caption, fn in IMAGES:
        save(fn(), THEME_DIR / f"{name}.png")
        (THEME_DIR / f"{name}.txt").write_text(caption + "\n", encoding="utf-8")
    (THEME_DIR / "theme.toml").write_text(THEME_TOML, encoding="utf-8")
    save(draw_mira_ref(), REFS_DIR / "mira.png")
    print(f"wrote {len(IMAGES)} theme images to {THEME_DIR} and {REFS_DIR / 'mira.png'}")


if __name__ == "__main__":
    main()
