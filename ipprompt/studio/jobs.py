"""The studio's one queue: generation jobs, one background worker per device, visible and cancellable.

A GPU makes one panel at a time, so actions that generate (run, reroll, regenerate, finish a pick)
are queued rather than started: the page shows the queue, and the author can cancel a job that
waits (it is dropped) or one that runs (it stops at its next progress report; what it finished
stays). Every change of a job's state is published as a ``job`` event.

The CLI may work on the same run folder meanwhile: before a job starts, the worker waits while
another process runs on the folder (the folder's ``.active.lock``, which every run holds shared),
so a reroll asked for during a ``story run`` follows it instead of racing it. Whatever still
overlaps is made safe by the run folder itself: every manifest change is a locked
read-modify-write, and a replaced panel image always goes to ``history/``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipprompt.errors import IppromptError
from ipprompt.runfolder.lock import ACTIVE_LOCK
from ipprompt.studio.events import EventHub, EventProgress, JobCancelled

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no waiting for other processes
    fcntl = None  # type: ignore[assignment]

Work = Callable[[EventProgress, str], "str | None"]
WAIT_POLL = 0.5


@dataclass
class Job:
    id: int
    kind: str  # run | reroll | regenerate | finish
    label: str
    work: Work
    state: str = "queued"  # queued | waiting | running | done | failed | cancelled
    message: str | None = None
    device: str | None = None
    created: float = field(default_factory=time.time)
    cancel_requested: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label, "state": self.state, "message": self.message, "device": self.device}

    @property
    def over(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


def folder_busy(root: Path) -> bool:
    """True while another process runs on the run folder (it holds ``.active.lock`` shared)."""
    path = root / ACTIVE_LOCK
    if fcntl is None or not path.exists():
        return False
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False


class JobQueue:
    """Jobs in the order they were asked for; each device's worker takes the next one."""

    def __init__(self, hub: EventHub, root: Path, devices: list[str] | None = None) -> None:
        self.hub = hub
        self.root = Path(root)
        self._jobs: list[Job] = []
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._closed = False
        self._workers = [
            threading.Thread(target=self._work, args=(device,), name=f"ipprompt-studio-{device}", daemon=True) for device in (devices or ["auto"])
        ]
        for worker in self._workers:
            worker.start()

    def _publish(self, job: Job) -> None:
        self.hub.publish("job", job.to_json())

    def submit(self, kind: str, label: str, work: Work) -> Job:
        with self._cond:
            if self._closed:
                raise IppromptError("The studio is shutting down; nothing more is queued.", "Start it again.")
            job = Job(next(self._ids), kind, label, work)
            self._jobs.append(job)
            self._cond.notify_all()
        self._publish(job)
        return job

    def jobs(self) -> list[Job]:
        with self._cond:
            return list(self._jobs)

    def get(self, job_id: int) -> Job | None:
        with self._cond:
            return next((j for j in self._jobs if j.id == job_id), None)

    def cancel(self, job_id: int) -> Job:
        with self._cond:
            job = next((j for j in self._jobs if j.id == job_id), None)
            if job is None:
                raise IppromptError(f"There is no job {job_id}.", "The queue on the page lists the jobs.")
            if job.over:
                return job
            job.cancel_requested = True
            if job.state == "queued":
                job.state, job.message = "cancelled", "cancelled before it started"
            self._cond.notify_all()
        self._publish(job)
        return job

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """For tests and shutdown: True once no job is queued or running."""
        end = time.monotonic() + timeout
        with self._cond:
            while any(not j.over for j in self._jobs):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Cancel what waits or runs and let the workers end."""
        with self._cond:
            self._closed = True
            pending = [j for j in self._jobs if not j.over]
        for job in pending:
            self.cancel(job.id)
        with self._cond:
            self._cond.notify_all()

    def _next(self, device: str) -> Job | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                job = next((j for j in self._jobs if j.state == "queued"), None)
                if job is not None:
                    job.state, job.device = "running", device
                    return job
                self._cond.wait()

    def _wait_for_folder(self, job: Job) -> bool:
        """Wait while another process runs on the folder; False when the job was cancelled meanwhile."""
        said = False
        while folder_busy(self.root):
            if not said:
                job.state, job.message = "waiting", "another run is working on this folder; this job starts when it ends"
                self._publish(job)
                said = True
            if job.cancel_requested:
                return False
            time.sleep(WAIT_POLL)
        if said:
            job.state, job.message = "running", None
        return not job.cancel_requested

    def _work(self, device: str) -> None:
        while True:
            job = self._next(device)
            if job is None:
                return
            self._publish(job)
            try:
                if not self._wait_for_folder(job):
                    raise JobCancelled()
                self._publish(job)
                job.message = job.work(EventProgress(self.hub, job.id, lambda job=job: job.cancel_requested), device)
                job.state = "done"
            except JobCancelled:
                job.state, job.message = "cancelled", "cancelled; finished panels are kept, run again to resume"
            except IppromptError as error:
                job.state, job.message = "failed", f"{error.message} {error.hint or ''}".strip()
            except Exception as error:  # noqa: BLE001 - a failed job must not kill the worker
                job.state, job.message = "failed", f"{type(error).__name__}: {error}"
            with self._cond:
                self._cond.notify_all()
            self._publish(job)
