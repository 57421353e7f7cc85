"""Run a story's panels on Ray: one worker per GPU, on this machine or across a cluster.

``RayRunner`` keeps ``LocalRunner``'s contract (``run(jobs, force=) -> Outcome``) and bookkeeping
(a panel whose key is unchanged is kept, a continuity job gets its previous panel's image, each
result is committed as soon as it arrives); only *where* panels are made changes. The driver (this
process) is the only writer of the run folder: workers get each job with its reference images'
bytes through Ray's object store and send back a ``PanelResult``, so they need no shared
filesystem.

Scheduling is done by the driver: a panel goes to the next idle worker, in story order. A
continuity job waits until the panel before it is committed, then travels with that image's bytes;
independent panels run side by side. A panel is the unit of work: its arrangements are not spread
over workers (a round's previews decide the next round, so splitting a panel would move images
between workers every round; with as many panels as workers, whole panels keep every GPU busy).

Fault tolerance comes from Ray: workers are actors with unlimited restarts and retried tasks, so a
worker that dies mid-panel is started again (it loads the models again) and its panel is made
again; panels already committed are never made twice. Ctrl-C kills the workers; the panels they
were making stay pending in the manifest and the next run makes them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ipprompt.backends.factory import MachineOptions
from ipprompt.backends.registry import runs_no_model
from ipprompt.errors import IppromptError
from ipprompt.pipeline.core import Action, decide, theme_embeddings
from ipprompt.pipeline.plan import PanelJob
from ipprompt.pipeline.runners.local import Outcome
from ipprompt.progress import RunProgress, WorkerState
from ipprompt.runfolder.folder import RunFolder
from ipprompt.runfolder.manifest import RunManifest
from ipprompt.upscale.apply import pass_texts

if TYPE_CHECKING:
    from ipprompt.encoders.clip import ClipEncoder
    from ipprompt.pipeline.settings import RunSettings
    from ipprompt.theme.library import ThemeLibrary

TASK_RETRIES = 3  # a panel is tried again this often when its worker dies
POLL_S = 0.25  # how often the driver refreshes the workers' progress while it waits
INSTALL_HINT = 'Install the extra: pip install "ipprompt[ray]"'


def import_ray() -> Any:
    """Ray, or a clear error saying how to install it (it is an optional extra)."""
    try:
        import ray
    except ImportError:
        raise IppromptError("--ray needs Ray, which is not installed.", INSTALL_HINT) from None
    return ray


def check_ray_options(address: str | None, workers: int | None, machine: MachineOptions) -> None:
    """Refuse impossible Ray options before anything loads (the machine options are checked by
    each worker, on its own node: the driver may have no GPU at all)."""
    if address is None:
        if workers is not None:
            raise IppromptError("--workers needs --ray.", "Example: --ray local --workers 2")
        return
    import_ray()
    if not address.strip():
        raise IppromptError("--ray needs auto, local or a cluster address.", "Example: --ray auto, --ray local, --ray 10.0.0.5:6379")
    if workers is not None and workers < 1:
        raise IppromptError(f"--workers {workers}: at least 1.", "Leave it out for one worker per GPU.")
    if machine.device != "auto":
        raise IppromptError(
            f"--device {machine.device} cannot be used with --ray: Ray gives each worker its own GPU (or the CPU).",
            "Leave --device out; limit the workers with --workers N.",
        )


def connect(ray: Any, address: str) -> bool:
    """Join or start Ray; True when this call connected (the run then disconnects at its end).

    ``auto``: RAY_ADDRESS, else a cluster started with ``ray start`` on this machine, else a new
    local instance; ``local``: always a new local instance; anything else: that cluster's address.
    """
    if ray.is_initialized():
        return False
    target = None if address == "auto" else address
    try:
        ray.init(address=target, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise IppromptError(
            f"Cannot start or join Ray (--ray {address}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            "Start a cluster with `ray start --head` and pass its address (or set RAY_ADDRESS), or use --ray local.",
        ) from None
    return True


@dataclass
class WorkerPlan:
    """How many workers, with which Ray resources, and the dtype they will compute in."""

    count: int
    resources: dict[str, float]
    dtype: str | None
    notes: list[str] = field(default_factory=list)


def plan_workers(cluster: dict[str, float], backend: str, workers: int | None) -> WorkerPlan:
    """One worker per GPU of the cluster (at most ``workers``); without GPUs, ``workers`` CPU
    workers (default 1), each with an equal share of the CPUs (its PyTorch thread count)."""
    from ipprompt.backends.registry import backend_spec

    spec = backend_spec(backend)
    gpus = int(cluster.get("GPU", 0)) if spec.denoises else 0
    cpus = float(cluster.get("CPU", 1)) or 1.0
    if gpus:
        count = min(workers or gpus, gpus)
        notes = [f"the cluster has {gpus} GPU(s): {count} worker(s), one GPU each"] if workers and workers > gpus else []
        return WorkerPlan(count, {"num_gpus": 1, "num_cpus": min(1.0, cpus / count)}, spec.dtype_on_gpu, notes)
    count = workers or 1
    return WorkerPlan(count, {"num_cpus": cpus / count}, "float32" if spec.denoises else None)


class WorkerPool:
    """The Ray actors of one run and the board they post their progress to."""

    def __init__(self, ray: Any, plan: WorkerPlan, settings: "RunSettings", texts: Sequence[str], use_encoder: bool) -> None:
        from ipprompt.pipeline.runners.ray_worker import PanelWorker, ProgressBoard

        self.ray = ray
        name = f"ipprompt-progress-{uuid.uuid4().hex[:12]}"
        self.board = ray.remote(num_cpus=0)(ProgressBoard).options(name=name).remote()
        actor = ray.remote(max_restarts=-1, max_task_retries=TASK_RETRIES, **plan.resources)(PanelWorker)
        self.actors = [actor.remote(slot, settings, list(texts), use_encoder, name) for slot in range(plan.count)]
        self.idle = list(range(plan.count))
        self._shown: dict[int, WorkerState] = {}

    def show(self, progress: RunProgress) -> None:
        """Pass the workers' latest states (and their notes) to the driver's progress."""
        try:
            states, notes = self.ray.get(self.board.read.remote(), timeout=10)
        except Exception:  # a slow board never stops the run; progress catches up next time
            return
        report = getattr(progress, "worker", None)
        for slot, state in sorted(states.items()):
            if report is not None and self._shown.get(slot) != state:
                report(state)
                self._shown[slot] = state
        for text in notes:
            progress.note(text)

    def stop(self) -> None:
        """Kill every worker (no restart): on Ctrl-C their unfinished panels stay pending."""
        for actor in [*self.actors, self.board]:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:
                pass


class RayRunner:
    """Executes jobs on Ray actors, committing each panel as soon as its result arrives."""

    def __init__(
        self,
        folder: RunFolder,
        settings: "RunSettings",
        library: "ThemeLibrary | None",
        encoder: "ClipEncoder | None",
        progress: RunProgress,
        *,
        address: str = "auto",
        workers: int | None = None,
    ) -> None:
        self.folder = folder
        self.settings = settings
        self.library = library
        self.encoder = encoder
        self.progress = progress
        self.address = address
        self.workers = workers
        self._pass_texts: list[str] = []

    def run(self, jobs: Sequence[PanelJob], *, force: bool = False, remake_picked: bool = False) -> Outcome:
        from ipprompt.backends.registry import backend_spec

        ray = import_ray()
        self.progress.start_run(len(jobs), denoising=backend_spec(self.settings.backend).denoises)
        connected = connect(ray, self.address)
        pool: WorkerPool | None = None
        try:
            plan = plan_workers(ray.cluster_resources(), self.settings.backend, self.workers)
            for text in plan.notes:
                self.progress.note(text)
            jobs = [rekey(job, plan.dtype) for job in jobs]
            self._pass_texts = pass_texts(list(jobs))  # the print pass's prompts, kept panels' too
            state = _Schedule(list(jobs), force, remake_picked)
            self._dispatch(state, None)
            while state.pending or state.inflight:
                if state.pending and pool is None:
                    pool = self._start(ray, plan, state)
                    self._dispatch(state, pool)
                if not state.inflight:
                    raise RuntimeError(f"panels {[j.number for j in state.pending]} wait for panels that are not made")
                ready, _ = ray.wait(list(state.inflight), num_returns=1, timeout=POLL_S)
                assert pool is not None
                pool.show(self.progress)
                for ref in ready:
                    slot, job = state.inflight.pop(ref)
                    result = _result(ray, ref, job, slot)
                    if job.number in state.finishing:
                        self.folder.commit_finished_pick(job.number, result)
                        state.outcome.finished.append(job.number)
                    else:
                        self.folder.commit_async(replace(result, job=job))  # as the local runner does
                        state.outcome.generated.append(job.number)
                    state.finished.add(job.number)
                    self.progress.end_panel(reused=False)
                    pool.idle.append(slot)
                if ready:
                    if any(j.waiting for j in state.pending):
                        self.folder.flush()  # a continuity panel reads its predecessor's image
                    self._dispatch(state, pool)
            pool = self._print_passes(ray, plan, jobs, pool)
            if pool is not None:
                pool.show(self.progress)
        finally:
            self.folder.flush()
            if pool is not None:
                pool.stop()
            if connected:
                ray.shutdown()
        state.outcome.generated.sort()
        return state.outcome

    def _start(self, ray: Any, plan: WorkerPlan, state: "_Schedule") -> WorkerPool:
        """Start the workers, no more than there are chains of panels that can run side by side."""
        waiting = {j.number for j in state.pending}
        heads = sum(1 for j in state.pending if not (j.waiting and j.continuity_from in waiting))
        plan = replace(plan, count=max(1, min(plan.count, heads)))
        texts = [j.text for j in state.pending] + self._pass_texts
        return WorkerPool(ray, plan, self.settings, texts, self.encoder is not None)

    def _print_passes(self, ray: Any, plan: WorkerPlan, jobs: Sequence[PanelJob], pool: "WorkerPool | None") -> "WorkerPool | None":
        """Every panel's pass once its panel is committed: enlargement alone (or the preview
        backend) here on the driver, FLUX re-detailing on the workers (started if none is)."""
        from ipprompt.upscale.apply import PassTask, commit_pass, compute_pass, plan_pass

        tasks = [t for t in (plan_pass(self.folder, j) for j in jobs) if isinstance(t, PassTask)]
        on_workers = not runs_no_model(self.settings.backend)
        remote = [t for t in tasks if t.settings.uses_flux and on_workers]
        local = None
        for task in tasks:
            if not (task.settings.uses_flux and on_workers):
                if task.settings.uses_flux and local is None:  # a backend that runs no model: cheap here
                    from ipprompt.backends.factory import create_backend

                    local = create_backend(self.settings, self.progress.note)
                commit_pass(self.folder, compute_pass(task, local if task.settings.uses_flux else None))
        if not remote:
            return pool
        if pool is None:
            pool = WorkerPool(ray, replace(plan, count=max(1, min(plan.count, len(remote)))), self.settings, self._pass_texts, False)
        inflight: dict[Any, int] = {}
        waiting = list(remote)
        while waiting or inflight:
            while waiting and pool.idle:
                slot = pool.idle.pop(0)
                inflight[pool.actors[slot].print_pass.remote(waiting.pop(0))] = slot
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
            pool.show(self.progress)
            for ref in ready:
                slot = inflight.pop(ref)
                commit_pass(self.folder, _result(ray, ref, None, slot))
                pool.idle.append(slot)
        return pool

    def _dispatch(self, state: "_Schedule", pool: WorkerPool | None) -> None:
        """Keep what ``decide`` keeps, and send the rest to idle workers, in story order."""
        manifest = self.folder.read(full_panels=[j.number for j in state.pending]) or RunManifest()  # the rest: index entries
        in_run = {j.number for j in state.pending} | {j.number for _, j in state.inflight.values()}
        for job in list(state.pending):
            if job.waiting and job.continuity_from in in_run and job.continuity_from not in state.finished:
                continue  # its previous panel is still to be made in this run
            decision = decide(self.folder, manifest, job, force=state.force, remake_picked=state.remake_picked)
            resolved = decision.job
            if decision.action in (Action.KEEP, Action.KEEP_PICKED):
                state.pending.remove(job)
                state.finished.add(job.number)
                (state.outcome.kept_picked if decision.action is Action.KEEP_PICKED else state.outcome.reused).append(job.number)
                self.progress.start_panel(job.number, decision.label)
                self.progress.end_panel(reused=True)
                continue
            if pool is None or not pool.idle:
                continue
            slot = pool.idle.pop(0)
            # Every reference travels as bytes, the previous panel's image (continuity) too.
            embeddings = theme_embeddings(self.library, resolved) if self.encoder is not None else {}
            if decision.action is Action.FINISH_PICK:
                ref = pool.actors[slot].finish.remote(resolved.with_reference_bytes(), decision.old, embeddings)
                state.finishing.add(job.number)
            else:
                self.folder.begin_panel(job.number, job.overlay, job.reroll)
                ref = pool.actors[slot].make.remote(resolved.with_reference_bytes(), embeddings)
            state.pending.remove(job)
            state.inflight[ref] = (slot, resolved)


@dataclass
class _Schedule:
    pending: list[PanelJob]
    force: bool
    remake_picked: bool
    inflight: dict[Any, tuple[int, PanelJob]] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    finishing: set[int] = field(default_factory=set)  # panels whose picked preview is being finished
    outcome: Outcome = field(default_factory=Outcome)


def rekey(job: PanelJob, dtype: str | None) -> PanelJob:
    """The job as the workers will make it: their compute dtype (decided by their GPUs, not the
    driver's) is part of what decides the pixels, so it is part of the key."""
    if job.machine_key.get("dtype") == dtype:
        return job
    return replace(job, machine_key={**job.machine_key, "dtype": dtype})


def _result(ray: Any, ref: Any, job: PanelJob | None, slot: int) -> Any:
    """A worker's result; a user error raised on the worker is raised here as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, IppromptError):
            raise exc.cause from None
        raise
    except ray.exceptions.RayActorError:
        raise IppromptError(
            f"Worker {slot + 1} died {TASK_RETRIES + 1} times while making " + (f"panel {job.number}." if job is not None else "a print pass."),
            "Finished panels are kept. Look at the Ray logs (/tmp/ray/session_latest/logs on the worker's node), then run the command again.",
        ) from None
