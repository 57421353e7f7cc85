"""One rich console for the CLI, and the single place user errors become exit codes."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from ipprompt.errors import IppromptError
from ipprompt.progress import SafeConsole

# Safe consoles: story text and run folders are other people's text (no raw escape sequences).
console = SafeConsole()
err_console = SafeConsole(stderr=True, soft_wrap=True)


def print_error(error: IppromptError) -> None:
    """Print a user error as a red message and a plain hint (no traceback)."""
    err_console.print(f"[bold red]error:[/] {escape(error.message)}", highlight=False, markup=True)
    if error.hint:
        err_console.print(error.hint, highlight=False, markup=False)


def fail(error: IppromptError) -> typer.Exit:
    """Print ``error`` and return the Exit to raise, so commands read ``raise fail(e)``."""
    print_error(error)
    return typer.Exit(code=error.exit_code)


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Click's usage-error and abort classes, from every click a typer may use.

    typer up to 0.2x runs on the ``click`` package; typer 0.29 vendors its own copy as
    ``typer._click`` whose exceptions are different classes. A user may have either, so both are
    collected (whichever import), and a usage error from either prints click's message, exit 2.
    """
    import importlib

    usage: list[type] = []
    aborts: list[type] = []
    for module_name in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name, bucket in (("ClickException", usage), ("Abort", aborts)):
            cls = getattr(module, name, None)
            if isinstance(cls, type) and cls not in bucket:
                bucket.append(cls)
    return tuple(usage), tuple(aborts)


def _invoke(app: Any, args: list[str] | None) -> Any:
    """Parse and run the command, letting every exception reach ``run_cli_errors`` as raised.

    The command is invoked directly rather than through ``app(standalone_mode=False)``: click's
    main turns Ctrl-C into ``Abort`` (exit 1, "Aborted!") and typer 0.29's into a silent exit
    130, both before we could say how to resume. Invoking it here keeps ``KeyboardInterrupt``
    whole, with the same result on every typer and click.
    """
    import sys

    import typer.main

    command = typer.main.get_command(app)
    argv = list(sys.argv[1:] if args is None else args)
    with command.make_context("ipprompt", argv) as ctx:
        return command.invoke(ctx)


def run_cli_errors(app: Any, args: list[str] | None = None) -> int:
    """Run the Typer app; a stray IppromptError still ends as a message and exit 2.

    Click's own usage errors (a missing argument, ``--steps many``) print click's usual message
    ("Usage: ... Error: ...") and exit with click's code (2), with the click or the typer-vendored
    click alike. Tests call this with ``args`` so they exercise exactly what the console script does.
    """
    usage_errors, aborts = _click_exception_types()
    try:
        rv = _invoke(app, args)
    except IppromptError as error:
        print_error(error)
        return error.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted.[/] Finished panels are kept; run the same command again to resume.")
        return 130
    except usage_errors as exc:  # type: ignore[misc]  # a tuple of classes known only at run time
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    except aborts:  # type: ignore[misc]
        err_console.print("Aborted.")
        return 1
    except EOFError:  # a prompt's input ended
        err_console.print("Aborted.")
        return 1
    except OSError as exc:  # a symlink loop, a full or read-only disk: the user's disk, not a bug
        from ipprompt.errors import classify

        known = classify(exc)
        if known is None:
            raise
        print_error(known)
        return known.exit_code
    return rv if isinstance(rv, int) else 0
