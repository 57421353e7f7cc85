"""A run's progress, as server-sent events.

``run_story`` reports through the ``RunProgress`` protocol (the CLI draws rich bars from it);
``EventProgress`` is the same protocol writing into an ``EventHub`` instead, and the ``/events``
endpoint streams the hub to every open page. The hub keeps the last events with increasing ids,
so a page that reconnects (``Last-Event-ID``) misses nothing recent, and a page opened mid-run
sees where the run is. Denoising steps are counted, not sent one by one: a step event goes out at
most every ``STEP_EVERY`` seconds.

``EventProgress`` is also where a job is cancelled: every report first checks the job's flag, and
a cancelled job raises ``JobCancelled`` out of the run at its next report (the run folder then
holds what a Ctrl-C leaves: every finished panel, the current one pending).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from ipprompt.progress import WorkerState

KEEP = 500
STEP_EVERY = 0.25
HEARTBEAT = 15.0


class JobCancelled(Exception):
    """Raised inside a run when the author cancelled its job."""


class EventHub:
    """Thread-safe buffer of the latest events; workers publish, SSE streams read."""

    def __init__(self, keep: int = KEEP) -> None:
        self._events: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=keep)
        self._next = 1
        self._lock = threading.Lock()
        self.closed = False

    def publish(self, kind: str, data: dict[str, Any]) -> int:
        with self._lock:
            number = self._next
            self._next += 1
            self._events.append((number, kind, {**data, "time": time.time()}))
            return number

    def since(self, last: int) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            return [e for e in self._events if e[0] > last]

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._next - 1

    def close(self) -> None:
        self.closed = True


def format_event(number: int, kind: str, data: dict[str, Any]) -> str:
    """One event in the ``text/event-stream`` format (data is one JSON line)."""
    return f"id: {number}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def stream(hub: EventHub, last: int, disconnected: Callable[[], Any], poll: float = 0.1) -> AsyncIterator[str]:
    """Every event after ``last``, as they come, until the client leaves or the hub closes."""
    yield "retry: 1000\n\n"
    quiet = 0.0
    while not hub.closed:
        events = hub.since(last)
        for number, kind, data in events:
            last = number
            yield format_event(number, kind, data)
        if events:
            quiet = 0.0
        elif quiet >= HEARTBEAT:
            quiet = 0.0
            yield ": keep-alive\n\n"
        if await disconnected():
            return
        await asyncio.sleep(poll)
        quiet += poll


class EventProgress:
    """``RunProgress`` for one job: publishes what the run reports, and stops it when cancelled."""

    def __init__(self, hub: EventHub, job_id: int, cancelled: Callable[[], bool]) -> None:
        self.hub = hub
        self.job = job_id
        self.cancelled = cancelled
        self.panels_total = 0
        self.panels_done = 0
        self.panel: int | None = None
        self.candidates_total = 0
        self.candidates_done = 0
        self.steps_total = 0
        self.steps_done = 0
        self._last_step = 0.0

    def _check(self) -> None:
        if self.cancelled():
            raise JobCancelled()

    def _send(self, kind: str, **data: Any) -> None:
        self.hub.publish(kind, {"job": self.job, **data})

    def _state(self) -> dict[str, Any]:
        return {
            "panel": self.panel,
            "panels_done": self.panels_done,
            "panels_total": self.panels_total,
            "candidates_done": self.candidates_done,
            "candidates_total": self.candidates_total,
            "steps_done": self.steps_done,
            "steps_total": self.steps_total,
        }

    def indexing(self, done: int, total: int) -> None:
        self._check()
        self._send("indexing", done=done, total=total)

    def start_run(self, total_panels: int, denoising: bool = True) -> None:
        self._check()
        self.panels_total, self.panels_done = total_panels, 0
        self._send("run", **self._state())

    def start_panel(self, number: int, description: str) -> None:
        self._check()
        self.panel = number
        self.candidates_total = self.candidates_done = self.steps_total = self.steps_done = 0
        self._send("panel", description=description, **self._state())

    def candidates_added(self, n: int, steps: int = 0) -> None:
        self._check()
        self.candidates_total += n
        self.steps_total += steps
        self._send("progress", **self._state())

    def candidate_done(self) -> None:
        self._check()
        self.candidates_done += 1
        self._send("progress", **self._state())

    def step(self) -> None:
        self._check()
        self.steps_done += 1
        now = time.monotonic()
        if now - self._last_step >= STEP_EVERY:
            self._last_step = now
            self._send("progress", **self._state())

    def end_panel(self, reused: bool) -> None:
        self.panels_done += 1
        self._send("panel_done", reused=reused, **self._state())
        self._check()

    def worker(self, state: WorkerState) -> None:
        self._check()
        self._send("worker", **asdict(state))

    def note(self, text: str) -> None:
        self._send("note", text=text)

    def close(self) -> None:
        pass
