"""`ipprompt story run`: generate a story's panels (a thin skin over ``ipprompt.pipeline.run.run_story``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ipprompt.cli.console import console, err_console, fail
from ipprompt.errors import IppromptError

if TYPE_CHECKING:
    from ipprompt.pipeline.run import RunResult


def run(
    story_path: Path = typer.Argument(..., metavar="STORY", help="The story's .toml file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<story name>/)."),
    backend: Optional[str] = typer.Option(None, help="flux-fill (FLUX.1-Fill-dev) or preview (no model: plan and inspect)."),
    model: Optional[str] = typer.Option(None, help="FLUX Fill model: hub id or local folder."),
    encoder: Optional[str] = typer.Option(None, help="CLIP model for retrieval and scoring: hub id or local folder."),
    panels: Optional[str] = typer.Option(None, help="Panels to make, e.g. 1-3,5 (numbers start at 1)."),
    candidates: Optional[int] = typer.Option(None, help="Arrangements tried per panel and per round."),
    steps: Optional[int] = typer.Option(None, help="Denoising steps."),
    seed: Optional[int] = typer.Option(None, help="Base seed (a panel's own seed wins)."),
    rounds: Optional[int] = typer.Option(None, help="Refinement rounds after the first (default 2)."),
    method: Optional[str] = typer.Option(None, help="dvp (ours: search, pruning, refinement) or reference (IP-Prompter's method, reproduced exactly)."),
    search: Optional[str] = typer.Option(None, help="pruned (finish only the best previews) or exhaustive (finish all)."),
    preview_step: Optional[int] = typer.Option(None, "--preview-step", help="Step at which pruned search scores previews."),
    keep: Optional[int] = typer.Option(None, help="Best previews pruned search finishes at the end (default 1)."),
    refine: Optional[int] = typer.Option(None, help="New arrangements per refinement round (default 2)."),
    fast: Optional[bool] = typer.Option(None, "--fast/--no-fast", help="Few-step LoRA (FLUX.1-Turbo-Alpha), 8 steps: <= 40 NFE per panel."),
    lora: Optional[List[str]] = typer.Option(None, "--lora", help="LoRA to fuse: hub id or .safetensors path, optional :SCALE (repeatable; replaces the story's loras)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print planned NFE and projected time for this GPU; load no model, make nothing."),
    continuity: Optional[bool] = typer.Option(None, "--continuity/--no-continuity", help="Use the previous panel as a reference."),
    tile: Optional[int] = typer.Option(None, help="Pixels per grid cell (multiple of 16, 256-1024)."),
    grid: Optional[int] = typer.Option(None, help="Cells per side: 2 or 3."),
    shape: Optional[str] = typer.Option(None, help="Panels' shape where the story sets none: square, wide (2:1) or tall (1:2)."),
    upscale: Optional[int] = typer.Option(None, "--upscale", help="Print pass: enlarge each chosen panel 2, 3 or 4 times and re-detail it with FLUX Fill (1: off)."),
    upscale_strength: Optional[float] = typer.Option(None, "--upscale-strength", help="How much of the schedule the print pass re-draws (default 0.35; 0: enlargement only, no FLUX)."),
    upscale_tile: Optional[int] = typer.Option(None, "--upscale-tile", help="Print pass: largest side FLUX re-details at once, in px (multiple of 16; default 1024)."),
    upscale_overlap: Optional[int] = typer.Option(None, "--upscale-overlap", help="Print pass: px shared by neighbouring tiles, blended without a seam (default 128)."),
    upscaler: Optional[str] = typer.Option(None, "--upscaler", metavar="PATH", help="Enlarge with this ESRGAN/SwinIR-class model (.safetensors or .pth, through spandrel) before the FLUX pass; with --upscale-strength 0, alone."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    offload: str = typer.Option("none", help="none, model (24 GB cards) or sequential (least memory, slowest)."),
    quantize: str = typer.Option("none", help="none, fp8 (half the transformer memory, any GPU) or nf4 (bitsandbytes, CUDA)."),
    vae_tiling: bool = typer.Option(False, "--vae-tiling", help="Decode the canvas in tiles (less memory)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the transformer blocks (slow first panel, faster after)."),
    attention: str = typer.Option("native", help="Attention kernel: native, flash, _flash_3 or sage (where installed)."),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="auto|local|ADDRESS",
        help="Make the panels on Ray, one worker per GPU: auto (RAY_ADDRESS, else a `ray start` cluster on this machine, "
        "else a new local one), local (a new local instance) or a cluster ADDRESS. Needs pip install \"ipprompt\[ray]\".",
    ),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="With --ray: at most N workers (default: one per GPU; 1 on a CPU-only cluster)."),
    force: bool = typer.Option(False, "--force", help="Regenerate panels even when nothing changed."),
    reroll: bool = typer.Option(False, "--reroll", help="Make the --panels again with a fresh seed (later runs keep the new take)."),
) -> None:
    """Generate the story's panels and its storyboard.

    Runs resume: panels whose inputs are unchanged are kept, so after Ctrl-C just run the same command again. Options override the story's \\[generation] table.

    Examples:

      ipprompt story run stories/lighthouse.toml --backend preview

      ipprompt story run stories/lighthouse.toml --offload model --panels 1-3

      ipprompt story run stories/lighthouse.toml --panels 3 --reroll

      ipprompt story run stories/lighthouse.toml --ray auto --workers 4
    """
    from ipprompt.progress import RichProgress
    from ipprompt.pipeline.run import run_story

    overrides = dict(
        backend=backend, model=model, encoder=encoder, candidates=candidates, steps=steps, seed=seed,
        rounds=rounds, search=search, preview_step=preview_step, keep=keep, refine=refine, continuity=continuity,
        tile=tile, grid=grid, shape=shape, method=method, fast=fast, loras=list(lora) if lora else None,
        upscale=upscale, upscale_strength=upscale_strength, upscale_tile=upscale_tile, upscale_overlap=upscale_overlap, upscaler=upscaler,
    )
    if dry_run:
        _dry_run(story_path, panels, device, offload, quantize, vae_tiling, compile, attention, overrides, ray, workers)
        return

    progress = RichProgress()
    try:
        result = run_story(
            story_path, out=out, panels=panels, force=force, reroll=reroll, progress=progress,
            device=device, offload=offload, quantize=quantize, vae_tiling=vae_tiling, compile=compile, attention=attention,
            ray=ray, workers=workers, **overrides,
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


def _dry_run(story_path: Path, panels: Optional[str], device: str, offload: str, quantize: str, vae_tiling: bool,
             compile: bool, attention: str, overrides: dict, ray: Optional[str] = None, workers: Optional[int] = None) -> None:
    """Planned NFE per panel and in total, projected time for this GPU; no model, no file written."""
    from ipprompt.backends.factory import MachineOptions
    from ipprompt.pipeline.execute import search_settings
    from ipprompt.pipeline.projection import dry_run
    from ipprompt.pipeline.run import preflight

    try:
        machine = MachineOptions(device=device, offload=offload, quantize=quantize, vae_tiling=vae_tiling, compile=compile, attention=attention)
        story, settings, numbers = preflight(story_path, panels, overrides, machine, ray=ray, workers=workers)
        plan = dry_run(story, settings, numbers, device=device, compiled=compile)
    except IppromptError as error:
        raise fail(error)
    proj = plan["projection"]
    mode = "fast, " if settings.fast else ""
    if settings.method == "reference":
        how = f"reference method (every permutation), {settings.steps} steps"
    elif search_settings(settings).pruned:
        how = f"pruned search, {settings.steps} steps, preview at step {settings.preview_step}"
    else:
        how = f"exhaustive search (no previews), {settings.steps} steps"
    title = f"Dry run: {story.title} — {mode}{how}, canvas {plan['canvas']}²"
    if settings.backend == "preview":
        console.print("The preview backend runs no model: 0 NFE. Without --backend preview:", markup=False)
        plan = dry_run(story, settings.model_copy(update={"backend": "flux-fill"}), numbers, device=device, compiled=compile)
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
        status = "made" if p.number in result.generated else "finished pick" if p.number in result.finished else "kept" if p.number in result.reused else "earlier"
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
    if any(p.picked_by == "author" for p in done):
        console.print("* picked by the author (`ipprompt story pick`)")
    if result.storyboard:
        console.print(f"Storyboard: [bold]{escape(str(result.storyboard))}[/]")
        console.print(f"Open it with: ipprompt story open {escape(str(result.out))}", soft_wrap=True)
