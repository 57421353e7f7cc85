"""`ipprompt story run`: generate a story's panels (a thin skin over ``ipprompt.pipeline.run.run_story``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ipprompt.cli.console import console, err_console, fail
from ipprompt.cli.settings_options import with_settings_options
from ipprompt.cli.helptext import default
from ipprompt.errors import IppromptError

if TYPE_CHECKING:
    from ipprompt.pipeline.run import RunResult


@with_settings_options
def run(
    story_path: Path = typer.Argument(..., metavar="STORY", help="The story's .toml file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="Run folder. " + default("runs/<story name>/")),
    panels: Optional[str] = typer.Option(None, metavar="LIST", help="Panels to make, e.g. 1-3,5 (numbers start at 1). " + default("all")),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print planned NFE and projected time for this GPU; load no model, make nothing."),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="MODE",
        help="Make the panels on Ray, one worker per GPU: auto (RAY_ADDRESS, else a `ray start` cluster on this machine, "
        "else a new local one), local (a new local instance) or a cluster ADDRESS. Needs pip install \"ipprompt\[ray]\". " + default("off"),
    ),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, metavar="N", help="With --ray: at most N workers. " + default("one per GPU; 1 on a CPU-only cluster")),
    force: bool = typer.Option(False, "--force", help="Regenerate panels even when nothing changed."),
    reroll: bool = typer.Option(False, "--reroll", help="Make the --panels again with a fresh seed (later runs keep the new take)."),
    remake_picked: bool = typer.Option(False, "--remake-picked", help="Let changed settings remake panels the author picked (their images go to history/)."),
    settings: dict = {},
) -> None:
    """Generate the story's panels and its storyboard.

    Runs resume: panels whose inputs are unchanged are kept, so after Ctrl-C just run the same command again. Options override the story's \\[generation] table, and the run folder remembers them: later runs on it need no option typed again.

    Examples:

      ipprompt story run stories/lighthouse.toml --backend preview

      ipprompt story run stories/lighthouse.toml --offload model --panels 1-3

      ipprompt story run stories/lighthouse.toml --panels 3 --reroll

      ipprompt story run stories/lighthouse.toml --ray auto --workers 4
    """
    from ipprompt.pipeline.run import run_story
    from ipprompt.progress import RichProgress

    options = settings
    if dry_run:
        _dry_run(story_path, out, panels, options, ray, workers)
        return

    progress = RichProgress()
    try:
        result = run_story(
            story_path, out=out, panels=panels, force=force, reroll=reroll, remake_picked=remake_picked,
            progress=progress, ray=ray, workers=workers, **options,
        )
    except IppromptError as error:
        progress.close()
        raise fail(error)
    except KeyboardInterrupt:
        progress.close()
        err_console.print(
            "Interrupted. Finished panels are kept; run the same command again to resume.", markup=False
        )
        raise typer.Exit(code=130) from None
    _print_summary(result)


def _dry_run(story_path: Path, out: Optional[Path], panels: Optional[str], options: dict, ray: Optional[str] = None, workers: Optional[int] = None) -> None:
    """Planned NFE per panel and in total, projected time for this GPU; no model, no file written."""
    from ipprompt.backends.registry import backend_spec
    from ipprompt.pipeline.execute import search_settings
    from ipprompt.pipeline.projection import dry_run
    from ipprompt.pipeline.run import preflight

    try:
        pre = preflight(story_path, panels, options, out=out, ray=ray, workers=workers)
        story, settings, numbers = pre.story, pre.settings, pre.numbers
        plan = dry_run(story, settings, numbers, device=settings.device, compiled=settings.compile)
    except IppromptError as error:
        raise fail(error)
    if pre.remembered:
        console.print(escape("Using this run folder's options: " + ", ".join(settings.option(k) for k in pre.remembered)))
    for name in pre.differing():
        console.print(escape(f"{settings.option(name)} differs from this run's {pre.recorded[name]!r}: the panels made with it would be made again."))

    from ipprompt.dvp.methods import method_of

    proj = plan["projection"]
    mode = "fast, " if settings.fast else ""
    if not method_of(settings.method).rungs:
        how = f"{method_of(settings.method).title}, {settings.steps} steps"
    elif search_settings(settings).pruned and any(b.schedule for b in plan["panels"]):
        how = f"rungs by noise level, budget {settings.budget}, {settings.steps} steps"
    else:
        how = f"exhaustive search (no previews), {settings.steps} steps"
    title = f"Dry run: {story.title} — {mode}{how}, canvas {plan['canvas']}²"
    if not backend_spec(settings.backend).denoises:
        console.print(f"The {settings.backend} backend runs no model: 0 NFE. With --backend flux-fill:", markup=False)
        plan = dry_run(story, settings.model_copy(update={"backend": "flux-fill"}), numbers, device=settings.device, compiled=settings.compile)
        proj = plan["projection"]
    table = Table(title=escape(title), title_justify="left")
    upscale = settings.upscale > 1  # print-resolution pass: its own columns, included in the totals
    for col in ("panel", "elements", "first round", "NFE (at most)", "projected") + (("print pass NFE", "print pass") if upscale else ()):
        table.add_column(col, justify="right")
    sps = proj.seconds_per_step
    passes = plan.get("upscale_seconds")
    for b in plan["panels"]:
        row = [str(b.number), str(b.elements), str(b.arrangements), str(b.nfe), "-" if sps is None else f"{b.nfe * sps:.1f}s"]
        if upscale:
            row += [f"{b.upscale_tiles} x {b.upscale_nfe // max(b.upscale_tiles, 1)}" if b.upscale_tiles else "0", "-" if passes is None else f"{passes[b.number]:.1f}s"]
        table.add_row(*row)
    total = ["all", "", "", str(plan["search_nfe"] if upscale else plan["total_nfe"]), "-" if plan["seconds"] is None else f"{plan['seconds'] / 60:.1f} min"]
    table.add_row(*total, *((str(plan["upscale_nfe"]), "-" if passes is None else f"{sum(passes.values()):.1f}s") if upscale else ()), style="bold")
    console.print(table)
    for line in rung_lines(plan["panels"]):
        console.print(escape(line), soft_wrap=True)
    for note in settings.legacy_notes:
        console.print(escape(f"note: {note}"), soft_wrap=True)
    if upscale:
        how = f"strength {settings.upscale_strength:g}, tiles of at most {settings.upscale_tile} px" if settings.upscale_strength > 0 else "enlargement only, no FLUX"
        console.print(escape(f"Print pass: {settings.upscale}x ({how}); with it, {plan['total_nfe']} NFE in all. The total time includes it."))
    if settings.lora_specs:
        console.print("LoRAs: " + escape(", ".join(settings.lora_specs)))
    if sps is None:
        console.print(escape(proj.source))
        ref = plan["reference"]
        if plan["reference_seconds"] is not None:
            console.print(escape(f"For comparison, on an {ref.known} ({ref.source}): {plan['reference_seconds'] / 60:.1f} min, {ref.seconds_per_step:.3f} s/step"))
    else:
        console.print(escape(f"GPU: {proj.gpu} ({proj.known} table, {proj.source}): {sps:.3f} s/step; transformer time only"))
    console.print("No model was loaded and nothing was written.")


def _origin(source: str) -> str:
    """Where rungs came from, in words: the default (a budget preset), the story, or a profile."""
    if source.startswith("budget"):
        return f"the default ({source})"
    return "the story's rungs" if source == "story" else f"the {source}"


def rung_lines(budgets: list) -> list[str]:
    """One line per distinct canvas: every rung's step and σ, what it keeps, and where the rungs came from."""
    from ipprompt.dvp.rungs import NFE_LIMITS, limit_problems

    lines, seen = [], set()
    for b in budgets:
        s = b.schedule
        if s is None or (b.canvas, b.tried) in seen:
            continue
        seen.add((b.canvas, b.tried))
        parts = [f"step {r.step} σ {r.sigma:.3f} keeps {k}" for r, k in zip(s.rungs, s.survivors(b.tried))]
        budget = s.source.removeprefix("budget ")
        problems = limit_problems(s, b.tried, NFE_LIMITS[budget]) if budget in NFE_LIMITS else []
        check = f" (outside the defaults' limits: {'; '.join(problems)})" if problems else ""
        lines.append(
            f"Rungs at {b.canvas[0]}x{b.canvas[1]} for {b.tried} arrangements, from {_origin(s.source)}: " + ", ".join(parts)
            + f"; {s.survivors(b.tried)[-1]} finished at step {s.steps}{check}"
        )
    return lines


