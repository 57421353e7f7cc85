"""`ipprompt story pick` and `ipprompt story history`: the author's choice of a panel's image.

A thin skin over ``ipprompt.runfolder.picks``; every change re-renders the storyboard so it shows the pick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ipprompt.cli.console import console, fail
from ipprompt.cli.helptext import default
from ipprompt.errors import IppromptError


def pick(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder (holds manifest.json)."),
    panel: int = typer.Argument(..., metavar="PANEL", help="Panel number (as on the storyboard)."),
    candidate: Optional[int] = typer.Argument(None, metavar="[CANDIDATE]", help="Candidate number (#N in the inspector)."),
    auto: bool = typer.Option(False, "--auto", help="Return to the scorer's choice."),
    from_history: Optional[str] = typer.Option(
        None, "--from-history", metavar="NAME", help="Bring back an earlier image (see `ipprompt story history`). " + default("none")
    ),
) -> None:
    """Choose a panel's image: another candidate, the scorer's choice, or an earlier image.

    A pruned candidate (only previewed) is finished by the next `ipprompt story run`, which makes that candidate alone. Later runs keep a pick as long as the panel's story text and settings are unchanged. Nothing is deleted: a replaced image stays with its candidate or in history/.

    Examples:

      ipprompt story pick runs/lighthouse 3 2

      ipprompt story pick runs/lighthouse 3 --auto

      ipprompt story pick runs/lighthouse 3 --from-history 03-5f0c9a2e.png
    """
    from ipprompt.runfolder import picks
    from ipprompt.storyboard.render import render_storyboard

    given = sum([candidate is not None, auto, from_history is not None])
    try:
        if given != 1:
            raise IppromptError(
                "Say what to pick: a CANDIDATE number, --auto or --from-history NAME (exactly one).",
                f"Example: ipprompt story pick {run_dir} {panel} 2",
            )
        if auto:
            entry = picks.pick_auto(run_dir, panel)
            said = f"Panel {panel} shows the scorer's choice again (candidate #{entry.chosen})."
        elif from_history is not None:
            entry = picks.restore(run_dir, panel, from_history)
            said = f"Panel {panel} shows {entry.picked_from_history} again; the image it replaced is kept (with its candidate, or in history/)."
        else:
            assert candidate is not None
            entry = picks.pick(run_dir, panel, candidate)
            if entry.pick_to_finish is not None:
                said = (
                    f"Picked candidate #{candidate} of panel {panel}. It was only previewed: the next "
                    "`ipprompt story run` of this story finishes it (that candidate alone)."
                )
            else:
                said = f"Panel {panel} now shows candidate #{candidate}, picked by you."
        storyboard = render_storyboard(run_dir)
    except IppromptError as error:
        raise fail(error)
    console.print(escape(said))
    console.print(f"Storyboard: [bold]{escape(str(storyboard))}[/]")


def history(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder (holds manifest.json)."),
    panel: int = typer.Argument(..., metavar="PANEL", help="Panel number (as on the storyboard)."),
) -> None:
    """List a panel's earlier images (replaced by reruns, rerolls and picks), oldest first.

    Example: ipprompt story history runs/lighthouse 3
    """
    from ipprompt.runfolder import picks

    try:
        items = picks.history(run_dir, panel)
    except IppromptError as error:
        raise fail(error)
    if not items:
        console.print(f"Panel {panel} has no earlier images.")
        return
    table = Table(title=escape(f"Panel {panel}: earlier images in {run_dir / 'history'}"), title_justify="left")
    for col in ("name", "saved (UTC)", "size", ""):
        table.add_column(col)
    for h in items:
        size = f"{h.width}x{h.height}" if h.width else "unreadable"
        table.add_row(escape(h.name), h.modified.replace("+00:00", ""), size, "shown now" if h.current else "")
    console.print(table)
    console.print(escape(f"Bring one back: ipprompt story pick {run_dir} {panel} --from-history {items[-1].name}"), soft_wrap=True)
