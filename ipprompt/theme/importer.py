"""Adding image files to a theme: finding them, checking them, copying them in.

A theme is only as good as its images, and imports are where bad files show up: a zero-byte
download, a text file renamed ``.png``, a half-copied PNG, a CMYK JPEG from a print workflow, a
phone photo stored sideways with an EXIF rotation. Each file is judged on its own; a bad one is
refused with one line naming it and the reason, and the import goes on with the rest. Finding the
files is ``finding``'s job; opening them is ``ipprompt.images``' (the one image opener).

Copies are content-addressed (``images/<first 16 hex of sha256><ext>``) from the *original bytes*,
so the same picture imported twice, from anywhere, is recognised as a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from ipprompt.atomic import atomic_write_bytes
from ipprompt.images import ImageRejected, open_image, read_image_bytes
from ipprompt.theme.finding import IMAGE_SUFFIXES, expand_sources, is_image_name, walk_images
from ipprompt.theme.records import ImportReport, Refusal, ThemeImage
from ipprompt.theme.store import ImageRow, ThemeStore, now_iso

__all__ = [
    "COPIES_DIR",
    "IMAGE_SUFFIXES",
    "expand_sources",
    "import_files",
    "is_image_name",
    "sha256_hex",
    "sidecar_caption",
    "to_theme_image",
    "walk_images",
]

COPIES_DIR = "images"


def sha256_hex(data: bytes) -> str:
    """The content id of an image: sha256 of its original file bytes."""
    return hashlib.sha256(data).hexdigest()


def sidecar_caption(image_path: Path) -> str | None:
    """The caption in ``<name>.txt`` next to the image, as in common fine-tuning datasets."""
    sidecar = image_path.with_suffix(".txt")
    try:
        text = sidecar.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return " ".join(text.split()) or None


def _copy_into(folder: Path, sha256: str, suffix: str, data: bytes) -> str:
    """Write the original bytes to ``images/<sha16><ext>`` atomically; returns the relative name.

    Two processes copying the same picture both write identical bytes, and ``os.replace`` makes
    whichever lands last a complete file, never a torn one.
    """
    copies = folder / COPIES_DIR
    copies.mkdir(parents=True, exist_ok=True)
    name = f"{sha256[:16]}{suffix}"
    target = copies / name
    if target.is_file():
        if target.stat().st_size == len(data) and sha256_hex(target.read_bytes()) == sha256:
            return f"{COPIES_DIR}/{name}"
        # A 64-bit prefix collision with different content: keep both under the full digest.
        name = f"{sha256}{suffix}"
        target = copies / name
    atomic_write_bytes(target, data, fsync=False)
    return f"{COPIES_DIR}/{name}"


def import_files(
    store: ThemeStore,
    folder: Path,
    files: Sequence[Path],
    *,
    caption: str | None = None,
    tags: Sequence[str] = (),
    on_refused: Callable[[Refusal], None] | None = None,
) -> ImportReport:
    """Copy ``files`` into the theme at ``folder`` and index them; one transaction per image.

    ``caption`` given explicitly wins over a sidecar ``.txt`` (the user typed it for this import);
    otherwise the sidecar is used. ``on_refused`` is called as soon as a file is refused so the CLI
    can print it while the import goes on.
    """
    report = ImportReport()
    seen: set[str] = set()
    clean_tags = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))

    def refuse(path: Path, reason: str) -> None:
        refusal = Refusal(path, reason)
        report.refused.append(refusal)
        if on_refused is not None:
            on_refused(refusal)

    for path in files:
        try:
            data = read_image_bytes(path)
            digest = sha256_hex(data) if data else ""
            if data and (digest in seen or store.has_sha(digest)):
                report.duplicates.append(path)
                continue
            image = open_image(data, name=str(path))
        except ImageRejected as rejected:
            refuse(path, rejected.reason)
            continue
        seen.add(digest)
        file_name = _copy_into(folder, digest, path.suffix.lower(), data)
        row = ImageRow(
            sha256=digest,
            file_name=file_name,
            original_path=str(path),
            caption=caption if caption is not None else (sidecar_caption(path) or ""),
            tags=clean_tags,
            width=image.width,
            height=image.height,
            added_at=now_iso(),
        )
        with store.transaction():
            inserted = store.insert_image(row)
        if inserted:
            report.added.append(to_theme_image(folder, row))
        else:  # another process added the same content a moment ago
            report.duplicates.append(path)
    return report


def to_theme_image(folder: Path, row: ImageRow) -> ThemeImage:
    """The public record for an index row (absolute path resolved against the theme folder)."""
    return ThemeImage(
        sha256=row.sha256,
        path=folder / row.file_name,
        file_name=row.file_name,
        caption=row.caption,
        tags=row.tags,
        width=row.width,
        height=row.height,
        original_path=row.original_path,
        in_place=row.in_place,
    )
