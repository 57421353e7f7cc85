"""`ipprompt story ...`: check a story, run it, re-render and open its storyboard."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ipprompt.cli.console import console, err_console, fail
from ipprompt.errors import IppromptError

if TYPE_CHECKING:
    from ipprompt.run import RunResult

app = typer.Typer(
    help="Check, run and render stories (TOML files; see stories/lighthouse.toml).",
    no_args_is_help=True,
)

@app.command("check")
def check(story_path: Path = typer.Argument(..., metavar="STORY", help="The story's .toml file.")) -> None:
    """Validate a story and summarise it, without loading any model.

    Every problem is reported with its file, line and key, and a likely fix.

    Example: ipprompt story check stories/lighthouse.toml
    """
    from ipprompt.paths import resolve_theme_path
    from ipprompt.story import load_story

    try:
        story = load_story(story_path)
        theme = resolve_theme_path(story.doc.theme, relative_to=story.folder)
    except IppromptError as error:
        raise fail(error)
    from ipprompt.run import MIN_THEME_IMAGES
    from ipprompt.theme.importer import is_image_name

    images = [p for p in theme.rglob("*") if is_image_name(p)]
    if len(images) < MIN_THEME_IMAGES:
        raise fail(IppromptError(
            f"Theme {theme} has {len(images)} image(s); a run needs at least {MIN_THEME_IMAGES}.",
            "Add reference images: `ipprompt theme add THEME IMAGES...` or copy images into the folder.",
        ))
    g = story.generation
    table = Table(title=escape(story.title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("file", escape(str(story_path)))
    table.add_row("panels", str(len(story.panels)))
    chars = []
    for cid, c in story.characters.items():
        pinned = f", {len(c.refs)} pinned ref{'s' if len(c.refs) != 1 else ''} found" if c.refs else ""
        chars.append(escape(f"{cid} ({c.name or cid}{pinned})"))
    table.add_row("characters", ", ".join(chars) or "none")
    table.add_row("scenes", escape(", ".join(story.scenes)) or "none")
    table.add_row("theme", escape(f"{theme} ({len(images)} images)"))
    table.add_row("generation", f"{g.backend}, {g.grid}x{g.grid} x {g.tile}px, {g.steps} steps, {g.candidates} candidates, search {g.search}")
    table.add_row("model", g.model)
    table.add_row("encoder", g.encoder)
    console.print(table)
    console.print("[green]Story is valid.[/]")


@app.command("run")
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
    search: Optional[str] = typer.Option(None, help="pruned (finish only the best previews) or exhaustive (finish all)."),
    preview_step: Optional[int] = typer.Option(None, "--preview-step", help="Step at which pruned search scores previews."),
    keep: Optional[int] = typer.Option(None, help="Candidates pruned search finishes per round."),
    continuity: Optional[bool] = typer.Option(None, "--continuity/--no-continuity", help="Use the previous panel as a reference."),
    tile: Optional[int] = typer.Option(None, help="Pixels per grid cell (multiple of 16, 256-1024)."),
    grid: Optional[int] = typer.Option(None, help="Cells per side: 2 or 3."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    offload: str = typer.Option("none", help="none, model (24 GB cards) or sequential (least memory, slowest)."),
    quantize: str = typer.Option("none", help="none, fp8 (half the transformer memory, any GPU) or nf4 (bitsandbytes, CUDA)."),
    vae_tiling: bool = typer.Option(False, "--vae-tiling", help="Decode the canvas in tiles (less memory)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the transformer blocks (slow first panel, faster after)."),
    force: bool = typer.Option(False, "--force", help="Regenerate panels even when nothing changed."),
) -> None:
    """Generate the story's panels and its storyboard.

    Runs resume: panels whose inputs are unchanged are kept, so after Ctrl-C just run the same command again. Options override the story's \\[generation] table.

    Examples:

      ipprompt story run stories/lighthouse.toml --backend preview

      ipprompt story run stories/lighthouse.toml --offload model --panels 1-3
    """
    from ipprompt.progress import RichProgress
    from ipprompt.run import run_story

    choices = {"backend": (backend, ("flux-fill", "preview")), "search": (search, ("pruned", "exhaustive")),
               "offload": (offload, ("none", "model", "sequential")), "quantize": (quantize, ("none", "fp8", "nf4"))}
    for name, (value, allowed) in choices.items():
        if value is not None and value not in allowed:
            raise fail(IppromptError(f"--{name} {value!r} is not one of: {', '.join(allowed)}."))
    progress = RichProgress()
    try:
        result = run_story(
            story_path, out=out, panels=panels, force=force, progress=progress,
            device=device, offload=offload, quantize=quantize, vae_tiling=vae_tiling, compile=compile,
            backend=backend, model=model, encoder=encoder, candidates=candidates, steps=steps, seed=seed,
            rounds=rounds, search=search, preview_step=preview_step, keep=keep, continuity=continuity,
            tile=tile, grid=grid,
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


def _print_summary(result: "RunResult") -> None:
    """One row per panel: what was made or kept, the chosen candidate, its scores and cost."""
    m = result.manifest
    done = [p for p in m["panels"] if p.get("status") == "done"]
    chosen = {p["number"]: next(c for c in p["candidates"] if c["chosen"]) for p in done}
    has_clip = any((c.get("scores") or {}).get("clip_t") is not None for c in chosen.values())
    has_gpu = any(p.get("peak_gpu_bytes") for p in done)
    columns = ["panel", "status", "cands", "chosen", "score"] + (["CLIP-T", "CLIP-I"] if has_clip else []) + ["NFE", "time"]
    columns += ["peak GPU"] if has_gpu else []
    table = Table(title=escape(f"{m['story']['title']} — {result.out}"), title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if col == "status" else "right")

    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.3f}"

    def gib(v: int | None) -> str:
        return f"{v / 2**30:.1f} GiB" if v else "-"

    for p in m["panels"]:
        if p.get("status") != "done":
            table.add_row(str(p["number"]), "pending", *[""] * (len(columns) - 2))
            continue
        s = chosen[p["number"]]["scores"] or {}
        n = p["number"]
        status = "made" if n in result.generated else "kept" if n in result.reused else "earlier"
        row = [str(n), status, str(len(p["candidates"])),
               str(p["chosen"]), fmt(s.get("total"))]
        row += [fmt(s.get("clip_t")), fmt(s.get("clip_i"))] if has_clip else []
        row += [str(p["nfe"]), f"{p['seconds']:.1f}s"] + ([gib(p.get("peak_gpu_bytes"))] if has_gpu else [])
        table.add_row(*row)
    t = m["totals"]
    total = ["all", "", "", "", ""] + (["", ""] if has_clip else []) + [str(t["nfe"]), f"{t['seconds']:.1f}s"]
    table.add_row(*total, *([gib(t.get("peak_gpu_bytes"))] if has_gpu else []), style="bold")
    console.print(table)
    console.print(f"made {len(result.generated)}, kept {len(result.reused)}; retrieval: {m['models']['retrieval']}")
    if result.storyboard:
        console.print(f"Storyboard: [bold]{escape(str(result.storyboard))}[/]")
        console.print(f"Open it with: ipprompt story open {result.out}", soft_wrap=True)


@app.command("render")
def render(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run folder (holds manifest.json)."),
    single_file: bool = typer.Option(False, "--single-file", help="One HTML file with every image inlined."),
    templates: Optional[Path] = typer.Option(None, "--templates", help="Folder of templates overriding ours by name."),
) -> None:
    """Re-render the storyboard from a run's manifest (nothing is generated).

    Example: ipprompt story render runs/lighthouse --single-file
    """
    from ipprompt.render import render_storyboard

    try:
        path = render_storyboard(run_dir, single_file=single_file, templates=templates)
    except IppromptError as error:
        raise fail(error)
    console.print(f"Storyboard: [bold]{escape(str(path))}[/]")


@app.command("open")
def open_(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run folder.")) -> None:
    """Open a run's storyboard in the default browser (prints its path where there is none).

    Example: ipprompt story open runs/lighthouse
    """
    import webbrowser

    from ipprompt.render import storyboard_path

    try:
        path = storyboard_path(run_dir)
    except IppromptError as error:
        raise fail(error)
    opened = False
    try:
        opened = webbrowser.open(path.resolve().as_uri())
    except webbrowser.Error:
        opened = False
    if not opened:
        console.print(f"No browser found. The storyboard is at: {path.resolve()}")
    else:
        console.print(f"Opened {path.resolve()}")
