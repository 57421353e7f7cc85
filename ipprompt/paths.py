"""Where ipprompt keeps user data, and how a theme name becomes a folder."""

from __future__ import annotations

import os
from pathlib import Path

from ipprompt.errors import IppromptError


def ipprompt_home() -> Path:
    """The user's ipprompt folder: ``$IPPROMPT_HOME`` or the platform's user data folder."""
    env = os.environ.get("IPPROMPT_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("ipprompt", appauthor=False))


def themes_home() -> Path:
    """Folder that holds the named themes (``ipprompt theme add NAME ...``)."""
    return ipprompt_home() / "themes"


def looks_like_path(name: str) -> bool:
    """A theme argument with a separator or a leading dot is a folder path, not a library name."""
    return "/" in name or "\\" in name or name.startswith(".") or name.startswith("~")


def resolve_theme_path(name_or_path: str, relative_to: Path | None = None, must_exist: bool = True) -> Path:
    """Turn a story's ``theme`` value or a CLI argument into a theme folder.

    Paths are taken relative to ``relative_to`` (the story's folder) first, then the current
    folder; a bare name is looked up under ``themes_home()``. A story can thus point at a folder
    next to it, while CLI users can say ``ipprompt theme add mytheme ...``.
    """
    candidates: list[Path] = []
    raw = Path(name_or_path).expanduser()
    if raw.is_absolute():
        candidates.append(raw)
    else:
        if relative_to is not None:
            candidates.append(relative_to / raw)
        candidates.append(Path.cwd() / raw)
        if not looks_like_path(name_or_path):
            candidates.append(themes_home() / name_or_path)
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    for c in candidates:
        if c.is_file():
            raise IppromptError(f"Theme '{name_or_path}' is a file ({c}), not a folder.", "A theme is a folder of images.")
    if not must_exist:
        if looks_like_path(name_or_path) or raw.is_absolute():
            return (candidates[0]).resolve()
        return themes_home() / name_or_path
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise IppromptError(
        f"Theme '{name_or_path}' not found (looked in: {tried}).",
        "Give a folder of images (a story's theme is relative to the story file), or a theme name "
        "created with `ipprompt theme add NAME IMAGES...` (see `ipprompt theme list`).",
    )
