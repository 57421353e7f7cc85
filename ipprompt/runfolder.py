"""The run folder: where a story's panels, visual prompts and manifest live on disk.

Every file is written to a temporary name in the same folder and renamed into place, so Ctrl-C or
a crash never leaves a half-written PNG or manifest: a file is either the old one or the new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ipprompt.atomic import atomic_save_image, atomic_write_bytes  # noqa: F401  (re-exported)

MANIFEST = "manifest.json"


MANIFEST_FORMAT = 1


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
