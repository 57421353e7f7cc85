"""Who is running on a run folder: a shared lock each run holds for its whole life.

Temporary files are only stale when the process that wrote them is gone. Several processes may
share one run folder (two GPUs, disjoint ``--panels``), so a starting run must not delete the
temporary files of a live neighbour. Each run holds a shared ``flock`` on ``.active.lock``; a run
that can take it exclusively first knows it is alone and may clean up, then keeps it shared. The
kernel drops the lock when a process dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cleanup of other runs' leftovers
    fcntl = None  # type: ignore[assignment]

ACTIVE_LOCK = ".active.lock"


class ActiveRun:
    """This process's presence on a run folder, from ``enter`` until ``leave`` (or exit)."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / ACTIVE_LOCK
        self._file: IO[bytes] | None = None

    def enter(self) -> bool:
        """Join the folder's runs; True when no other run is active (leftovers are stale)."""
        if fcntl is None:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held for the run's life
        try:
            os.chmod(self.path, 0o644)
        except OSError:
            pass
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(self._file.fileno(), fcntl.LOCK_SH)
        return alone

    def leave(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None
