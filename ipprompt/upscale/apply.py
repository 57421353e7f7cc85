"""The pass in a run folder: decide whether a panel's large image is current, make it, commit it.

What the runners call, once per panel after it was made, kept or its pick finished
(``apply_upscale_pass``). Where the large image lives and how it is replaced without loss is the
run folder's business (``ipprompt.runfolder.print_writes``); this module decides and computes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ipprompt.backends.registry import runs_no_model
from ipprompt.images import open_image, probe_image
from ipprompt.runfolder.manifest import RunManifest, UpscaleEntry
from ipprompt.runfolder.print_writes import forget_print_image, print_image_path, write_print_image
from ipprompt.upscale.flux_pass import PassOutput, run_pass
from ipprompt.upscale.pass_result import PassSettings, pass_key

if TYPE_CHECKING:
    from ipprompt.backends.base import Backend
    from ipprompt.pipeline.plan import PanelJob
    from ipprompt.progress import RunProgress
    from ipprompt.runfolder.folder import RunFolder


def generator_identity(job: "PanelJob") -> dict[str, Any]:
    """What decides how the generator re-draws: backend, model, LoRAs, dtype, quantization, VAE tiling."""
    from ipprompt.backends.lora import lora_fingerprint

    s = job.settings
    return {
        "backend": s.backend,
        "model": None if runs_no_model(s.backend) else s.model,
        "loras": [lora_fingerprint(x) for x in s.lora_specs],
        **{k: job.machine_key.get(k) for k in ("dtype", "quantize", "vae_tiling")},
    }


def pass_prompt(job: "PanelJob") -> str:
    """The panel's own words (prompt + style), without the grid instruction of the search's prompt."""
    return job.description or job.text


def pass_texts(jobs: list["PanelJob"]) -> list[str]:
    """Prompts the pass will encode: the runner encodes them with the panels' before freeing the text encoders."""
    return [pass_prompt(j) for j in jobs if PassSettings.of(j.settings).uses_flux]


@dataclass(frozen=True)
class PassTask:
    """One panel's pass to run: plain data, picklable, so a Ray worker can run it too."""

    number: int
    image: bytes = field(repr=False)  # the grid-size panel (PNG bytes)
    name: str  # its path in the run folder, for messages
    source_sha256: str
    settings: PassSettings
    prompt: str
    seed: int
    key: str
    old_key: str | None


def plan_pass(folder: "RunFolder", job: "PanelJob") -> "PassTask | str":
    """What panel ``job.number``'s pass needs: a ``PassTask``, or what happened without one
    (``"off"``, ``"removed"``: ``upscale = 1`` moved an earlier large image to history, ``"kept"``:
    its ``upscale_key`` is unchanged and its file exists)."""
    settings = PassSettings.of(job.settings)
    if not settings.enabled:
        # A panel made in this run has no large image (``begin_panel`` moved it): no need to wait
        # for its commit, so panels still overlap their writes with the next panel's generation.
        entry = (folder.read(full_panels=()) or RunManifest()).panel(job.number)  # the index has ``upscale``
        if entry is None or (entry.upscale is None and not print_image_path(folder, job.number).is_file()):
            return "off"
        folder.flush()
        forget_print_image(folder, job.number, stem=entry.upscale.key if entry.upscale else None)
        return "removed"
    folder.flush()  # the panel's grid-size image and record must be on disk
    entry = (folder.read(full_panels=[job.number]) or RunManifest()).panel(job.number)  # one record, not all
    if entry is None or not entry.done or not entry.image:
        return "off"
    data = folder.resolve(entry.image, "a panel's image").read_bytes()  # never a path outside the run folder
    source_sha = hashlib.sha256(data).hexdigest()
    upscaler_sha = None
    if settings.upscaler is not None:
        from ipprompt.upscale.upscaler import check_upscaler_path, file_sha256

        upscaler_sha = file_sha256(check_upscaler_path(settings.upscaler))
    seed = entry.seed if entry.seed is not None else job.seed
    prompt = pass_prompt(job)
    key = pass_key(settings, source_sha, text=prompt, seed=seed, upscaler_sha256=upscaler_sha, generator=generator_identity(job))
    old = entry.upscale
    if old is not None and old.key == key and print_image_path(folder, job.number).is_file():
        return "kept"
    return PassTask(job.number, data, entry.image, source_sha, settings, prompt, seed, key, old.key if old else None)


