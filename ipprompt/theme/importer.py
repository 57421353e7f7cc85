"""Adding image files to a theme: finding them, checking them, copying them in.

A theme is only as good as its images, and imports are where bad files show up: a zero-byte
download, a text file renamed ``.png``, a half-copied PNG, a CMYK JPEG from a print workflow, a
phone photo stored sideways with an EXIF rotation. Each file is judged on its own; a bad one is
refused with one line naming it and the reason, and the import goes on with the rest.

Copies are content-addressed (``images/<first 16 hex of sha256><ext>``) from the *original bytes*,
so the same picture imported twice, from anywhere, is recognised as a duplicate.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ipprompt.atomic import atomic_write_bytes
from ipprompt.theme.records import ImportReport, Refusal, ThemeImage
from ipprompt.theme.store import ImageRow, ThemeStore, now_iso

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
COPIES_DIR = "images"
_GLOB_CHARS = frozenset("*?[")


class ImageRejected(Exception):
    """A file that cannot be used as a reference image; ``reason`` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sha256_hex(data: bytes) -> str:
    """The content id of an image: sha256 of its original file bytes."""
    return hashlib.sha256(data).hexdigest()


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB for the encoder and the canvas; transparent areas become white, not black.

    ``convert("RGB")`` alone drops alpha and keeps whatever colour hides under transparent pixels
    (often black), which would put black blobs into a visual prompt.
    """
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(data: bytes) -> Image.Image:
    """Decode file bytes into an upright RGB image, or raise ``ImageRejected`` saying why.

    ``load()`` decodes all pixel data, so a truncated file is caught here and not later in the
    middle of a run; EXIF orientation is applied so portrait photos are not used sideways.
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _flatten_to_rgb(image)
    except UnidentifiedImageError:
        raise ImageRejected("not an image (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        detail = str(exc) or type(exc).__name__
        raise ImageRejected(f"corrupt or truncated image data ({detail})") from None


def load_image(path: Path) -> Image.Image:
    """Read and decode an image file (see :func:`decode_image`); unreadable files are rejected."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageRejected(f"cannot read file ({exc.strerror or exc})") from None
    return decode_image(data)


def sidecar_caption(image_path: Path) -> str | None:
    """The caption in ``<name>.txt`` next to the image, as in common fine-tuning datasets."""
    sidecar = image_path.with_suffix(".txt")
    try:
        text = sidecar.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return " ".join(text.split()) or None


def is_image_name(path: Path) -> bool:
    """Whether a file found while walking a folder should be treated as an image."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def walk_images(folder: Path, skip: Callable[[Path], bool] | None = None) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden files and folders left out)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if is_image_name(path) and not (skip and skip(path)):
                found.append(path)
    return found


def expand_sources(sources: Iterable[str | Path]) -> tuple[list[Path], list[Refusal]]:
    """Turn the user's PATH arguments (files, folders, globs) into a list of files.

    Files named explicitly are always tried (and refused if they are not images); folders and
    glob patterns contribute only files with an image extension, so sidecar ``.txt`` captions and
    stray documents next to the images are not reported as bad images.
    """
    files: list[Path] = []
    refusals: list[Refusal] = []
    for source in sources:
        text = str(source)
        path = Path(text).expanduser()
        if path.is_dir():
            files.extend(walk_images(path))
        elif path.is_file():
            files.append(path)
        elif _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            images = [m for m in matches if m.is_file() and is_image_name(m)]
            for folder in (m for m in matches if m.is_dir()):
                images.extend(walk_images(folder))
            if images:
                files.extend(images)
            else:
                refusals.append(Refusal(path, "no image files match this pattern"))
        else:
            refusals.append(Refusal(path, "no such file or folder"))
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique, refusals


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
            data = path.read_bytes()
        except OSError as exc:
            refuse(path, f"cannot read file ({exc.strerror or exc})")
            continue
        digest = sha256_hex(data) if data else ""
        if data and (digest in seen or store.has_sha(digest)):
            report.duplicates.append(path)
            continue
        try:
            image = decode_image(data)
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
