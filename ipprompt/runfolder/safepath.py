"""The one check that a path read from a run folder's manifest or a panel record stays inside it.

A run folder is often someone else's (sent by mail, unpacked from an archive), and its manifest is
a text file anyone can edit. A candidate ``image`` of ``../../secret/private.png``, ``/etc/passwd``
or a link pointing out of the folder must never be copied by ``story pick``, inlined by ``render
--single-file``, packed by ``export --cbz`` or read by ``eval``. Every reader resolves manifest
paths here (through ``RunFolder.resolve``), so the rule lives in one place.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ipprompt.errors import IppromptError


class UnsafePath(IppromptError):
    """A manifest path that would lead outside the run folder (or is no plain relative path)."""


def resolve_inside(root: Path, rel: object, key: str = "a path") -> Path:
    """The file ``rel`` names inside ``root``; ``UnsafePath`` naming ``key`` when it leads elsewhere.

    Refused: anything but a non-empty string; absolute paths; ``..``; backslashes, drive letters
    and URLs (``:``); NUL; and links (anywhere on the way) that resolve outside the folder. The
    file need not exist: callers check that themselves, as a missing file is no attack.
    """
    hint = "The run folder's manifest was edited or comes from elsewhere; only files inside the run folder are used."
    if not isinstance(rel, str) or not rel:
        raise UnsafePath(f"{key} is not a file name ({rel!r}).", hint)
    if "\\" in rel or ":" in rel or "\x00" in rel:
        raise UnsafePath(f"{key} ({rel!r}) is not a plain relative path inside the run folder.", hint)
    parts = PurePosixPath(rel)
    if parts.is_absolute() or ".." in parts.parts:
        raise UnsafePath(f"{key} ({rel!r}) leads outside the run folder.", hint)
    try:
        real_root = Path(root).resolve()
        path = Path(root).joinpath(*parts.parts)
        real = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise UnsafePath(f"{key} ({rel!r}) goes through a symbolic link loop.", hint) from None
    if not real.is_relative_to(real_root):
        raise UnsafePath(f"{key} ({rel!r}) is a link that leads outside the run folder (to {real}).", hint)
    return path


def inside_or_none(root: Path, rel: object, key: str = "a path") -> Path | None:
    """``resolve_inside``, with None for an unsafe path (readers that draw such a file as missing)."""
    try:
        return resolve_inside(root, rel, key)
    except UnsafePath:
        return None
