"""Progress reporting for long runs: panels, candidates, denoising steps.

The library reports through a small protocol; the CLI passes rich progress bars, Python users may
pass nothing (silent) or their own object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from ipprompt.story.textclean import strip_controls


class SafeConsole(Console):
    """A rich Console that never writes a control character it was given in a string.

    Every string rich prints (arguments to ``print``, table cells and titles) becomes ``Text``
    through ``render_str``; cleaning it there covers them all, while rich's own styling codes,
    added later, are untouched.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:  # type: ignore[override]
        return super().render_str(strip_controls(text), **kwargs)


@dataclass(frozen=True)
class WorkerState:
    """What one worker of a distributed run is doing now (a Ray actor, on some node)."""

    slot: int  # 0-based worker number, stable across restarts of the worker
    node: str  # host name or IP of the node it runs on
    pid: int  # its process (a restarted worker gets a new one)
    doing: str  # "loading the model", "panel 3: round 1", "idle"...
    panel: int | None = None
    done: int = 0  # candidates of this panel finished
    total: int = 0  # candidates of this panel planned so far


class RunProgress(Protocol):
    def indexing(self, done: int, total: int) -> None: ...
    def start_run(self, total_panels: int, denoising: bool = True) -> None: ...
    def start_panel(self, number: int, description: str) -> None: ...
    def candidates_added(self, n: int, steps: int = 0) -> None: ...
    def candidate_done(self) -> None: ...
    def step(self) -> None: ...
    def end_panel(self, reused: bool) -> None: ...
    def worker(self, state: WorkerState) -> None: ...
    def note(self, text: str) -> None: ...
    def close(self) -> None: ...


class SilentProgress:
    """For library use and tests: records notes, shows nothing."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def indexing(self, done: int, total: int) -> None:
        pass

    def start_run(self, total_panels: int, denoising: bool = True) -> None:
        pass

    def start_panel(self, number: int, description: str) -> None:
        pass

    def candidates_added(self, n: int, steps: int = 0) -> None:
        pass

    def candidate_done(self) -> None:
        pass

    def step(self) -> None:
        pass

    def end_panel(self, reused: bool) -> None:
        pass

    def worker(self, state: WorkerState) -> None:
        pass

    def note(self, text: str) -> None:
        self.notes.append(text)

    def close(self) -> None:
        pass


class RichProgress:
    """Three bars: panels of the story, candidates of this panel, denoising steps (NFE)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or SafeConsole(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<11}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._panels = self._candidates = self._steps = self._indexing = None
        self._workers: dict[int, TaskID] = {}
        self._started = False

    def indexing(self, done: int, total: int) -> None:
        """Theme images embedded so far (first run on a theme, or new images)."""
        self._ensure()
        if self._indexing is None:
            self._indexing = self.progress.add_task("indexing", total=total, info="theme images (CLIP)")
        self.progress.advance(self._indexing, done)

    def _ensure(self) -> None:
        if not self._started:
            self._started = True  # first: a Ctrl-C inside start() must still find it to stop
            self.progress.start()

    def start_run(self, total_panels: int, denoising: bool = True) -> None:
        self._ensure()
        self._panels = self.progress.add_task("panels", total=total_panels, info="")
        self._candidates = self.progress.add_task("candidates", total=0, info="")
        if denoising:  # the preview backend takes no denoising steps
            self._steps = self.progress.add_task("steps", total=0, info="transformer evaluations")

    def start_panel(self, number: int, description: str) -> None:
        # the bars' text columns read markup directly, not through the console: clean it here
        self.progress.update(self._panels, info=escape(strip_controls(f"panel {number}: {description[:40]}")))
        self.progress.reset(self._candidates, total=0, info="")
        if self._steps is not None:
            self.progress.reset(self._steps, total=0)

    def candidates_added(self, n: int, steps: int = 0) -> None:
        """A round of ``n`` candidates starts, planned to take ``steps`` denoising steps."""
        task = self.progress.tasks[self._candidates]
        self.progress.update(self._candidates, total=(task.total or 0) + n)
        if self._steps is not None:
            planned = self.progress.tasks[self._steps].total or 0
            self.progress.update(self._steps, total=planned + steps)

    def candidate_done(self) -> None:
        self.progress.advance(self._candidates)

    def step(self) -> None:
        if self._steps is not None:
            self.progress.advance(self._steps)

    def end_panel(self, reused: bool) -> None:
        self.progress.advance(self._panels)

    def worker(self, state: WorkerState) -> None:
        """One row per worker (its candidates bar); they replace the single-panel bars."""
        self._ensure()
        if not self._workers:
            for task in (self._candidates, self._steps):
                if task is not None:
                    self.progress.update(task, visible=False)
        info = escape(strip_controls(f"{state.node} pid {state.pid}: {state.doing}"[:70]))
        task = self._workers.get(state.slot)
        if task is None:
            task = self._workers[state.slot] = self.progress.add_task(f"worker {state.slot + 1}", total=0, info=info)
        self.progress.update(task, total=state.total, completed=state.done, info=info)

    def note(self, text: str) -> None:
        """Print a plain message (model ids and paths are user text: never markup)."""
        self.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        """Stop the bars and give the terminal back (the live display redirects stdout/stderr
        while it runs; a message printed after a Ctrl-C must reach the real stream)."""
        if self._started or self.progress.live.is_started:
            self._started = False
            self.progress.stop()
