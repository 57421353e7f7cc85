"""`ipprompt calibrate`: measure where previews agree with finished panels (a thin skin over
``ipprompt.pipeline.calibrate.calibrate``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ipprompt.cli.console import console, fail
from ipprompt.cli.helptext import default
from ipprompt.cli.settings_options import with_settings_options
from ipprompt.errors import IppromptError


@with_settings_options
def calibrate_command(
    story_path: Path = typer.Argument(..., metavar="STORY", help="The story's .toml file."),
    panels: Optional[str] = typer.Option(None, metavar="LIST", help="Panels to trace, e.g. 1-2; every arrangement runs every step. " + default("all")),
    report: Optional[Path] = typer.Option(None, "--report", metavar="FILE", help="Where to write the HTML report. " + default("beside the profile")),
    as_json: bool = typer.Option(False, "--json", help="Print the measurements as JSON (spearman, top1, top2, regret per σ)."),
    settings: dict = {},
) -> None:
    """Run every arrangement of some panels to the end and measure, per noise level σ, how well
    previews rank candidates as their finished panels do.

    Writes a profile under IPPROMPT_HOME (keyed by model, canvas, steps and LoRAs): later runs with
    the same key place their rungs from it. Also writes an HTML report with a plot of agreement
    against σ.

    Example:

      ipprompt calibrate stories/lighthouse.toml --panels 1-2
    """
    from ipprompt.atomic import atomic_write_text
    from ipprompt.pipeline.calibrate import calibrate
    from ipprompt.pipeline.calibration_report import report_html, report_json
    from ipprompt.progress import RichProgress

    progress = RichProgress()
    try:
        result = calibrate(story_path, panels=panels, progress=progress, **settings)
    except IppromptError as error:
        progress.close()
        raise fail(error)
    progress.close()
    data = report_json(result)
    # Beside the profile, never over it: <digest>.report.html and .report.json.
    target = report or result.profiles[0].path.with_suffix(".report.html")
    atomic_write_text(target, report_html(result))
    atomic_write_text(target.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for profile in result.profiles:
        canvas = "x".join(map(str, profile.key["canvas"]))
        console.print(f"[bold]{canvas}, {profile.key['steps']} steps[/]: profile {escape(str(profile.path))}", soft_wrap=True)
        for r in profile.rows:
            def f(v: float | None, fmt: str) -> str:
                return "-" if v is None else format(v, fmt)
            console.print(f"  σ {r.sigma:.3f} (step {r.step:>3}): spearman {f(r.spearman, '+.3f')}  top1 {f(r.top1, '.2f')}  "
                          f"top2 {f(r.top2, '.2f')}  regret {f(r.regret, '.4f')}  ({r.panels} panels)", highlight=False, soft_wrap=True)
    console.print(f"Report: {escape(str(target))} (and {escape(str(target.with_suffix('.json')))})", soft_wrap=True)
    console.print("Runs with the same model, canvas, steps and LoRAs now place their rungs from these profiles (see --dry-run).", soft_wrap=True)
