"""`ipprompt vistorybench import|export|run`: ViStoryBench stories in, the benchmark's outputs layout out.

A thin skin over ``ipprompt.vistorybench``; heavy imports (Pillow, torch) happen inside the commands
so that registering them costs every other command nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ipprompt.cli.console import console, err_console, fail
from ipprompt.cli.helptext import default
from ipprompt.cli.settings_options import with_settings_options
from ipprompt.errors import IppromptError

if TYPE_CHECKING:
    from ipprompt.vistorybench.driver import ImportReport
    from ipprompt.vistorybench.outputs import ExportReport

app = typer.Typer(
    help="ViStoryBench: import its stories, run them, export the images its official code scores (docs/vistorybench.md).",
    no_args_is_help=True,
)

STORIES_HELP = "lite (the 20-story Lite split), full, or story numbers such as 01,08,15."
LANGUAGE_HELP = "Which texts to use: en or ch (the benchmark scores each language on its own)."


def _print_mapping() -> None:
    from ipprompt.vistorybench.convert import MAPPING

    table = Table(title="How ViStoryBench fields become a story", title_justify="left")
    table.add_column("story.json / dataset")
    table.add_column("ipprompt story")
    for source, target in MAPPING:
        table.add_row(escape(source), escape(target))
    console.print(table)


def _print_imports(report: "ImportReport") -> None:
    for story in report.imported:
        line = f"story {story.story_id}: {story.panels} panels, {story.theme_images} theme images -> {story.path}"
        console.print(escape(line), highlight=False)
        for why in story.skipped:
            console.print(escape(f"  skipped {why} (the benchmark's loader skips it too: no image is scored for it)"), highlight=False)
        for warning in story.warnings:
            err_console.print(escape(f"  warning: {warning}"), highlight=False)
    for sid, why in report.failed:
        err_console.print(f"[yellow]story {escape(sid)} not imported:[/] {escape(why)}", highlight=False)
    console.print(
        f"Imported {len(report.imported)} stories ({sum(s.panels for s in report.imported)} panels); "
        f"{report.shots_skipped} shots skipped for missing fields; {len(report.failed)} stories not imported.",
        highlight=False,
    )


def _print_export(report: "ExportReport") -> None:
    for story in report.stories:
        line = f"story {story.story_id}: {len(story.written)} shots -> {story.folder}"
        if story.missing:
            line += f"; missing shots {', '.join(map(str, story.missing))}"
        console.print(escape(line), highlight=False)
    console.print(escape(f"Outputs: {report.root}"), highlight=False)
    console.print(escape(f"Score them from the benchmark's repository: python bench_run.py --method {report.root.parts[-4]} "
                         f"--mode {report.root.parts[-3]} --language {report.root.parts[-2]} --timestamp {report.timestamp} "
                         f"--outputs_path {report.root.parents[3]}"), highlight=False, soft_wrap=True)


@app.command("import")
def import_command(
    dataset: Path = typer.Argument(..., metavar="DATASET_DIR", help="The folder holding 01/, 02/, ... (data/dataset/ViStory)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write <id>/story.toml and its theme."),
    stories: str = typer.Option("full", help=STORIES_HELP),
    language: str = typer.Option("en", help=LANGUAGE_HELP),
) -> None:
    """Convert ViStoryBench stories into ipprompt stories, each with a theme of its characters' references.

    Example: ipprompt vistorybench import data/dataset/ViStory --out vsb --stories lite
    """
    from ipprompt.vistorybench.driver import import_dataset

    _print_mapping()
    try:
        report = import_dataset(dataset, out, stories=stories, language=language)
    except IppromptError as error:
        raise fail(error)
    _print_imports(report)


@app.command("export")
def export_command(
    runs: List[Path] = typer.Argument(..., metavar="RUN...", help="Run folders of imported stories."),
    out: Path = typer.Option(..., "--out", "-o", help="The outputs root (the benchmark's data/outputs)."),
    method: str = typer.Option("ipprompt", help="Method folder name (bench_run.py --method)."),
    mode: str = typer.Option("base", help="Mode folder name (bench_run.py --mode)."),
    language: Optional[str] = typer.Option(None, help="en or ch. " + default("the language the stories were imported in")),
    timestamp: Optional[str] = typer.Option(None, help="YYYYMMDD_HHMMSS. " + default("now, UTC")),
    partial: bool = typer.Option(False, "--partial", help="Export the finished shots of unfinished runs too (and name the missing ones)."),
) -> None:
    """Write finished runs in the layout the benchmark's reader scores:
    OUTPUTS/<method>/<mode>/<language>/<timestamp>/<story id>/shots/shot_NN.png.

    Example: ipprompt vistorybench export runs/* --out ../vistorybench/data/outputs
    """
    from ipprompt.vistorybench.outputs import export_runs

    try:
        report = export_runs(list(runs), out, method=method, mode=mode, language=language, timestamp=timestamp, partial=partial)
    except IppromptError as error:
        raise fail(error)
    _print_export(report)


@app.command("run")
@with_settings_options
def run_command(
    dataset: Path = typer.Argument(..., metavar="DATASET_DIR", help="The folder holding 01/, 02/, ... (data/dataset/ViStory)."),
    work: Path = typer.Option(Path("vistorybench-work"), "--work", help="Stories and run folders (resumable)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The outputs root. " + default("WORK/outputs")),
    stories: str = typer.Option("lite", help=STORIES_HELP),
    language: str = typer.Option("en", help=LANGUAGE_HELP),
    method_name: str = typer.Option("ipprompt", "--method-name", help="Method folder name in the outputs (bench_run.py --method)."),
    mode_name: str = typer.Option("base", "--mode-name", help="Mode folder name in the outputs (bench_run.py --mode)."),
    timestamp: Optional[str] = typer.Option(None, help="YYYYMMDD_HHMMSS. " + default("this work folder's, else now")),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="auto|local|ADDRESS", help="Spread each story's panels over Ray workers. " + default("no Ray")),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="With --ray: at most N workers. " + default("one per GPU")),
    force: bool = typer.Option(False, "--force", help="Regenerate panels even when nothing changed."),
    settings: dict = {},
) -> None:
    """Import, run every story (resumable) and export the outputs the benchmark scores.

    Run the same command again after an interruption: finished panels are kept.

    Example: ipprompt vistorybench run data/dataset/ViStory --stories lite --fast --offload model
    """
    from ipprompt.progress import RichProgress
    from ipprompt.vistorybench.driver import run_benchmark

    options = settings  # every RunSettings option given, by name
    _print_mapping()
    try:
        result = run_benchmark(
            dataset, work, out or work / "outputs", stories=stories, language=language, method_name=method_name, mode_name=mode_name,
            timestamp=timestamp, progress_factory=RichProgress, note=lambda text: console.print(escape(text), highlight=False),
            on_import=_print_imports, ray=ray, workers=workers, force=force, **options,
        )
    except IppromptError as error:
        raise fail(error)
    if result.export is not None:
        _print_export(result.export)
    if result.failed:
        for sid, why in result.failed:
            err_console.print(f"[red]story {escape(sid)} not finished:[/] {escape(why)}", highlight=False)
        raise typer.Exit(code=2)