def _print_summary(result: "RunResult") -> None:
    """One row per panel: what was made or kept, the chosen candidate, its scores and cost."""
    m = result.manifest
    done = [p for p in m.panels if p.done]
    chosen = {p.number: p.candidate(p.chosen) if p.chosen is not None else None for p in done}
    has_clip = any(c is not None and c.scores is not None and c.scores.clip_t is not None for c in chosen.values())
    has_gpu = any(p.peak_gpu_bytes for p in done)
    columns = ["panel", "status", "cands", "chosen", "score"] + (["CLIP-T", "CLIP-I"] if has_clip else []) + ["NFE", "time"]
    columns += ["peak GPU"] if has_gpu else []
    table = Table(title=escape(f"{m.story.title} — {result.out}"), title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if col == "status" else "right")

    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.3f}"

    def gib(v: int | None) -> str:
        return f"{v / 2**30:.1f} GiB" if v else "-"

    for p in m.panels:
        if not p.done:
            table.add_row(str(p.number), "pending", *[""] * (len(columns) - 2))
            continue
        cand = chosen[p.number]
        s = cand.scores if cand is not None else None
        status = (
            "made" if p.number in result.generated else "finished pick" if p.number in result.finished
            else "picked, kept" if p.number in result.kept_picked else "kept" if p.number in result.reused else "earlier"
        )
        shown = "history" if p.chosen is None and p.picked_from_history else str(p.chosen)
        picked = f"{shown}*" if p.picked_by == "author" else shown
        row = [str(p.number), status, str(len(p.candidates)), picked, fmt(s.total if s else None)]
        row += [fmt(s.clip_t if s else None), fmt(s.clip_i if s else None)] if has_clip else []
        row += [str(p.nfe), f"{p.seconds:.1f}s"] + ([gib(p.peak_gpu_bytes)] if has_gpu else [])
        table.add_row(*row)
    t = m.totals
    total = ["all", "", "", "", ""] + (["", ""] if has_clip else []) + [str(t.nfe), f"{t.seconds:.1f}s"]
    table.add_row(*total, *([gib(t.peak_gpu_bytes)] if has_gpu else []), style="bold")
    console.print(table)
    finished = f", finished {len(result.finished)} picked preview(s)" if result.finished else ""
    console.print(f"made {len(result.generated)}, kept {len(result.reused)}{finished}; retrieval: {escape(str(m.models.get('retrieval')))}")
    for key, note in (("preview_step", "`preview_step` was ignored (rungs by noise level replace it)"), ("keep", "`keep` was read as `finish`")):
        if m.settings.get(key) is not None:
            console.print(escape(f"note: {note}; update the story's [generation]"), soft_wrap=True)
    used = {(tuple((r.get("step"), r.get("sigma")) for r in p.rungs), p.schedule_source) for p in done if p.number in result.generated and p.rungs}
    for steps_sigmas, source in sorted(used, key=str):
        rungs = ", ".join(f"step {k} σ {sigma:.3f}" for k, sigma in steps_sigmas)
        console.print(escape(f"rungs: {rungs} (from {_origin(str(source))})"), soft_wrap=True)
    if any(p.picked_by == "author" for p in done):
        console.print("* picked by the author (`ipprompt story pick`)")
    if result.storyboard:
        console.print(f"Storyboard: [bold]{escape(str(result.storyboard))}[/]")
        console.print(f"Open it with: ipprompt story open {escape(str(result.out))}", soft_wrap=True)
