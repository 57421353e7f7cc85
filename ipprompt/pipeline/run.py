"""One story run: from a story file to a resumable run folder and its storyboard.

``run_story`` is the library entry point; ``ipprompt story run`` is a thin skin over it. Numbered
steps, as in diffusers pipelines:

1. load the story and build the ``RunSettings`` (the story's [generation], the options this run
   folder remembers, the options given now), refuse impossible machine options before anything
   loads (``check_inputs``);
2. claim the run folder: refuse a foreign folder, clean a killed run's temporary files, rebuild a
   damaged manifest from the panels' own records;
3. open the theme library and the encoder (CLIP, or lexical retrieval when none is available);
4. write the manifest (settings, remembered options, every panel pending that is not done) before
   any panel is made;
5. plan every selected panel (pure: ``plan_panels``) and say what differing settings will remake;
6. execute the jobs (``LocalRunner`` here, ``RayRunner`` across GPUs and machines with ``ray``):
   what each panel needs is decided by ``pipeline.core.decide``; the generator loads only if
   something is left to make;
7. render the storyboard.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipprompt
from ipprompt.backends.base import Backend
from ipprompt.backends.factory import check_inputs, create_encoder, planned_dtype
from ipprompt.backends.registry import backend_spec
from ipprompt.dvp.methods import method_problems
from ipprompt.errors import IppromptError
from ipprompt.pipeline.core import is_picked
from ipprompt.pipeline.threads import cpu_threads_key
from ipprompt.pipeline.plan import PanelJob, overlay_of, plan_panels
from ipprompt.pipeline.runners.ray_runner import RayRunner, check_ray_options
from ipprompt.pipeline.runners.local import LocalRunner, Outcome
from ipprompt.pipeline.settings import RunSettings, build_settings, differences, settings_options
from ipprompt.progress import RunProgress, SilentProgress
from ipprompt.runfolder.folder import RunFolder, overlay_fields, pending_entry
from ipprompt.runfolder.manifest import RunManifest, StoryInfo
from ipprompt.story.loading import Story, load_story
from ipprompt.upscale.checks import check_pass

if TYPE_CHECKING:
    from ipprompt.backends.factory import MachineOptions
    from ipprompt.encoders.clip import ClipEncoder
    from ipprompt.theme.library import ThemeLibrary

MIN_THEME_IMAGES = 3


@dataclass
class RunResult:
    out: Path
    manifest: RunManifest
    generated: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    storyboard: Path | None = None
    finished: list[int] = field(default_factory=list)  # kept panels whose picked preview this run finished
    kept_picked: list[int] = field(default_factory=list)  # author's picks kept although settings changed


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


def open_theme(story: Story, encoder: "ClipEncoder | None", progress: RunProgress) -> "ThemeLibrary":
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


def describe_run(
    manifest: RunManifest, story: Story, settings: RunSettings, options: Mapping[str, Any], library: "ThemeLibrary", encoder: "ClipEncoder | None"
) -> None:
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
    manifest.options = dict(options)
    manifest.machine = {"device_requested": settings.device, "offload": settings.offload, "quantize": settings.quantize, "compile": settings.compile}
    manifest.models = {
        "generator": settings.model if backend_spec(settings.backend).denoises else None,
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


def remembered(out: Path) -> RunManifest | None:
    """The run folder's manifest as it is, for the options it remembers (None: no readable run)."""
    from ipprompt.runfolder.manifest import read_manifest

    if not (out / "manifest.json").is_file():
        return None
    try:
        return read_manifest(out)
    except IppromptError:
        return None  # damaged: the run rebuilds it; its panels' records keep their own settings


def default_out(path: str | Path) -> Path:
    """Where a story's run goes without ``--out``: ``runs/<story file name>/``."""
    return Path.cwd() / "runs" / Path(path).stem


@dataclass
class Preflight:
    """What a run (or a dry run) is, decided before any file is touched or model loaded."""

    story: Story
    settings: RunSettings
    numbers: list[int]
    options: dict[str, Any]  # every option in force (remembered and given), as the manifest records them
    recorded: dict[str, Any]  # the settings the run folder was made with ({} for a new one)
    remembered: dict[str, Any]  # the options taken from the run folder, not given now

    def differing(self) -> list[str]:
        """Given options whose value differs from the run's recorded one."""
        return differences(self.settings, self.recorded)


def preflight(
    path: str | Path,
    panels: str | list[int] | None,
    given: Mapping[str, Any],
    *,
    out: str | Path | None = None,
    ray: str | None = None,
    workers: int | None = None,
    check_machine: bool = True,
) -> Preflight:
    """Everything a run refuses before it touches a file or loads a model; ``--dry-run`` too.

    One function, so that a dry run never plans what the real command would refuse, and uses the
    options the run folder remembers exactly as the real command does.
    """
    story = load_story(path)
    manifest = remembered(Path(out) if out is not None else default_out(path))
    same_story = manifest is not None and (not manifest.story.path or Path(manifest.story.path).resolve() == story.path.resolve())
    kept = dict(manifest.options) if manifest is not None and same_story else {}
    given = settings_options(given)
    settings = build_settings(story.generation, given, kept)
    check_ray_options(ray, workers, settings.machine)
    if check_machine and ray is None:  # Ray workers check on their own nodes
        check_inputs(settings.backend, settings.machine, settings.lora_specs, settings.cache)
    numbers = parse_panel_selection(panels, len(story.panels)) if isinstance(panels, str) else (panels or list(range(1, len(story.panels) + 1)))
    method_problems(story, settings, numbers)  # what the method cannot lay out
    check_pass(settings)  # the print pass: its upscaler file and spandrel
    recorded = dict(manifest.settings) if manifest is not None and same_story else {}
    return Preflight(story, settings, numbers, {**kept, **given}, recorded, {k: v for k, v in kept.items() if k not in given})


