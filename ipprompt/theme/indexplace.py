"""Where a theme folder's index (``index.sqlite``) lives: in the folder only when the folder is yours.

A deny-list of system folders always has gaps (``/var/lib``, ``/var/log``, ``/nix/store``,
``/snap``, ``~/.cache`` all passed one). So the rule is the other way round: ipprompt writes its
index into a theme folder only when that folder is

1. under ipprompt's own themes folder (``$IPPROMPT_HOME/themes``: named themes), or a theme that
   ``ipprompt theme add PATH`` created (it holds a ``theme.toml``, which only someone able to write
   there can have put there), or
2. inside the *project folder*: the folder of the story whose theme it is, or, for a theme
   command given a path (no story), the current working folder. A project folder is never a
   filesystem root nor the home folder itself: a story saved directly in ``~`` or ``/``, or a
   shell started in ``/``, does not make every folder below it "the project". So a story's
   ``theme = "/var/lib"`` is never written to, wherever the command is run from,

and ipprompt can write there. Every other folder, a system folder or someone else's archive, is
only read: its index lives in ipprompt's data folder, ``$IPPROMPT_HOME/indexes/<name>-<hash>/``,
keyed by the folder's resolved path. Nothing is ever written into it.

The place, once an index exists, sticks: an index already in the folder, or already in the data
folder, is used wherever the theme is opened from, because an index holds captions and tags that a
moved or rebuilt index would lose.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ipprompt.paths import ipprompt_home, themes_home
from ipprompt.theme.config import CONFIG_FILE
from ipprompt.theme.store import INDEX_FILE

INDEXES_DIR = "indexes"


def _resolved(path: Path) -> Path:
    try:
        return Path(os.path.abspath(path)).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _home() -> Path | None:
    try:
        return Path.home().resolve()
    except (OSError, RuntimeError):
        return None


def project_folders(story_folder: Path | None = None) -> list[Path]:
    """The folders whose contents count as the user's own project: the story's folder, else the cwd.

    A filesystem root or the home folder itself is never one: a story saved there would otherwise
    make every folder on the disk (or in the home folder, ``~/.cache`` included) "the project".
    """
    candidates: list[Path] = []
    if story_folder is not None:
        candidates.append(story_folder)
    else:
        try:
            candidates.append(Path.cwd())
        except OSError:  # the working folder was deleted
            pass
    home = _home()
    projects: list[Path] = []
    for candidate in candidates:
        folder = _resolved(candidate)
        if folder.parent == folder or folder == home:
            continue
        if folder not in projects:
            projects.append(folder)
    return projects


def external_index_folder(theme_folder: Path) -> Path:
    """The data-folder place of ``theme_folder``'s index: ``$IPPROMPT_HOME/indexes/<name>-<hash>``."""
    resolved = _resolved(theme_folder)
    digest = hashlib.sha256(os.fsencode(str(resolved))).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", resolved.name)[:40] or "root"
    return ipprompt_home() / INDEXES_DIR / f"{name}-{digest}"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def is_users_folder(theme_folder: Path, story_folder: Path | None = None) -> bool:
    """Whether ipprompt may write into ``theme_folder`` (rule above, the index's current place aside)."""
    folder = _resolved(theme_folder)
    owned = (
        _within(folder, _resolved(themes_home()))
        or (folder / CONFIG_FILE).is_file()
        or any(_within(folder, p) for p in project_folders(story_folder))
    )
    return owned and os.access(_nearest_existing(folder), os.W_OK | os.X_OK)


def index_folder(theme_folder: Path, story_folder: Path | None = None) -> Path:
    """The folder that holds (or will hold) ``theme_folder``'s ``index.sqlite``."""
    if (theme_folder / INDEX_FILE).is_file():
        return theme_folder  # made here before: it holds captions and tags, never move it
    external = external_index_folder(theme_folder)
    if (external / INDEX_FILE).is_file():
        return external
    return theme_folder if is_users_folder(theme_folder, story_folder) else external
