"""Text a page can hold: one bundled font, safe characters, wrapping, shrinking, cutting.

Shared by the lettering (bubbles and narration boxes) and the pages (title, pending panels). The
font is Pillow's own scalable font with basic layout, so an export looks the same on a fresh
machine and never needs a system font or a shaping library; glyphs it lacks (Arabic, Hebrew,
emoji) come out as boxes, never as an error. Every draw goes through a layer the size of its box,
so text that measures wrong is clipped instead of spilling over the art.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from PIL import Image, ImageDraw, ImageFont

Font = Union[ImageFont.FreeTypeFont, ImageFont.ImageFont]

INK = (21, 21, 21)
ELLIPSIS = "…"
NARROWEST_EM = 0.15  # no glyph of the font is narrower: bounds how much text can possibly fit


@dataclass(frozen=True)
class Box:
    """A pixel rectangle, right and bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    def contains(self, other: "Box") -> bool:
        return (self.left <= other.left and self.top <= other.top
                and other.right <= self.right and other.bottom <= self.bottom)

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


@functools.lru_cache(maxsize=128)
def font(size: int) -> Font:
    """Pillow's own scalable font at ``size`` px (its fixed bitmap font on Pillow before 10.1)."""
    try:
        return ImageFont.load_default(size=max(1, size))
    except TypeError:  # pragma: no cover - Pillow < 10.1 ships only the bitmap font
        return ImageFont.load_default()


def line_height(f: Font) -> int:
    """Ascent plus descent: the height a line of this font needs, whatever it holds."""
    if isinstance(f, ImageFont.FreeTypeFont):
        ascent, descent = f.getmetrics()
        return ascent + descent
    return int(f.getbbox("Ag")[3]) + 1  # pragma: no cover - bitmap font


def clean_text(text: str | None) -> str:
    """Text a font can be asked to draw: no control or format characters, no lone surrogates.

    Line breaks are kept as paragraph breaks; runs of spaces become one.
    """
    text = (text or "").encode("utf-8", "replace").decode("utf-8")
    chars = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch == "\n" or category in ("Zl", "Zp"):
            chars.append("\n")
        elif category == "Cc":
            chars.append(" ")
        elif category != "Cf":
            chars.append(ch)
    paragraphs = (" ".join(p.split()) for p in "".join(chars).split("\n"))
    return "\n".join(p for p in paragraphs if p)


def is_rtl(text: str) -> bool:
    """Mostly right-to-left letters: set flush right, as a reader of the script expects."""
    rtl = ltr = 0
    for ch in text:
        direction = unicodedata.bidirectional(ch)
        rtl += direction in ("R", "AL")
        ltr += direction == "L"
    return rtl > ltr


def wrap(text: str, f: Font, width: int, limit: int | None = None) -> list[str]:
    """Greedy word wrap to ``width`` px; a word longer than a line is broken between characters.

    Stops after ``limit`` lines: callers ask for one more line than they can show, so the work
    stays proportional to what fits, however long the text.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            if limit is not None and len(lines) >= limit:
                return lines[:limit]
            candidate = f"{line} {word}" if line else word
            if f.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
                line = ""
            while word and (limit is None or len(lines) < limit):
                cut = _fitting_prefix(word, f, width)
                if cut == len(word):
                    line = word
                    break
                lines.append(word[:cut])
                word = word[cut:]
        if line:
            lines.append(line)
    return lines if limit is None else lines[:limit]


def _fitting_prefix(word: str, f: Font, width: int) -> int:
    """How many leading characters of ``word`` fit ``width`` px (at least one, so wrapping ends).

    A binary search: a 5000-character word is broken in a few dozen measurements, not thousands.
    """
    size = getattr(f, "size", 0)
    lo, hi = 1, min(len(word), int(width / (NARROWEST_EM * size)) + 1) if size else len(word)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if f.getlength(word[:mid]) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def ellipsize(line: str, f: Font, width: int) -> str:
    """``line`` cut so that it and an ellipsis fit in ``width`` px."""
    room = width - f.getlength(ELLIPSIS)
    line = line.rstrip()
    keep = _fitting_prefix(line, f, int(room)) if line and room > 0 else 0
    if keep and f.getlength(line[:keep]) > room:
        keep = 0
    return line[:keep].rstrip() + ELLIPSIS


@dataclass(frozen=True)
class Paragraph:
    """Text wrapped and sized to a box: what ``fit_paragraph`` decided."""

    size: int
    lines: tuple[str, ...]
    step: int
    truncated: bool


def fit_paragraph(text: str | None, width: int, height: int, max_px: int, min_px: int) -> Paragraph:
    """The largest size at which ``text`` fits ``width`` x ``height`` px, cut with an ellipsis below ``min_px``."""
    text = clean_text(text)
    min_px = max(1, min(min_px, max_px))

    def at(size: int) -> Paragraph:
        f = font(size)
        step = line_height(f) + max(1, round(size * 0.12))
        capacity = int((width / (NARROWEST_EM * size) + 1) * (height / step + 1))
        lines = wrap(text[:capacity], f, max(1, width), limit=height // step + 1)
        return Paragraph(size, tuple(lines), step, len(text) > capacity or len(lines) > height // step)

    lo, hi, best = min_px, max_px, None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = at(mid)
        if len(candidate.lines) * candidate.step <= height:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    if best is not None and not best.truncated:
        return best
    p = best or at(min_px)
    keep = max(0, min(len(p.lines), height // p.step))
    lines = list(p.lines[:keep])
    if lines:
        lines[-1] = ellipsize(lines[-1], font(p.size), max(1, width))
    return Paragraph(p.size, tuple(lines), p.step, True)


def draw_paragraph(image: Image.Image, text: str | None, box: Box, *, max_px: int, min_px: int, fill: tuple[int, int, int] = INK, valign: str = "middle") -> Box | None:
    """Draw ``text`` centred in ``box`` at the largest size that fits; returns its ink, or None.

    Drawn through a layer the size of ``box``, so nothing lands outside it.
    """
    if box.width <= 0 or box.height <= 0:
        return None
    p = fit_paragraph(text, box.width, box.height, max_px, min_px)
    if not p.lines:
        return None
    f = font(p.size)
    layer = Image.new("RGBA", (box.width, box.height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    y = {"top": 0, "bottom": box.height - len(p.lines) * p.step}.get(valign, (box.height - len(p.lines) * p.step) // 2)
    ink = []
    for line in p.lines:
        x = (box.width - f.getlength(line)) / 2
        draw.text((x, y), line, font=f, fill=fill)
        ink.append(draw.textbbox((x, y), line, font=f))
        y += p.step
    image.paste(layer, (box.left, box.top), layer)
    drawn = union_box([b for b in ink if b[2] > b[0]], box.left, box.top)
    return clip_box(drawn, box) if drawn else None


def union_box(boxes: Sequence[tuple[float, float, float, float]], dx: int, dy: int) -> Box | None:
    if not boxes:
        return None
    return Box(int(min(b[0] for b in boxes)) + dx, int(min(b[1] for b in boxes)) + dy,
               int(max(b[2] for b in boxes)) + dx, int(max(b[3] for b in boxes)) + dy)


def clip_box(inner: Box, outer: Box) -> Box:
    """What of ``inner`` is visible: the layer it was drawn on is ``outer``."""
    return Box(max(inner.left, outer.left), max(inner.top, outer.top), min(inner.right, outer.right), min(inner.bottom, outer.bottom))
