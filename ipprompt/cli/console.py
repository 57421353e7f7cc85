"""One rich console for the CLI, and the single place user errors become exit codes."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from ipprompt.errors import IppromptError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def print_error(error: IppromptError) -> None:
    """Print a user error as a red message and a plain hint (no traceback)."""
    err_console.print(f"[bold red]error:[/] {escape(error.message)}", highlight=False, markup=True)
    if error.hint:
        err_console.print(error.hint, highlight=False, markup=False)


def fail(error: IppromptError) -> typer.Exit:
    """Print ``error`` and return the Exit to raise, so commands read ``raise fail(e)``."""
    print_error(error)
    return typer.Exit(code=error.exit_code)


def run_cli_errors(app: Any, args: list[str] | None = None) -> int:
    """Run the Typer app; a stray IppromptError still ends as a message and exit 2.

    Tests call this with ``args`` so they exercise exactly what the console script does.
    """
    try:
        rv = app(args=args, standalone_mode=False, prog_name="ipprompt")
    except IppromptError as error:
        print_error(error)
        return error.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted.[/] Finished panels are kept; run the same command again to resume.")
        return 130
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            err_console.print("Aborted.")
            return 1
        raise
    return rv if isinstance(rv, int) else 0
