"""The run folder's two locks: who is running on it, and who is writing to it now.

Temporary files are only stale when the process that wrote them is gone. Several processes may
share one run folder (two GPUs, disjoint ``--panels``), so a starting run must not delete the
temporary files of a live neighbour. Each run holds a shared ``flock`` on ``.active.lock``; a run
that can take it exclusively first knows it is alone and may clean up, then keeps it shared. The
kernel drops the lock when a process dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import os
import threading
import time
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


class LockTimeout(Exception):
    """The folder lock was not free within the wait."""


class FolderLock:
    """An exclusive lock on a run folder, across processes and threads, re-entrant in a thread.

    ``flock`` on a lock file that is never deleted (deleting it would let a waiter lock a file
    nobody else sees), held by one descriptor per ``FolderLock`` and opened only for the outermost
    hold. Two ``FolderLock`` objects, even in one process, exclude each other; the kernel drops
    the lock when a process dies, so a killed run never blocks the next. Standard library only:
    writing a storyboard page takes this lock, and rendering needs neither Pillow nor more.
    """

    POLL_S = 0.05

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._fallback: object | None = None

    def acquire(self) -> None:
        """Wait up to ``timeout`` seconds; ``LockTimeout`` then, ``OSError`` when the file cannot be opened."""
        if not self._threads.acquire(timeout=self.timeout):
            raise LockTimeout(str(self.path))
        try:
            if self._depth == 0:
                self._lock_file()
            self._depth += 1
        except BaseException:
            self._threads.release()
            raise

    def _lock_file(self) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            from filelock import FileLock, Timeout

            lock = FileLock(str(self.path), timeout=self.timeout)
            try:
                lock.acquire()
            except Timeout:
                raise LockTimeout(str(self.path)) from None
            self._fallback = lock
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(str(self.path)) from None
                time.sleep(self.POLL_S)
            except BaseException:
                os.close(fd)
                raise
        self._fd = fd

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            if self._fd is not None:
                os.close(self._fd)  # closing drops the lock
                self._fd = None
            if self._fallback is not None:  # pragma: no cover - Windows
                self._fallback.release()  # type: ignore[attr-defined]
                self._fallback = None
        self._threads.release()