@dataclass
class PassDone:
    """A task's result: the large panel, what it cost, and what made it (for the record)."""

    task: PassTask
    output: PassOutput
    upscaler: str | None
    upscaler_sha256: str | None
    backend: str | None


def compute_pass(task: PassTask, backend: "Backend | None", *, device: Any = None, on_step: Callable[[], None] | None = None) -> PassDone:
    """Run a task (no file written): on this process's backend, or a Ray worker's."""
    from ipprompt.pipeline.execute import out_of_memory_is_a_user_error

    upscaler = None
    if task.settings.upscaler is not None:
        from ipprompt.upscale.upscaler import load_upscaler

        upscaler = load_upscaler(task.settings.upscaler, device=device)
    image = open_image(task.image, name=task.name)
    with out_of_memory_is_a_user_error(f"the print pass of panel {task.number}"):
        out = run_pass(image, task.settings, prompt=task.prompt, seed=task.seed, backend=backend, upscaler=upscaler, on_step=on_step)
    return PassDone(
        task, out, upscaler.label if upscaler else None, upscaler.sha256 if upscaler else None,
        getattr(backend, "name", None) if task.settings.uses_flux else None,
    )


def commit_pass(folder: "RunFolder", done: PassDone) -> UpscaleEntry:
    """Write the large panel (the one it replaces goes to history first), then its record."""
    task, out = done.task, done.output
    path = print_image_path(folder, task.number)
    s = task.settings
    record = UpscaleEntry(
        key=task.key,
        image=folder.rel(path),
        source_sha256=task.source_sha256,
        factor=s.factor,
        strength=s.strength if s.uses_flux else 0.0,
        tile=s.tile,
        overlap=s.overlap,
        tiles=len(out.tiles),
        steps=s.steps_per_tile,
        width=out.image.width,
        height=out.image.height,
        upscaler=done.upscaler,
        upscaler_sha256=done.upscaler_sha256,
        backend=done.backend,
        nfe=out.nfe,
        seconds=out.seconds,
    )
    write_print_image(folder, task.number, out.image, record, old_key=task.old_key)
    return record


def apply_upscale_pass(
    folder: "RunFolder",
    job: "PanelJob",
    backend: Callable[[], "Backend"],
    progress: "RunProgress | None" = None,
    *,
    device: Any = None,
) -> str:
    """Bring panel ``job.number``'s large image up to date with the pass settings, in this process.

    Returns ``"off"``, ``"removed"``, ``"kept"`` (see ``plan_pass``) or ``"made"``. ``backend`` is
    called only when FLUX must re-detail, so a run that only keeps panels loads no model for an
    unchanged pass.
    """
    task = plan_pass(folder, job)
    if isinstance(task, str):
        return task
    s = task.settings
    on_step = None
    if progress is not None:
        progress.note(f"panel {job.number}: print pass {s.factor}x" + (f" at strength {s.strength:g}" if s.uses_flux else " (enlargement only)"))
        if s.uses_flux:
            from ipprompt.upscale.pass_result import pass_cost

            _, width, height = probe_image(task.image, name=task.name)  # the header: compute_pass decodes it
            tiles, nfe, _ = pass_cost(s, width, height)
            progress.candidates_added(tiles, nfe)  # the steps bar counts the pass's steps too
            on_step = progress.step
    commit_pass(folder, compute_pass(task, backend() if s.uses_flux else None, device=device, on_step=on_step))
    return "made"
