"""Run the CLI in-process exactly as the console script does, capturing what the user sees."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    """Invoke ``ipprompt ARGS`` through the real entry point; never raises for user errors."""
    from ipprompt.cli import app
    from ipprompt.cli.console import run_cli_errors

    capsys.readouterr()
    code = run_cli_errors(app, [str(a) for a in args])
    out = capsys.readouterr()
    return CliResult(code, out.out, out.err)
