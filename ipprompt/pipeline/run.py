"""One story run: from a story file to a resumable run folder and its storyboard.

``run_story`` is the library entry point; ``ipprompt story run`` is a thin skin over it. Numbered
steps, as in diffusers pipelines:

1. load the story, apply overrides (validated like the story's own [generation] table) and refuse
   impossible machine options before anything loads (``check_inputs``);
2. claim the run folder: refuse a foreign folder, clean a killed run's temporary files, rebuild a
   damaged manifest from the panels' own records;
3. open the theme library and the encoder (CLIP, or lexical retrieval when none is available);
4. write the manifest (every panel pending that is not done) before any panel is made;
5. plan every selected panel (pure: ``plan_panels``);
6. execute the jobs (``LocalRunner`` here, ``RayRunner`` across GPUs and machines with ``ray``):
   panels whose key matches a finished panel are kept; the generator loads only if something is left;
7. render the storyboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import ipprompt
from ipprompt.backends.base import Backend
from ipprompt.backends.factory import MachineOptions, check_inputs, create_encoder, planned_dtype
from ipprompt.dvp.ipprompter import reference_problems
from ipprompt.errors import IppromptError
from ipprompt.runfolder.manifest import RunManifest, StoryInfo
from ipprompt.pipeline.plan import PanelJob, overlay_of, plan_panels
from ipprompt.progress import RunProgress, SilentProgress
from ipprompt.pipeline.runners.ray_runner import RayRunner, check_ray_options
from ipprompt.runfolder.folder import RunFolder, overlay_fields, pending_entry
from ipprompt.pipeline.runners.local import LocalRunner
from ipprompt.story.loading import FAST_DEFAULTS, Generation, Story, load_story
from ipprompt.upscale.checks import check_pass

MIN_THEME_IMAGES = 3


@dataclass
class RunResult:
    out: Path
    manifest: RunManifest
    generated: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    storyboard: Path | None = None
    finished: list[int] = field(default_factory=list)  # kept panels whose picked preview this run finished


def parse_panel_selection(text: str, total: int) -> list[int]:
    """``"1-3,5"`` -> [1, 2, 3, 5]; panel numbers start at 1, as on the storyboard."""
    chosen: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
            else:
                lo = hi = int(part)
        except ValueError:
            raise IppromptError(f"--panels: '{part}' is not a panel number or range.", "Example: --panels 1-3,5") from None
        if lo > hi:
            raise IppromptError(f"--panels: '{part}' is a reversed range.", f"Write it as {hi}-{lo}.")
        if lo < 1 or hi > total:
            raise IppromptError(f"--panels: '{part}' is outside 1-{total}.", f"The story has {total} panels.")
        chosen.update(range(lo, hi + 1))
    if not chosen:
        raise IppromptError("--panels selects no panel.", "Example: --panels 1-3,5")
    return sorted(chosen)


def apply_overrides(generation: Generation, overrides: dict[str, Any]) -> Generation:
    """The story's [generation] with command-line values on top, validated by the same schema."""
    given = {k: v for k, v in overrides.items() if v is not None}
    # Only what the story wrote, so that keys with mode-dependent defaults (--fast) follow the mode;
    # a --fast given here also outranks the story's steps/preview_step (not this command's own).
    written = generation.model_dump(exclude_unset=True)
    if given.get("fast"):
        written = {k: v for k, v in written.items() if k not in FAST_DEFAULTS}
    try:
        return Generation.model_validate({**written, **given})
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            key = str(e["loc"][0]) if e["loc"] else ""
            option = {"loras": "lora"}.get(key, key).replace("_", "-")  # the option's name, not the key's
            msg = e.get("ctx", {}).get("error", e["msg"])
            problems.append(f"--{option} {given.get(key)!r}: {msg}")
        raise IppromptError("Invalid option: " + "; ".join(problems), "See `ipprompt story run --help`.") from None


def open_theme(story: Story, encoder: Any | None, progress: RunProgress) -> Any:
    """The story's theme library, indexed for ``encoder``; too small a theme is a user error."""
    from ipprompt.theme.library import ThemeLibrary

    library = ThemeLibrary.open(story.doc.theme, encoder, relative_to=story.folder, progress=progress.indexing)
    for note in library.sync_report.notes:
        progress.note(note)
    for refusal in library.sync_report.refused:
        progress.note(f"skipped theme file {refusal.line()}")
    if len(library) < MIN_THEME_IMAGES:
        raise IppromptError(
            f"Theme {library.path} has {len(library)} image(s); at least {MIN_THEME_IMAGES} are needed.",
            "Add reference images: `ipprompt theme add THEME IMAGES...` or copy images into the folder.",
        )
    return library


