"""Lettering: narration boxes and speech bubbles drawn into a panel, as the storyboard shows them.

Story text is user data and may be anything: markup, 5000 characters, right-to-left scripts,
emoji, control characters. Whatever it is, it must letter without an error and stay inside its
box. The whole panel's lettering is wrapped and shrunk together (bubbles keep one size within a
panel) down to a minimum size; below that, text is cut with an ellipsis. Each box is drawn on its
own layer and pasted, so nothing can land outside it (see ``ipprompt.export.text`` for the font).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image, ImageDraw

from ipprompt.export.text import (
    INK, NARROWEST_EM, Box, Font, clean_text, clip_box, ellipsize, font, is_rtl, line_height, union_box, wrap,
)

NARRATION = (255, 233, 168)
BUBBLE = (255, 255, 255)
ACCENT = (200, 16, 46)
MUTED = (107, 102, 94)

# Sizes in points (1/72 inch), turned into pixels by the page's dpi: lettering reads the same on
# an A4 print at 300 dpi and on a tablet page at 150.
LETTERING_PT = 9.0
MIN_LETTERING_PT = 5.0
MIN_PX = 6
WIDTH_SHARE = 0.82  # a bubble is at most this share of the panel's width, as in the storyboard

Kind = Literal["narration", "bubble"]


@dataclass(frozen=True)
class Lettered:
    """What was drawn for one caption or line of dialogue, in the panel's pixel coordinates."""

    kind: Kind
    box: Box  # the narration box or the bubble (its tail excluded)
    text_box: Box  # the ink of the text, name included
    tail: Box | None
    size: int
    truncated: bool


@dataclass(frozen=True)
class Line:
    """A caption (``name`` None) or one line of dialogue with its speaker's name."""

    text: str
    name: str | None = None


# --------------------------------------------------------------------------- fitting


@dataclass
class _Block:
    kind: Kind
    size: int
    pad: int
    lines: list[str]
    rtl: bool
    wrap_width: int
    truncated: bool = False
    name_lines: list[str] = field(default_factory=list)

    def text_font(self) -> Font:
        return font(self.size)

    def name_font(self) -> Font:
        return font(max(MIN_PX, round(self.size * 0.75)))

    def line_step(self) -> int:
        return line_height(self.text_font()) + max(1, round(self.size * 0.12))

    def name_step(self) -> int:
        return line_height(self.name_font()) + max(1, round(self.size * 0.1)) if self.name_lines else 0

    def height(self) -> int:
        return 2 * self.pad + self.name_step() + len(self.lines) * self.line_step()

    def width(self) -> int:
        widths = [self.text_font().getlength(s) for s in self.lines]
        widths += [self.name_font().getlength(s) for s in self.name_lines]
        return min(self.wrap_width, int(max(widths, default=0)) + 1) + 2 * self.pad

    def after(self) -> int:
        """Space below the box: a bubble's tail, then a gap before the next box."""
        return _tail_height(self.size) + max(2, round(self.size * 0.4)) if self.kind == "bubble" else max(2, round(self.size * 0.6))

    def cut(self) -> None:
        """Mark the text as cut: its last line ends in an ellipsis."""
        self.truncated = True
        if self.lines:
            self.lines[-1] = ellipsize(self.lines[-1], self.text_font(), self.wrap_width)


def _tail_height(size: int) -> int:
    return max(3, round(size * 0.8))


