"""The one way ipprompt writes a file: to a temporary name beside it, then an atomic rename.

A run can hold hours of GPU work and a theme is the user's own library, so Ctrl-C, a kill or a
full disk must never leave a half-written PNG, manifest or theme file: a reader sees either the
old file or the new one. Temporary files start with ``.`` and end in ``.tmp`` so that the next
start can find and remove those a killed process left behind (``remove_stale_temporaries``).
Written files get the mode a plain ``open()`` would give (mkstemp's 0600 would hide a run folder or
a theme from a static server or another user).
"""

from __future__ import annotations

import errno
import io
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipprompt.errors import IppromptError

if TYPE_CHECKING:  # Pillow is imported lazily: rendering a storyboard needs no Pillow.
    from PIL import Image

TEMP_SUFFIX = ".tmp"


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically; a failure names the file and leaves the old one.

    A full disk or a read-only folder becomes an ``IppromptError`` naming ``path`` (the caller's
    folder stays as it was: the temporary file is removed).
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> None:
    """``atomic_write_bytes`` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def encode_image(image: "Image.Image", suffix: str, **params: Any) -> bytes:
    """PNG (fast level-1 compression) or JPEG bytes of an image, chosen by the file suffix."""
    buf = io.BytesIO()
    fmt = "PNG" if suffix.lower() == ".png" else "JPEG"
    if fmt == "PNG":
        # Level 1 is ~5x faster than the default for a few percent more bytes; a run writes
        # many grids, so this is most of a preview run's host time.
        params.setdefault("compress_level", 1)
    if fmt == "JPEG" and image.mode != "RGB":
        image = image.convert("RGB")
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def atomic_save_image(path: Path, image: "Image.Image", **params: Any) -> None:
    """Save an image atomically (PNG or JPEG by suffix)."""
    atomic_write_bytes(Path(path), encode_image(image, Path(path).suffix, **params))


# What ``tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")`` makes: NAME, then 8 random characters.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$")


def is_temporary_name(name: str) -> bool:
    """True for the names ``atomic_write_bytes`` gives its temporary files, and no others."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_temporaries(folders: Iterable[Path]) -> list[Path]:
    """Delete temporary files a killed writer left directly in ``folders``; returns what was removed.

    Only names this module makes are touched, never a user's file; callers must know that no
    live writer is using the folders (see ``ipprompt.runfolder.lock``).
    """
    removed: list[Path] = []
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for tmp in Path(folder).iterdir():
            if is_temporary_name(tmp.name) and tmp.is_file() and not tmp.is_symlink():
                try:
                    tmp.unlink()
                    removed.append(tmp)
                except OSError:
                    pass
    return removed


def _write_error(path: Path, exc: OSError) -> IppromptError:
    if exc.errno == errno.ENOSPC:
        return IppromptError(f"Could not write {path}: the disk is full.", "Free some space and run the same command again; finished work is kept.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return IppromptError(f"Could not write {path}: permission denied (read-only folder?).", "Choose a folder you can write to, or fix its permissions.")
    return IppromptError(f"Could not write {path}: {exc.strerror or exc}.", "Check the folder and run the same command again.")