def describe_run(manifest: RunManifest, story: Story, settings: Generation, library: Any, encoder: Any | None, machine: MachineOptions) -> None:
    """Run-level facts, and every panel's story text as the story says now (kept panels too)."""
    manifest.tool = f"ipprompt {ipprompt.__version__}"
    manifest.story = StoryInfo(
        title=story.title,
        path=str(story.path),
        style=story.style,
        characters={cid: {"name": story.display_name(cid), "description": c.description} for cid, c in story.characters.items()},
        scenes={sid: {"name": sc.name or sid, "description": sc.description} for sid, sc in story.scenes.items()},
    )
    manifest.settings = settings.model_dump()
    manifest.machine = {"device_requested": machine.device, "offload": machine.offload, "quantize": machine.quantize, "compile": machine.compile}
    manifest.models = {
        "generator": None if settings.backend == "preview" else settings.model,
        "encoder": settings.encoder if encoder is not None else None,
        "retrieval": library.mode,
    }
    manifest.theme = {"path": str(library.path), "name": library.name, "images": len(library)}
    manifest.grid = {"grid": settings.grid, "tile": settings.tile, "size": settings.grid * settings.tile}
    total = len(story.panels)
    for n in range(1, total + 1):
        old = manifest.panel(n)
        overlay = overlay_of(story, n, settings)
        if old is None:
            manifest.set_panel(pending_entry(n, overlay))
        else:
            # A made panel keeps the shape it was drawn with; a pending one takes the story's.
            manifest.set_panel(old.model_copy(update={**overlay_fields(overlay), **({} if old.done else {"shape": overlay.shape})}))
    manifest.panels = [p for p in manifest.panels if p.number <= total]


def _rerolls(manifest: RunManifest, numbers: list[int], reroll: bool) -> dict[int, int]:
    """Each panel keeps the reroll count it was made with; ``--reroll`` moves the selected ones on."""
    counts = {p.number: p.reroll for p in manifest.panels}  # pending too: an interrupted reroll keeps its count
    if reroll:
        for n in numbers:
            counts[n] = counts.get(n, 0) + 1
    return counts


def preflight(
    path: str | Path,
    panels: str | list[int] | None,
    overrides: dict[str, Any],
    machine: MachineOptions,
    *,
    ray: str | None = None,
    workers: int | None = None,
    check_machine: bool = True,
) -> tuple[Story, Generation, list[int]]:
    """Everything a run refuses before it touches a file or loads a model; ``--dry-run`` too.

    One function, so that a dry run never plans what the real command would refuse.
    """
    story = load_story(path)
    settings = apply_overrides(story.generation, overrides)
    check_ray_options(ray, workers, machine)
    if check_machine and ray is None:  # Ray workers check on their own nodes
        check_inputs(settings.backend, machine, settings.lora_specs)
    numbers = parse_panel_selection(panels, len(story.panels)) if isinstance(panels, str) else (panels or list(range(1, len(story.panels) + 1)))
    reference_problems(story, settings, numbers)  # what the reference method cannot lay out
    check_pass(settings)  # print-resolution pass (ipprompt.upscale): upscaler file, strength
    return story, settings, numbers


def run_story(
    path: str | Path,
    *,
    out: str | Path | None = None,
    panels: str | list[int] | None = None,
    force: bool = False,
    reroll: bool = False,
    progress: RunProgress | None = None,
    device: str = "auto",
    offload: str = "none",
    quantize: str = "none",
    vae_tiling: bool = False,
    compile: bool = False,
    attention: str = "native",
    ray: str | None = None,
    workers: int | None = None,
    backend_instance: Backend | None = None,
    encoder_instance: Any | None = None,
    **overrides: Any,
) -> RunResult:
    """Run a story from Python exactly as ``ipprompt story run`` does.

    ``overrides`` are [generation] keys (backend, model, encoder, steps, candidates, seed, rounds,
    search, preview_step, keep, continuity, tile, grid, guidance, method); None means "as in the story".
    ``reroll`` makes the selected panels again with a fresh seed, which later runs keep.
    ``ray`` (``auto``, ``local`` or a cluster address) makes the panels on Ray workers, one per GPU
    (at most ``workers``).
    """
    progress = progress or SilentProgress()
    # 1. story, settings, machine options
    machine = MachineOptions(device=device, offload=offload, quantize=quantize, vae_tiling=vae_tiling, compile=compile, attention=attention)
    story, settings, numbers = preflight(path, panels, overrides, machine, ray=ray, workers=workers, check_machine=backend_instance is None)
    if reroll and panels is None:
        raise IppromptError("--reroll needs --panels: say which panels to make again.", "Example: --panels 3 --reroll")
    # 2. the run folder
    folder = RunFolder(Path(out) if out is not None else Path.cwd() / "runs" / Path(path).stem)
    try:
        folder.claim(story.path)
        for note in folder.notes:
            progress.note(note)
        # 3. theme and encoder
        encoder = encoder_instance if encoder_instance is not None else create_encoder(settings, progress.note, machine.device)
        library = open_theme(story, encoder, progress)
        # 4. the manifest says what this run is before any panel is made
        manifest = folder.update(lambda m: describe_run(m, story, settings, library, encoder, machine))
        # 5. plan
        dtype = (backend_instance.stats().get("dtype") if backend_instance is not None else None) or planned_dtype(settings.backend, machine)
        machine_key = {"quantize": machine.quantize, "vae_tiling": machine.vae_tiling, "dtype": dtype}
        jobs: list[PanelJob] = plan_panels(story, settings, library, numbers, machine_key=machine_key, rerolls=_rerolls(manifest, numbers, reroll))
        # 6. execute
        if ray is not None:
            runner: LocalRunner | RayRunner = RayRunner(folder, settings, machine, library, encoder, progress, address=ray, workers=workers)
        else:
            runner = LocalRunner(folder, settings, machine, library, encoder, progress, backend_instance)
        outcome = runner.run(jobs, force=force or reroll)
    finally:
        progress.close()
        folder.release()
    # 7. storyboard
    from ipprompt.runfolder.manifest import read_manifest
    from ipprompt.storyboard.render import render_storyboard

    storyboard = render_storyboard(folder.root)
    return RunResult(folder.root, read_manifest(folder.root), outcome.generated, outcome.reused, storyboard, outcome.finished)
