"""What runs inside the Ray cluster: one panel worker per GPU, and a board for their progress.

These are plain classes; ``ipprompt.pipeline.runners.ray_runner`` turns them into Ray actors, so this module
imports without Ray. A worker loads the generator and the CLIP encoder once, encodes every prompt
of the run once and frees the text encoders, then makes the panels it is sent. It never touches the
run folder: jobs arrive with their reference images' bytes and results go back as
``PanelResult``s (PIL images pickle), which only the driver commits. When Ray restarts a worker
that died, ``__init__`` runs again with the same arguments and the next panel loads the models
again, so a retried panel needs nothing from the dead process.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ipprompt.errors import IppromptError
from ipprompt.pipeline.core import PanelMaker
from ipprompt.pipeline.plan import PanelJob
from ipprompt.progress import WorkerState
from ipprompt.runfolder.manifest import PanelEntry

if TYPE_CHECKING:
    from ipprompt.pipeline.execute import PanelResult
    from ipprompt.upscale.apply import PassDone, PassTask
    from ipprompt.pipeline.finish_pick import FinishedPick
    from ipprompt.pipeline.settings import RunSettings

STEP_REPORT_S = 0.5  # denoising steps are reported at most this often (they can be ~10 ms apart)


class ProgressBoard:
    """The latest state of every worker, and notes they want shown; the driver polls it."""

    def __init__(self) -> None:
        self.states: dict[int, WorkerState] = {}
        self.notes: list[str] = []

    def post(self, state: WorkerState) -> None:
        self.states[state.slot] = state

    def note(self, text: str) -> None:
        self.notes.append(text)

    def read(self) -> tuple[dict[int, WorkerState], list[str]]:
        """Every worker's state, and the notes posted since the last read."""
        notes, self.notes = self.notes, []
        return dict(self.states), notes


class _Reporter:
    """The search's progress inside a worker, posted to the board (fire and forget)."""

    def __init__(self, worker: "PanelWorker", panel: int) -> None:
        self.worker = worker
        self.panel = panel
        self.done = self.total = self.steps = 0
        self._last = 0.0

    def _post(self, force: bool = True) -> None:
        now = time.monotonic()
        if force or now - self._last >= STEP_REPORT_S:
            self._last = now
            doing = f"panel {self.panel}: candidate {min(self.done + 1, self.total)}/{self.total}, step {self.steps}"
            self.worker.post(doing, self.panel, self.done, self.total)

    def candidates_added(self, n: int, steps: int = 0) -> None:
        self.total += n
        self._post()

    def candidate_done(self) -> None:
        self.done += 1
        self._post()

    def step(self) -> None:
        self.steps += 1
        self._post(force=False)


class PanelWorker:
    """A Ray actor's body: one ``PanelMaker`` (generator + scorer) on one GPU, or a share of a CPU."""

    def __init__(self, slot: int, settings: "RunSettings", texts: Sequence[str], use_encoder: bool, board: str | None) -> None:
        self.slot = slot
        self.settings = settings
        self.texts = list(dict.fromkeys(texts))
        self.use_encoder = use_encoder
        self.board_name = board  # the board is found by name: a handle argument would pin the
        self.board: Any = None  # actor's restart to an object-store entry (Ray issue 53727)
        self.node = socket.gethostname()
        self.maker: PanelMaker | None = None
        self.post("started")

    def _board(self) -> Any:
        if self.board is None and self.board_name is not None:
            import ray

            try:
                self.board = ray.get_actor(self.board_name)
            except ValueError:  # not registered yet (or the driver is gone): report next time
                pass
        return self.board

    def post(self, doing: str, panel: int | None = None, done: int = 0, total: int = 0) -> None:
        board = self._board()
        if board is not None:
            board.post.remote(WorkerState(self.slot, self.node, os.getpid(), doing, panel, done, total))

    def note(self, text: str) -> None:
        board = self._board()
        if board is not None:
            board.note.remote(f"worker {self.slot + 1} ({self.node}): {text}")

    def _device(self) -> str:
        import ray

        return "cuda" if ray.get_gpu_ids() else "cpu"  # Ray shows each GPU worker only its own GPU

    def load(self) -> dict[str, Any]:
        """Load the generator and CLIP once, encode the run's prompts, free the text encoders."""
        if self.maker is None:
            from ipprompt.backends.factory import create_encoder

            settings = self.settings.model_copy(update={"device": self._device()})
            encoder = None
            if self.use_encoder:
                encoder = create_encoder(settings, self.note)
                if encoder is None:
                    raise IppromptError(
                        f"Worker {self.slot + 1} on {self.node} cannot load the CLIP model '{self.settings.encoder}' the driver uses.",
                        "Every node needs the same models: a local folder at the same path, or the Hugging Face cache.",
                    )
            maker = PanelMaker(settings, self.note, encoder=encoder)
            self.post("loading the model")
            maker.ready(self.texts, f" on {self.node}")
            self.maker = maker
            self.post("idle")
        assert self.maker.backend is not None
        return {"node": self.node, "pid": os.getpid(), **self.maker.backend.stats()}

    def make(self, job: PanelJob, embeddings: dict[str, np.ndarray]) -> "PanelResult":
        """Make one panel; returns its ``PanelResult``."""
        from ipprompt.pipeline.threads import use_job_threads

        use_job_threads(job.machine_key)  # a CPU job computes with the local run's thread count
        self.load()
        assert self.maker is not None
        self.post(f"panel {job.number}: starting", job.number)
        result = self.maker.make(job, embeddings, _Reporter(self, job.number))
        result.machine = {**result.machine, "node": self.node}
        self.post("idle")
        return result

    def finish(self, job: PanelJob, entry: PanelEntry, embeddings: dict[str, np.ndarray]) -> "FinishedPick":
        """Finish the candidate the author picked from its preview; returns a ``FinishedPick``."""
        from ipprompt.pipeline.threads import use_job_threads

        use_job_threads(job.machine_key)
        self.load()
        assert self.maker is not None
        self.post(f"panel {job.number}: finishing pick #{entry.pick_to_finish}", job.number)
        finished = self.maker.finish(job, entry, embeddings, _Reporter(self, job.number))
        self.post("idle")
        return finished

    def print_pass(self, task: "PassTask") -> "PassDone":
        """Run one panel's print pass (``ipprompt.upscale``) on this worker's generator."""
        from ipprompt.upscale.apply import compute_pass

        self.load()
        assert self.maker is not None and self.maker.backend is not None
        reporter = _Reporter(self, task.number)
        self.post(f"panel {task.number}: print pass {task.settings.factor}x", task.number)
        done = compute_pass(task, self.maker.backend, device=self._device(), on_step=reporter.step)
        self.post("idle")
        return done