def _blocks(lines: Sequence[Line], size: int, max_width: int, max_height: int) -> list[_Block]:
    pad = max(2, round(size * 0.45))
    wrap_width = max(1, max_width - 2 * pad)
    out = []
    for line in lines:
        text = clean_text(line.text).upper()
        # Text beyond what could possibly fit at this size is never wrapped: 5000 characters
        # stay as fast as 50.
        step = line_height(font(size))
        capacity = int((wrap_width / (NARROWEST_EM * size) + 1) * (max_height / step + 1))
        cut = len(text) > capacity
        wrapped = wrap(text[:capacity], font(size), wrap_width, limit=max_height // step + 1)
        block = _Block("narration" if line.name is None else "bubble", size, pad, wrapped, is_rtl(text), wrap_width)
        if line.name is not None:
            name = clean_text(line.name).upper().replace("\n", " ")
            if name:
                block.name_lines = [_one_line(name, block.name_font(), wrap_width)]
        if cut:
            block.cut()
        out.append(block)
    return out


def _one_line(text: str, f: Font, width: int) -> str:
    return text if f.getlength(text) <= width else ellipsize(text, f, width)


def _total_height(blocks: Sequence[_Block]) -> int:
    return sum(b.height() + b.after() for b in blocks)


def _fit(lines: Sequence[Line], max_width: int, max_height: int, max_px: int, min_px: int) -> list[_Block]:
    """The largest common size at which every box fits; below ``min_px``, text is cut to fit.

    Cutting takes lines from the longest text first, so one runaway caption does not silence the
    dialogue; boxes that still do not fit are dropped from the end, the last one kept ending in an
    ellipsis. A panel too small for even one line gets no lettering at all.
    """
    min_px = min(min_px, max_px)
    if not lines or max_width <= 0 or max_height <= 0:
        return []
    lo, hi, best = min_px, max_px, None
    while lo <= hi:  # the height shrinks with the size, so a binary search finds the largest fit
        mid = (lo + hi) // 2
        blocks = _blocks(lines, mid, max_width, max_height)
        if _total_height(blocks) <= max_height:
            best, lo = blocks, mid + 1
        else:
            hi = mid - 1
    if best is not None:
        return best
    blocks = _blocks(lines, min_px, max_width, max_height)
    excess = _total_height(blocks) - max_height
    while excess > 0:
        by_length = sorted(blocks, key=lambda b: len(b.lines), reverse=True)
        longest = by_length[0]
        if len(longest.lines) > 1:
            # Down to the next longest text at most: long texts are cut evenly, none to nothing.
            floor = max(1, len(by_length[1].lines) if len(by_length) > 1 else 1)
            drop = min(max(1, len(longest.lines) - floor), -(-excess // longest.line_step()))
            del longest.lines[len(longest.lines) - drop:]
            longest.cut()
        elif len(blocks) > 1:
            blocks.pop()
            blocks[-1].cut()
        else:
            return []
        excess = _total_height(blocks) - max_height
    return blocks


# --------------------------------------------------------------------------- drawing


def letter_panel(panel: Image.Image, caption: str | None, dialogue: Sequence[Line], *, px_per_pt: float, reserve_bottom: int = 0) -> list[Lettered]:
    """Draw the caption (narration box, top left) and dialogue (bubbles, alternating sides).

    Drawn in place on ``panel`` (RGB or RGBA), stacked from the top as the storyboard does; only
    the top ``height - reserve_bottom`` px are used (the panel number sits below). Returns what was
    drawn, for callers and tests that check the lettering stays inside the panel.
    """
    # A caption or line with nothing printable left would be an empty box: it is skipped.
    lines = [Line(caption or "")] + [Line(d.text, d.name or "") for d in dialogue]
    lines = [line for line in lines if clean_text(line.text)]
    margin = max(4, round(4 * px_per_pt))
    inner_w, inner_h = panel.width - 2 * margin, panel.height - 2 * margin - reserve_bottom
    max_px = max(MIN_PX, round(LETTERING_PT * px_per_pt))
    min_px = max(MIN_PX, round(MIN_LETTERING_PT * px_per_pt))
    blocks = _fit(lines, int(inner_w * WIDTH_SHARE), inner_h, max_px, min_px)
    drawn: list[Lettered] = []
    y, side = margin, 0
    for block in blocks:
        w = block.width()
        on_right = block.kind == "bubble" and side % 2 == 1
        side += block.kind == "bubble"
        x = margin + inner_w - w if on_right else margin
        drawn.append(_draw_block(panel, block, x, y, right=on_right))
        y += block.height() + block.after()
    return drawn


def letters_bottom(drawn: Sequence[Lettered]) -> int:
    """The lowest pixel row the lettering uses (tails included), 0 when nothing was drawn."""
    return max((max(d.box.bottom, d.tail.bottom if d.tail else 0) for d in drawn), default=0)


def _draw_block(panel: Image.Image, block: _Block, x: int, y: int, *, right: bool) -> Lettered:
    w, h = block.width(), block.height()
    border = max(1, round(block.size * 0.12))
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if block.kind == "bubble":
        draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=max(2, block.pad), fill=BUBBLE, outline=INK, width=border)
    else:
        draw.rectangle((0, 0, w - 1, h - 1), fill=NARRATION, outline=INK, width=border)
    ink: list[tuple[float, float, float, float]] = []
    ty = block.pad
    for text, f, colour, step in [(s, block.name_font(), ACCENT, block.name_step()) for s in block.name_lines] + [
        (s, block.text_font(), INK, block.line_step()) for s in block.lines
    ]:
        tx = w - block.pad - f.getlength(text) if block.rtl else block.pad
        draw.text((tx, ty), text, font=f, fill=colour)
        bbox = draw.textbbox((tx, ty), text, font=f)
        if bbox[2] > bbox[0]:
            ink.append(bbox)
        ty += step
    panel.paste(layer, (x, y), layer)  # the layer clips: nothing lands outside the box
    box = Box(x, y, x + w, y + h)
    text_box = clip_box(union_box(ink, x, y) or box, box)
    tail = _draw_tail(panel, box, block, right=right, border=border) if block.kind == "bubble" else None
    return Lettered(block.kind, box, text_box, tail, block.size, block.truncated)


def _draw_tail(panel: Image.Image, box: Box, block: _Block, *, right: bool, border: int) -> Box:
    """A comic tail under the bubble: an ink triangle, and a white one inside it over the border."""
    th = _tail_height(block.size)
    tw = max(3, round(th * 0.85))
    offset = min(max(block.pad * 2, round(block.size * 1.2)), max(0, box.width - tw - block.pad))
    base = box.right - offset - tw if right else box.left + offset
    tip = base + tw if right else base
    top = box.bottom - border
    draw = ImageDraw.Draw(panel)
    draw.polygon([(base, top), (base + tw, top), (tip, box.bottom + th - 1)], fill=INK)
    inset = border + 1
    if tw > 2 * inset and th > 2 * inset:
        inner_tip = tip + (-inset if right else inset)
        draw.polygon([(base + inset, top - 1), (base + tw - inset, top - 1), (inner_tip, box.bottom + th - 1 - 2 * inset)], fill=BUBBLE)
    return Box(base, top, base + tw + 1, box.bottom + th)


