"""The run folder: where a story's panels, visual prompts and manifest live on disk.

Every file is written to a temporary name in the same folder and renamed into place, so Ctrl-C or
a crash never leaves a half-written PNG or manifest: a file is either the old one or the new one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

MANIFEST = "manifest.json"


def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp's 0600 would hide the run
    folder from a static server running as another user)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()
MANIFEST_FORMAT = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_save_image(path: Path, image: Image.Image, **params: Any) -> None:
    buf = io.BytesIO()
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    if fmt == "PNG":
        # Level 1 is ~5x faster than the default for a few percent more bytes; a run writes
        # hundreds of grids, so this is most of a preview run's time.
        params.setdefault("compress_level", 1)
    if fmt == "JPEG" and image.mode != "RGB":
        image = image.convert("RGB")
    image.save(buf, format=fmt, **params)
    atomic_write_bytes(path, buf.getvalue())


class RunFolder:
    """Paths inside one run folder (relative paths go into the manifest)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def panel_image(self, number: int) -> Path:
        return self.root / "panels" / f"{number:02d}.png"

    def panel_dir(self, number: int) -> Path:
        return self.root / "panels" / f"{number:02d}"

    def ref_thumb(self, sha256: str) -> Path:
        return self.root / "refs" / f"{sha256[:16]}.jpg"

    def rel(self, path: Path) -> str:
        """A path relative to the run folder, with forward slashes (for HTML links)."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest of an earlier run, or None when there is none or it is unreadable."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            return None
        return data

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_bytes(self.manifest_path, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
