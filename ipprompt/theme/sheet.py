"""Contact sheet: every image of a theme as a labelled thumbnail on one PNG.

A table of hashes and captions does not show whether a theme is coherent; a glance at all its
pictures does. Labels carry the sha prefix that ``theme rm`` accepts.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ipprompt.atomic import atomic_write_bytes
from ipprompt.errors import IppromptError
from ipprompt.images import ImageRejected, open_image
from ipprompt.theme.records import ThemeImage

_LABEL_HEIGHT = 34
_GAP = 8
_BACKGROUND = (245, 245, 242)
_BROKEN = (200, 60, 60)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType support for the default font
        return ImageFont.load_default()


def _fit(text: str, draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render_contact_sheet(images: Sequence[ThemeImage], thumb: int = 160, columns: int | None = None) -> Image.Image:
    """Thumbnails (aspect kept, centred in ``thumb`` squares) with sha prefix and caption labels."""
    if thumb < 32:
        raise ValueError("thumb must be at least 32 pixels")
    count = max(len(images), 1)
    columns = columns or min(8, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    cell_w, cell_h = thumb + _GAP, thumb + _LABEL_HEIGHT + _GAP
    sheet = Image.new("RGB", (columns * cell_w + _GAP, rows * cell_h + _GAP), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(11)
    for i, item in enumerate(images):
        x = _GAP + (i % columns) * cell_w
        y = _GAP + (i // columns) * cell_h
        try:
            picture = open_image(item.path)
            picture.thumbnail((thumb, thumb))
            sheet.paste(picture, (x + (thumb - picture.width) // 2, y + (thumb - picture.height) // 2))
        except ImageRejected as rejected:
            draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), outline=_BROKEN, width=2)
            draw.text((x + 6, y + 6), _fit(rejected.reason, draw, font, thumb - 12), fill=_BROKEN, font=font)
        draw.text((x, y + thumb + 3), item.short_sha[:8], fill=(90, 90, 90), font=font)
        caption = item.caption or Path(item.file_name).name
        draw.text((x, y + thumb + 17), _fit(caption, draw, font, thumb), fill=(20, 20, 20), font=font)
    return sheet


def write_contact_sheet(images: Sequence[ThemeImage], out: Path, thumb: int = 160) -> Path:
    """Render and save the contact sheet atomically; the format follows ``out``'s extension."""
    suffix = out.suffix.lower()
    image_format = Image.registered_extensions().get(suffix)
    if image_format is None:
        raise IppromptError(
            f"Cannot write a contact sheet as '{out.name}': unknown image extension '{out.suffix}'.",
            "Use a .png (or .jpg / .webp) file name, e.g. --sheet sheet.png",
        )
    sheet = render_contact_sheet(images, thumb=thumb)
    buf = io.BytesIO()
    sheet.save(buf, format=image_format)
    atomic_write_bytes(out, buf.getvalue())
    return out
