"""The pass in a run folder: decide whether a panel's large image is current, make it, commit it.

What the runners call, once per panel after it was made, kept or its pick finished
(``apply_upscale_pass``). The grid-size image stays ``panels/NN.png`` (what the search chose,
what picks, ``eval`` and continuity use); the large panel is ``panels/NN-print.png`` and its record
is the panel entry's ``upscale``. Nothing is lost: a large panel that is replaced (a new pass, a
pick, a rerun, ``upscale = 1``) moves to ``history/`` first, as ``NN-<name>.print.png`` beside the
grid-size image it was made from when that moved there too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipprompt.atomic import atomic_save_image
from ipprompt.images import open_image
from ipprompt.runfolder.manifest import PanelEntry, RunManifest, UpscaleEntry
from ipprompt.upscale.flux_pass import PassOutput, run_pass
from ipprompt.upscale.pass_result import PassSettings, pass_key

if TYPE_CHECKING:
    from ipprompt.backends.base import Backend
    from ipprompt.pipeline.plan import PanelJob
    from ipprompt.progress import RunProgress
    from ipprompt.runfolder.folder import RunFolder

PRINT_SUFFIX = ".print.png"


def print_image_path(folder: "RunFolder", number: int) -> Path:
    """Where a panel's large image lives: ``panels/NN-print.png`` beside the grid-size ``NN.png``."""
    return folder.root / "panels" / f"{number:02d}-print.png"


def is_print_history(name: str) -> bool:
    """A history file holding a large panel (listed with, never instead of, the grid-size images)."""
    return name.endswith(PRINT_SUFFIX)


def retire_print_image(folder: "RunFolder", number: int, *, paired: Path | None = None, stem: str | None = None) -> Path | None:
    """Move the panel's large image to ``history/`` (named after ``paired``, the grid-size image's
    history file, when it moved too). Returns where it went, or None when there was none."""
    current = print_image_path(folder, number)
    if not current.is_file():
        return None
    if paired is not None:
        dest = paired.with_name(paired.name[: -len(".png")] + PRINT_SUFFIX)
        n = 2
        while dest.exists():
            dest = paired.with_name(f"{paired.name[: -len('.png')]}-{n}{PRINT_SUFFIX}")
            n += 1
    else:
        dest = folder.history_path(number, f"{stem or 'earlier'}.print")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(current, dest)
    return dest


def generator_identity(job: "PanelJob") -> dict[str, Any]:
    """What decides how the generator re-draws: backend, model, LoRAs, dtype, quantization, VAE tiling."""
    from ipprompt.backends.lora import lora_fingerprint

    s = job.settings
    return {
        "backend": s.backend,
        "model": s.model if s.backend != "preview" else None,
        "loras": [lora_fingerprint(x) for x in s.lora_specs],
        **{k: job.machine_key.get(k) for k in ("dtype", "quantize", "vae_tiling")},
    }


def pass_prompt(job: "PanelJob") -> str:
    """The panel's own words (prompt + style), without the grid instruction of the search's prompt."""
    return job.description or job.text


def pass_texts(jobs: list["PanelJob"]) -> list[str]:
    """Prompts the pass will encode: the runner encodes them with the panels' before freeing the text encoders."""
    return [pass_prompt(j) for j in jobs if PassSettings.of(j.settings).uses_flux]


def _set_upscale(folder: "RunFolder", number: int, record: UpscaleEntry | None) -> PanelEntry | None:
    result: dict[str, PanelEntry] = {}

    def change(manifest: RunManifest) -> None:
        entry = manifest.panel(number)
        if entry is not None:
            entry = entry.model_copy(update={"upscale": record})
            manifest.set_panel(entry)
            result["entry"] = entry

    folder.update(change)
    if "entry" in result:
        folder.write_record(result["entry"])
    return result.get("entry")


def clear_pass(folder: "RunFolder", number: int, stem: str | None = None) -> None:
    """Forget the panel's pass (the large image moves to history): its source image changed."""
    retire_print_image(folder, number, stem=stem)
    _set_upscale(folder, number, None)


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
        entry = (folder.read() or RunManifest()).panel(job.number)
        if entry is None or (entry.upscale is None and not print_image_path(folder, job.number).is_file()):
            return "off"
        folder.flush()
        clear_pass(folder, job.number, stem=entry.upscale.key if entry.upscale else None)
        return "removed"
    folder.flush()  # the panel's grid-size image and record must be on disk
    entry = (folder.read() or RunManifest()).panel(job.number)
    if entry is None or not entry.done or not entry.image:
        return "off"
    data = (folder.root / entry.image).read_bytes()
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


def compute_pass(task: PassTask, backend: "Backend | None", *, device: Any = None) -> PassDone:
    """Run a task (no file written): on this process's backend, or a Ray worker's."""
    from ipprompt.pipeline.execute import out_of_memory_is_a_user_error

    upscaler = None
    if task.settings.upscaler is not None:
        from ipprompt.upscale.upscaler import load_upscaler

        upscaler = load_upscaler(task.settings.upscaler, device=device)
    image = open_image(task.image, name=task.name)
    with out_of_memory_is_a_user_error(f"the print pass of panel {task.number}"):
        out = run_pass(image, task.settings, prompt=task.prompt, seed=task.seed, backend=backend, upscaler=upscaler)
    return PassDone(
        task, out, upscaler.label if upscaler else None, upscaler.sha256 if upscaler else None,
        getattr(backend, "name", None) if task.settings.uses_flux else None,
    )


def commit_pass(folder: "RunFolder", done: PassDone) -> UpscaleEntry:
    """Write the large panel (the one it replaces goes to history first), then its record."""
    task, out = done.task, done.output
    retire_print_image(folder, task.number, stem=task.old_key)
    path = print_image_path(folder, task.number)
    atomic_save_image(path, out.image)
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
    _set_upscale(folder, task.number, record)
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
    if progress is not None:
        progress.note(f"panel {job.number}: print pass {s.factor}x" + (f" at strength {s.strength:g}" if s.uses_flux else " (enlargement only)"))
    commit_pass(folder, compute_pass(task, backend() if s.uses_flux else None, device=device))
    return "made"
