"""`ipprompt studio`: the author's loop in the browser, served from this machine.

Only parses options, says where the studio is, and serves; the work is in ``ipprompt.studio``.
The studio is an optional extra: without its packages the command says how to install them.
"""

from __future__ import annotations

import importlib
import threading
import webbrowser
from pathlib import Path

import typer
from rich.markup import escape

from ipprompt.cli.console import console, fail
from ipprompt.errors import IppromptError

STUDIO_PACKAGES = ("starlette", "uvicorn", "tomlkit")
DEFAULT_PORT = 8765


def missing_packages() -> list[str]:
    """The studio extra's packages that cannot be imported here."""
    missing = []
    for name in STUDIO_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def studio(
    target: Path = typer.Argument(..., metavar="RUN_OR_STORY", help="A run folder (runs/NAME), or a story file: then its run folder, runs/<story name>/, is used or created."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535, help="Port to listen on; 0 picks a free one (the printed URL shows it)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Only this machine can connect to 127.0.0.1; 0.0.0.0 opens the studio to your network (asked for explicitly, with a warning)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Print the URL but do not open a browser."),
) -> None:
    """Open a run in the browser and work on it: pick candidates, reroll, edit words, restore, run, export.

    Every request needs the token in the printed URL; only the run folder's own files are served. Generation runs in one background queue you can watch and cancel; `ipprompt story run` may work on the same folder meanwhile. Ctrl-C stops the studio.

    Examples:

      ipprompt studio runs/lighthouse

      ipprompt studio stories/lighthouse.toml --port 0 --no-browser
    """
    missing = missing_packages()
    if missing:
        raise fail(IppromptError(
            f"The studio needs packages that are not installed: {', '.join(missing)}.",
            'Install the studio extra: pip install "ipprompt[studio]"',
        ))
    from ipprompt.studio.server import exposed, prepare, resolve_target

    try:
        run_dir, story = resolve_target(target)
        running = prepare(run_dir, story, host=host, port=port)
    except IppromptError as error:
        raise fail(error)
    if exposed(host):
        console.print(
            f"[bold red]Warning:[/] listening on {escape(host)}: other machines on your network can reach the studio. "
            "Anyone with the token can start jobs and change your story; use it only on a network you trust.",
            highlight=False,
        )
    console.print(f"Studio for [bold]{escape(str(run_dir))}[/]" + (f" (story {escape(str(story))})" if story else ""), highlight=False)
    console.print(f"Open: {escape(running.url)}", highlight=False, soft_wrap=True)
    console.print("Ctrl-C stops it.", highlight=False)
    if not no_browser:
        threading.Timer(0.5, webbrowser.open, args=(running.url,)).start()
    running.run_forever()