def announce_changes(pre: Preflight, manifest: RunManifest, jobs: list[PanelJob], progress: RunProgress, remake_picked: bool) -> None:
    """Say, before anything runs, which settings differ from the run's and what that remakes."""
    if pre.remembered:
        shown = ", ".join(pre.settings.option(k) for k in pre.remembered)
        progress.note(f"Using this run folder's options: {shown} (give an option again to change it).")
    changed = pre.differing()
    if not changed:
        return
    done = {p.number: p for p in manifest.panels if p.done}
    remade = [j.number for j in jobs if j.number in done and done[j.number].key != j.key]
    content = {j.number: j.content_key for j in jobs}
    picked = [n for n in remade if is_picked(done[n]) and done[n].content_key in (None, content[n])]
    what = ", ".join(f"{pre.settings.option(k)} differs from this run's {pre.recorded[k]!r}" for k in changed)
    made = len(remade) - (0 if remake_picked else len(picked))
    line = f"{what}: {made} panel(s) will be remade (their images go to history/)"
    if picked:
        numbers = ", ".join(map(str, picked))
        line += f"; picked panels {numbers} will be remade too (--remake-picked)" if remake_picked else f"; picked panels {numbers} stay as they are (--remake-picked to remake them)"
    progress.note(line + ".")


def _device_type(backend: Backend | None, machine: "MachineOptions") -> str | None:
    """Where the generator computes: the given backend's device, else the one ``--device`` picks."""
    device = getattr(backend, "device", None) if backend is not None else None
    if device is not None:
        return getattr(device, "type", str(device))
    from ipprompt.backends.factory import resolve_device

    return resolve_device(machine.device).type


def run_story(
    path: str | Path,
    *,
    out: str | Path | None = None,
    panels: str | list[int] | None = None,
    force: bool = False,
    reroll: bool = False,
    remake_picked: bool = False,
    progress: RunProgress | None = None,
    ray: str | None = None,
    workers: int | None = None,
    backend_instance: Backend | None = None,
    encoder_instance: "ClipEncoder | None" = None,
    **options: Any,
) -> RunResult:
    """Run a story from Python exactly as ``ipprompt story run`` does.

    ``options`` are ``RunSettings`` fields (backend, model, encoder, steps, candidates, seed, tile,
    method, device, offload, ...; None means "as the run folder remembers, else as the story
    says"). ``reroll`` makes the selected panels again with a fresh seed, which later runs keep;
    ``remake_picked`` lets differing settings remake panels the author picked. ``ray`` (``auto``,
    ``local`` or a cluster address) makes the panels on Ray workers, one per GPU (at most ``workers``).
    """
    unknown = sorted(set(options) - set(RunSettings.model_fields))
    if unknown:
        raise TypeError(f"run_story() got unknown settings: {', '.join(unknown)}")
    progress = progress or SilentProgress()
    out_path = Path(out) if out is not None else default_out(path)
    # 1. story, settings, machine options
    pre = preflight(path, panels, options, out=out_path, ray=ray, workers=workers, check_machine=backend_instance is None)
    story, settings, numbers = pre.story, pre.settings, pre.numbers
    if reroll and panels is None:
        raise IppromptError("--reroll needs --panels: say which panels to make again.", "Example: --panels 3 --reroll")
    # 2. the run folder
    folder = RunFolder(out_path)
    try:
        folder.claim(story.path)
        for note in folder.notes:
            progress.note(note)
        # 3. theme and encoder
        encoder = encoder_instance if encoder_instance is not None else create_encoder(settings, progress.note)
        library = open_theme(story, encoder, progress)
        # 4. the manifest says what this run is before any panel is made
        before = folder.read() or RunManifest()
        manifest = folder.update(lambda m: describe_run(m, story, settings, pre.options, library, encoder))
        # 5. plan
        dtype = (backend_instance.stats().get("dtype") if backend_instance is not None else None) or planned_dtype(settings.backend, settings.machine)
        machine_key = {"quantize": settings.quantize, "vae_tiling": settings.vae_tiling, "dtype": dtype}
        if backend_spec(settings.backend).denoises:
            machine_key.update(cpu_threads_key(settings.backend, _device_type(backend_instance, settings.machine)))
        rerolls = _rerolls(manifest, numbers, False) | (folder.reserve_rerolls(numbers) if reroll else {})
        jobs: list[PanelJob] = plan_panels(story, settings, library, numbers, machine_key=machine_key, rerolls=rerolls)
        announce_changes(pre, before, jobs, progress, remake_picked)
        # 6. execute
        if ray is not None:
            runner: LocalRunner | RayRunner = RayRunner(folder, settings, library, encoder, progress, address=ray, workers=workers)
        else:
            runner = LocalRunner(folder, settings, library, encoder, progress, backend_instance)
        outcome: Outcome = runner.run(jobs, force=force or reroll, remake_picked=remake_picked)
    finally:
        progress.close()
        folder.release()
    # 7. storyboard
    from ipprompt.runfolder.manifest import read_manifest
    from ipprompt.storyboard.render import render_storyboard

    storyboard = render_storyboard(folder.root)
    return RunResult(folder.root, read_manifest(folder.root), outcome.generated, outcome.reused, storyboard, outcome.finished, outcome.kept_picked)
