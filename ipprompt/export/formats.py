"""Writers for the shareable formats: PDF, CBZ (a zip comic readers open) and a folder of PNGs.

Every file goes through ``ipprompt.atomic``: an export interrupted halfway leaves the previous
file, never half a PDF. A pages folder is written only when it holds nothing but our own page
files, so pointing ``--pages`` at the wrong folder never overwrites or deletes a user's files.
"""

from __future__ import annotations

import io
import re
import time
import zipfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ipprompt.atomic import atomic_save_image, atomic_write_bytes, encode_image
from ipprompt.errors import IppromptError
from ipprompt.export.text import clean_text

PDF_JPEG_QUALITY = 92  # Pillow stores PDF pages as JPEG; lettering blurs visibly below ~90
PNG_LEVEL = 6  # shared files: smaller beats the fast level run folders use
COMIC_INFO = "ComicInfo.xml"
PAGE_FILE = re.compile(r"page-\d{3,}\.png")

# Characters XML 1.0 cannot hold at all (control characters, lone surrogates, U+FFFE/FFFF):
# escaping does not help, so they are dropped before they reach the tree.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def page_names(count: int, pattern: str = "{:0{w}d}.png") -> list[str]:
    """Zero-padded names in reading order (000 is the cover): readers sort pages by name."""
    width = max(3, len(str(max(count - 1, 0))))
    return [pattern.format(i, w=width) for i in range(count)]


def check_output_file(path: Path, option: str, suffix: str) -> None:
    """Refuse early (before minutes of drawing) a target that is a folder."""
    if Path(path).is_dir():
        raise IppromptError(f"{option} {path} is a folder.", f"Give a file name, e.g. {Path(path) / ('comic' + suffix)}.")


def write_pdf(path: Path, pages: Sequence[Image.Image], *, dpi: int, title: str) -> None:
    """A multi-page PDF whose pages have the physical size the dpi implies."""
    if not pages:
        raise ValueError("a PDF needs at least one page")
    buf = io.BytesIO()
    first, rest = pages[0], list(pages[1:])
    first.save(
        buf, format="PDF", save_all=True, append_images=rest, resolution=float(dpi),
        title=clean_text(title).replace("\n", " ") or "Comic", creator="ipprompt", quality=PDF_JPEG_QUALITY,
    )
    atomic_write_bytes(Path(path), buf.getvalue())


@dataclass(frozen=True)
class ComicInfo:
    """What ComicInfo.xml says about the book (ComicRack's schema, read by most comic readers)."""

    title: str
    characters: tuple[str, ...]
    page_sizes: tuple[tuple[int, int], ...]


def _xml_text(text: str) -> str:
    """One line of text XML can hold (a title or a name in a reader's list has no line breaks)."""
    return " ".join(_NOT_XML.sub("", text).split())


def comic_info_xml(info: ComicInfo) -> bytes:
    """The ComicInfo.xml document, built as a tree so that any title or name is escaped.

    Elements are in the schema's order (it is an xs:sequence, and strict readers check it).
    """
    root = ET.Element("ComicInfo", {
        "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xmlns:xsd": "http://www.w3.org/2001/XMLSchema",
    })
    ET.SubElement(root, "Title").text = _xml_text(info.title)
    ET.SubElement(root, "PageCount").text = str(len(info.page_sizes))
    names = [_xml_text(n).strip() for n in info.characters]
    if any(names):
        ET.SubElement(root, "Characters").text = ", ".join(n for n in names if n)
    pages = ET.SubElement(root, "Pages")
    for index, (width, height) in enumerate(info.page_sizes):
        ET.SubElement(pages, "Page", {
            "Image": str(index),
            "Type": "FrontCover" if index == 0 else "Story",
            "ImageWidth": str(width),
            "ImageHeight": str(height),
        })
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_cbz(path: Path, pages: Sequence[Image.Image], *, title: str, characters: Sequence[str]) -> None:
    """A CBZ: PNG pages named in reading order, then ComicInfo.xml."""
    buf = io.BytesIO()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(buf, "w") as zf:
        for name, page in zip(page_names(len(pages)), pages):
            # PNG is compressed already: stored, not deflated again.
            zf.writestr(zipfile.ZipInfo(name, date_time=stamp), encode_image(page, ".png", compress_level=PNG_LEVEL), compress_type=zipfile.ZIP_STORED)
        info = ComicInfo(title, tuple(characters), tuple(p.size for p in pages))
        zf.writestr(zipfile.ZipInfo(COMIC_INFO, date_time=stamp), comic_info_xml(info), compress_type=zipfile.ZIP_DEFLATED)
    atomic_write_bytes(Path(path), buf.getvalue())


def check_pages_folder(folder: Path) -> None:
    """Refuse a folder holding anything but our page files (hidden files such as .DS_Store aside).

    We would overwrite files named like pages and remove stale ones, so a folder of the user's
    own files is never touched; the message says how to go on.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise IppromptError(f"--pages {folder} is a file, not a folder.", "Give a new or empty folder for the page images.")
    if not folder.is_dir():
        return
    try:
        others = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and not (PAGE_FILE.fullmatch(p.name) and p.is_file()))
    except OSError as exc:
        raise IppromptError(f"Cannot read --pages folder {folder}: {exc.strerror or exc}.", "Choose a folder you can read and write.") from None
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise IppromptError(
            f"--pages {folder} already holds other files ({shown}); they are left untouched.",
            "Give a new or empty folder (or one holding only page-NNN.png files from an earlier export).",
        )


def write_page_files(folder: Path, pages: Sequence[Image.Image]) -> list[Path]:
    """``page-000.png`` (cover), ``page-001.png``...; stale pages of a longer earlier export go."""
    folder = Path(folder)
    check_pages_folder(folder)
    names = page_names(len(pages), "page-{:0{w}d}.png")
    written = []
    for name, page in zip(names, pages):
        atomic_save_image(folder / name, page, compress_level=PNG_LEVEL)
        written.append(folder / name)
    keep = set(names)
    for old in folder.glob("page-*.png"):
        if PAGE_FILE.fullmatch(old.name) and old.name not in keep and old.is_file():
            try:
                old.unlink()
            except OSError:
                pass
    return written
