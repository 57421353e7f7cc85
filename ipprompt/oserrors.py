"""Operating-system errors a user can fix, in words: a symlink loop, a full disk, no permission.

These come from the user's disk, not from a bug: a ``--out`` that is a symbolic link pointing at
itself, a story path that loops, a read-only or full file system. The CLI turns them into a
message and exit 2 (``ipprompt.cli.console.run_cli_errors``) wherever they surface, so no code
path can forget one; modules that know better (the file being read) raise ``user_os_error``
themselves with that context.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ipprompt.errors import IppromptError

# errno -> (what happened, what to do)
_KNOWN: dict[int, tuple[str, str]] = {
    errno.ELOOP: ("is a symbolic link loop (a link that leads back to itself)", "Remove or fix the link, or give another path."),
    errno.ENOSPC: ("cannot be written: the disk is full", "Free some space on that disk (or write elsewhere) and run the command again."),
    errno.EROFS: ("is on a read-only file system", "Give a folder on a writable disk."),
    errno.EACCES: ("cannot be accessed: permission denied", "Check the permissions of the file and its folders, or give another path."),
    errno.EPERM: ("cannot be changed: operation not permitted", "Check the permissions of the file and its folders, or give another path."),
    errno.ENAMETOOLONG: ("has a name too long for the file system", "Give a shorter path."),
    errno.ENOTDIR: ("goes through a file where a folder is expected", "Check the path: one of its parts is a file."),
}
if hasattr(errno, "EDQUOT"):
    _KNOWN[errno.EDQUOT] = ("cannot be written: the disk quota is exceeded", "Free some space (or write elsewhere) and run the command again.")


def loops(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` (or a folder on the way to it) is a symbolic link loop."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _looping_part(path: Path) -> Path | None:
    """The shortest prefix of ``path`` that loops, to name the link the user must fix."""
    parts = path.parts
    for i in range(1, len(parts) + 1):
        prefix = Path(*parts[:i])
        if loops(prefix):
            return prefix
    return None


def classify(exc: OSError) -> IppromptError | None:
    """The user error an OSError stands for, or None when it is not one we can explain.

    ``mkdir`` on a link that loops says "File exists" (EEXIST), so a path that loops is recognised
    by looking at the path itself, whatever errno came with it.
    """
    name = exc.filename
    if name is not None and not isinstance(name, int):
        path = Path(os.fsdecode(name))
        looping = _looping_part(path)
        if looping is not None:
            what, fix = _KNOWN[errno.ELOOP]
            return IppromptError(f"{looping} {what}.", fix)
    if exc.errno not in _KNOWN:
        return None
    what, fix = _KNOWN[exc.errno]
    subject = os.fsdecode(name) if name is not None and not isinstance(name, int) else "A file"
    return IppromptError(f"{subject} {what}.", fix)


def user_os_error(exc: OSError, doing: str) -> IppromptError:
    """An IppromptError for ``exc``, raised while ``doing`` (e.g. "Cannot read the story file x")."""
    known = classify(exc)
    if known is not None:
        return IppromptError(f"{doing}: {known.message}", known.hint)
    return IppromptError(f"{doing}: {exc.strerror or exc}.", "Check the path and its permissions.")
