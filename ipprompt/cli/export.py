"""`ipprompt story export`: a run as a comic to share (PDF, CBZ, PNG pages).

Kept in its own module so the story commands can register it with one line; it only parses
options and prints, the work is ``ipprompt.export.export_run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ipprompt.cli.console import console, err_console, fail
from ipprompt.errors import IppromptError
from ipprompt.export.sizes import DEFAULT_DPI, DEFAULT_PAGE_SIZE, MAX_DPI, MIN_DPI, PAGE_SIZES


def export(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run folder (holds manifest.json)."),
    pdf: Optional[Path] = typer.Option(None, "--pdf", help="Write a PDF to this file."),
    cbz: Optional[Path] = typer.Option(None, "--cbz", help="Write a CBZ (comic-reader archive with ComicInfo.xml) to this file."),
    pages: Optional[Path] = typer.Option(
        None, "--pages", help="Write PNG pages (page-000.png is the title page) to this folder; it must be new, empty, or hold only earlier pages.",
    ),
    page_size: str = typer.Option(DEFAULT_PAGE_SIZE, "--page-size", help=f"{' | '.join(PAGE_SIZES)} (comic: 6.625 x 10.25 in, the US comic book)."),
    dpi: int = typer.Option(DEFAULT_DPI, "--dpi", help=f"Pixels per inch, {MIN_DPI}-{MAX_DPI}: 150 for screens, 300 for print."),
) -> None:
    """Export a run as a comic: a title page, then the panels on pages with captions and speech bubbles lettered in.

    Needs no model: a run that is not finished exports too, pending panels as empty frames with their prompt. Panels sit on a 2 x 3 grid in reading order; wide panels span two columns, tall ones two rows.

    Examples:

      ipprompt story export runs/lighthouse --pdf lighthouse.pdf

      ipprompt story export runs/lighthouse --cbz lighthouse.cbz --page-size comic

      ipprompt story export runs/lighthouse --pages pages/ --page-size a4 --dpi 300
    """
    from ipprompt.export import export_run

    try:
        result = export_run(run_dir, pdf=pdf, cbz=cbz, pages_dir=pages, page_size=page_size, dpi=dpi)
    except IppromptError as error:
        raise fail(error)
    for warning in result.warnings:
        err_console.print(escape(warning), soft_wrap=True)
    pending = f"; {result.pending} panel{'s' if result.pending != 1 else ''} not drawn yet (empty frames)" if result.pending else ""
    console.print(f"{result.pages} pages (title page included){pending}.", highlight=False)
    for path in result.written:
        console.print(f"Wrote [bold]{escape(str(path))}[/]")
