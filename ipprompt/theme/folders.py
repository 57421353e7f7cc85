"""Which folders may be a theme: never the whole disk, a system folder, or one ipprompt cannot write.

Opening a theme walks its folder and writes ``index.sqlite`` into it. Pointed at ``/`` (a typo in
a story, ``theme = "/"``, or ``ipprompt theme add /``), that would walk every file on the machine
and, run as root, leave an index in the root folder. So before anything is read or written, the
folder is checked, in microseconds: filesystem roots, the home folder itself and well-known system
folders are refused, and so is a folder ipprompt cannot write (its index could not be kept there).

This list is only a fast courtesy for folders that can never be a theme. Whether ipprompt may
*write* into a theme folder is decided by a rule without gaps (``ipprompt.theme.indexplace``): only
a folder inside the user's project or ipprompt's own themes folder gets an ``index.sqlite``; any
other folder, a read-only archive included, is only read and indexed from ipprompt's data folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from ipprompt.errors import IppromptError

# Refused themselves and everything inside them: the operating system's own files and
# pseudo-filesystems (/proc and /sys alone hold millions of entries, some that never end).
_SYSTEM_TREES = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin",
    "/sys", "/usr", "/System", "/Library", "/Applications", "/private/etc",
)
# Refused themselves only: folders that hold many users' or programs' folders, one of which may
# well be a theme (/home/ann/refs, /mnt/archive/pictures, /run/media/ann/usb/pictures).
_CONTAINERS = ("/run", "/run/media", "/home", "/Users", "/mnt", "/media", "/opt", "/srv", "/tmp", "/var", "/var/tmp", "/root", "/Volumes", "/private", "/private/var")

HINT = (
    "A theme is a folder of your own pictures (e.g. ./refs next to the story) or a name made with "
    "`ipprompt theme add NAME IMAGES...`."
)


def _windows_trees() -> list[Path]:
    names = ("SystemRoot", "ProgramFiles", "ProgramFiles(x86)", "ProgramData")
    return [Path(os.environ[n]) for n in names if os.environ.get(n)]


def _home_folders() -> set[Path]:
    homes = set()
    for home in (Path.home(), Path(os.path.expanduser("~"))):
        try:
            homes.add(home.resolve())
        except (OSError, RuntimeError):
            continue
    return homes


def _is_within(path: Path, tree: Path) -> bool:
    return path == tree or tree in path.parents


def unsafe_reason(folder: Path, *, writing: bool = False) -> str | None:
    """Why ``folder`` must not be a theme, or None when it may be.

    With ``writing`` (``theme add`` creating a theme there), the folder, or the nearest existing
    folder above it when it does not exist yet, must be writable. Only path comparisons and one ``os.access`` call: no folder is listed.
    """
    try:
        resolved = Path(os.path.abspath(folder)).resolve()
    except (OSError, RuntimeError) as exc:
        return f"its path cannot be followed ({exc})"
    if resolved.parent == resolved:
        return "the root of a filesystem"
    if resolved in _home_folders():
        return "your home folder itself (ipprompt would index every picture in it)"
    for tree in [Path(t) for t in _SYSTEM_TREES] + _windows_trees():
        if _is_within(resolved, tree):
            return f"a system folder ({tree})"
    if resolved in {Path(c) for c in _CONTAINERS}:
        return "a system folder that holds other folders"
    if writing:
        existing = resolved
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not os.access(existing, os.W_OK | os.X_OK):
            return "not writable by you (a new theme could not be created there)"
    return None


def check_theme_folder(folder: Path, *, writing: bool = False) -> None:
    """Raise ``IppromptError`` (exit 2) when ``folder`` must not be used as a theme folder."""
    reason = unsafe_reason(folder, writing=writing)
    if reason is None:
        return
    hint = HINT
    if reason.startswith("not writable"):
        hint = (
            "Import the pictures into a theme ipprompt can write: "
            f"`ipprompt theme add NAME {folder}` copies them, and the story says theme = \"NAME\"."
        )
    raise IppromptError(f"Cannot use {folder} as a theme folder: it is {reason}.", hint)
