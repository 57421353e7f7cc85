"""SQLite failures of a theme index, in words a user can act on.

SQLite reports a full disk as "database or disk is full" or, when the full disk hits its journal,
as "disk I/O error". Neither means the index is damaged, and the index holds what cannot be made
again (captions and tags given with ``theme add --caption/--tag``), so the hint for a full disk
must never be "delete index.sqlite"; only an index SQLite says is damaged gets the advice to move
it aside.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from ipprompt.errors import IppromptError

_FULL = ("database or disk is full", "disk i/o error")
_DAMAGED = ("file is not a database", "malformed", "file is encrypted")
_READ_ONLY = ("readonly database", "read-only", "unable to open database file")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite (or the OS) saying the disk is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    return isinstance(exc, sqlite3.Error) and any(text in str(exc).lower() for text in _FULL)


def index_error(exc: BaseException, index: Path) -> IppromptError:
    """The user error for ``exc``, raised while opening or writing the theme index ``index``."""
    text = str(exc).lower()
    if is_disk_full(exc):
        # SQLite says "disk I/O error" when a full disk stops its journal; a failing disk says the same
        what = "the disk is full" if "i/o" not in text else "the disk is full (or failing)"
        return IppromptError(
            f"Cannot write the theme index {index}: {what} ({exc}).",
            "Free some space on that disk and run the command again. Keep index.sqlite: it holds "
            "the theme's captions, tags and embeddings, and nothing in it was lost.",
        )
    if any(t in text for t in _READ_ONLY) or isinstance(exc, PermissionError):
        return IppromptError(
            f"Cannot open the theme index {index} for writing ({exc}).",
            "Check the permissions of that folder; to use a read-only folder of pictures, import it "
            "into a named theme: ipprompt theme add NAME FOLDER.",
        )
    if any(t in text for t in _DAMAGED):
        return IppromptError(
            f"The theme index {index} is damaged ({exc}).",
            "Move index.sqlite aside (keep it: it holds captions and tags given with `theme add "
            "--caption/--tag`); the images in the folder are indexed again on the next open.",
        )
    return IppromptError(f"Cannot use the theme index {index}: {exc}.", "Check the disk and the folder's permissions.")


class IndexConnection(sqlite3.Connection):
    """A connection whose writes that fail for a full disk raise the user error, not a traceback.

    Every statement of ``ThemeStore`` goes through ``execute``/``executemany``, so a full disk met
    in the middle of ``theme add`` or an encoding pass reads the same as one met when opening.
    """

    index_path: Path = Path("index.sqlite")

    def execute(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        try:
            return super().execute(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if is_disk_full(exc):
                raise index_error(exc, self.index_path) from None
            raise

    def executemany(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        try:
            return super().executemany(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if is_disk_full(exc):
                raise index_error(exc, self.index_path) from None
            raise
