"""`ipprompt story ...`: check a story, run it, re-render and open its storyboard."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ipprompt.cli.console import console, fail
from ipprompt.cli.helptext import default
from ipprompt.errors import IppromptError

app = typer.Typer(
    help="Check, run and render stories (TOML files; see stories/lighthouse.toml).",
    no_args_is_help=True,
    rich_markup_mode="rich",  # the same help on every typer: \[ escapes, no literal backslashes
)


@app.command("check")
def check(story_path: Path = typer.Argument(..., metavar="STORY", help="The story's .toml file.")) -> None:
    """Validate a story and summarise it, without loading any model.

    Every problem is reported with its file, line and key, and a likely fix.

    Example: ipprompt story check stories/lighthouse.toml
    """
    from ipprompt.dvp.methods import method_problems
    from ipprompt.paths import resolve_theme_path
    from ipprompt.story.loading import load_story

    from ipprompt.pipeline.run import MIN_THEME_IMAGES
    from ipprompt.theme.finding import walk_images

    try:
        story = load_story(story_path)
        method_problems(story, story.generation)  # what the story's method cannot lay out
        theme = resolve_theme_path(story.doc.theme, relative_to=story.folder)
        images = walk_images(theme)  # the theme's own walk: hidden files, loops and the size limit as a run sees them
    except IppromptError as error:
        raise fail(error)
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
    table.add_row("generation", f"{g.backend}, {g.grid}x{g.grid} x {g.tile}px, {g.steps} steps, {g.candidates} candidates, search {g.search}"
                  if g.method == "dvp" else f"{g.backend}, reference method (IP-Prompter), {g.tile}px tiles, {g.steps} steps")
    table.add_row("model", escape(g.model))
    table.add_row("encoder", escape(g.encoder))
    console.print(table)
    console.print("[green]Story is valid.[/]")


@app.command("render")
def render(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder (holds manifest.json)."),
    single_file: bool = typer.Option(False, "--single-file", help="One HTML file with every image inlined."),
    templates: Optional[Path] = typer.Option(
        None, "--templates", metavar="DIR", help="Folder of templates overriding ours by name. " + default("ours only")
    ),
) -> None:
    """Re-render the storyboard from a run's manifest (nothing is generated).

    Example: ipprompt story render runs/lighthouse --single-file
    """
    from ipprompt.storyboard.render import render_storyboard

    try:
        path = render_storyboard(run_dir, single_file=single_file, templates=templates)
    except IppromptError as error:
        raise fail(error)
    console.print(f"Storyboard: [bold]{escape(str(path))}[/]")


@app.command("open")
def open_(run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder (holds manifest.json).")) -> None:
    """Open a run's storyboard in the default browser (prints its path where there is none).

    Example: ipprompt story open runs/lighthouse
    """
    import webbrowser

    from ipprompt.storyboard.render import storyboard_path

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
        console.print(f"No browser found. The storyboard is at: {path.resolve()}", markup=False)
    else:
        console.print(f"Opened {path.resolve()}", markup=False)


from ipprompt.cli.story_run import run  # noqa: E402  (registered on this app, kept in its own module)

app.command("run")(run)

from ipprompt.cli.export import export  # noqa: E402

app.command("export")(export)

from ipprompt.cli.story_pick import history, pick  # noqa: E402  (registered on this app, kept in its own module)

app.command("pick")(pick)
app.command("history")(history)
