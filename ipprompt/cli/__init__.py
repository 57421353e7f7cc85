"""The `ipprompt` command line: a thin Typer skin over the library.

Each sub-app parses arguments, calls one library function and prints with rich. Errors a user can
fix (``IppromptError``) are printed as a message and a hint with exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from ipprompt.cli import doctor, story, theme, vistorybench
from ipprompt.cli import calibrate as calibrate_cli
from ipprompt.cli import eval as eval_cli
from ipprompt.cli import studio as studio_cli
from ipprompt.cli.console import run_cli_errors

app = typer.Typer(
    name="ipprompt",
    help=(
        "Turn a story written in TOML into a storyboard of comic panels that stay true to a theme "
        "(a library of reference images), by visual prompting with FLUX.1-Fill-dev.\n\n"
        "Start with:  ipprompt story check stories/lighthouse.toml\n\n"
        "Then:        ipprompt story run stories/lighthouse.toml --backend preview"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",  # the same help on every typer: \[ escapes, no literal backslashes
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(story.app, name="story")
app.add_typer(theme.app, name="theme")
app.add_typer(vistorybench.app, name="vistorybench")
app.command("doctor")(doctor.doctor)
app.command("eval")(eval_cli.eval_command)
app.command("calibrate")(calibrate_cli.calibrate_command)
app.command("studio")(studio_cli.studio)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_cli_errors(app))
