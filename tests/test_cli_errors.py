"""CLI usage errors print click's message and exit 2, with the newest and the oldest typer/click.

typer 0.29 vendors click as ``typer._click``, whose exceptions are not ``click.ClickException``;
the error wrapper once let them through as a traceback with exit 1. The oldest versions are the
lower bounds pyproject.toml declares, installed once into a cache folder with ``pip --target``
and put first on PYTHONPATH, so both ends of the declared range are exercised.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

USAGE_ERRORS = [
    (["story", "run"], "Missing argument"),
    (["story", "run", "stories/lighthouse.toml", "--steps", "many"], "--steps"),
    (["story", "pick", "RUN", "abc", "1"], "PANEL"),
]


def _lower_bound(package: str) -> str:
    """The ``>=`` version pyproject.toml declares for ``package``."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    for dep in deps:
        match = re.match(rf"^{package}\s*>=\s*([0-9][0-9.]*)", dep)
        if match:
            return match.group(1)
    raise AssertionError(f"pyproject.toml declares no lower bound for {package}")


def _run(args: list[str], pythonpath: Path | None = None, columns: int = 100) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS=str(columns), NO_COLOR="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "ipprompt", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="session")
def oldest_cli() -> Path:
    """A folder holding the oldest declared typer and click (installed once, then reused)."""
    typer_version, click_version = _lower_bound("typer"), _lower_bound("click")
    root = Path.home() / ".cache" / "ipprompt-tests" / "oldest-cli"
    target = root / f"typer-{typer_version}_click-{click_version}"
    if (target / "typer" / "__init__.py").is_file() and (target / "click" / "__init__.py").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{target.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
        "--target", str(staging), f"typer=={typer_version}", f"click=={click_version}",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.skip(f"pip could not install typer=={typer_version} click=={click_version} within 300 s (no registry?)")
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"pip could not install typer=={typer_version} click=={click_version} (offline?): {last}")
    try:
        staging.rename(target)
    except OSError:  # another session installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _assert_usage_error(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "Usage: ipprompt" in done.stderr and "Error:" in done.stderr, done.stderr
    assert expected in done.stderr, done.stderr


@pytest.mark.parametrize(("args", "expected"), USAGE_ERRORS, ids=["bare-run", "steps-many", "pick-abc"])
def test_usage_errors_exit_2_with_installed_typer(args: list[str], expected: str) -> None:
    _assert_usage_error(_run(args), expected)


@pytest.mark.slow  # subprocesses: the whole suite runs it, the quick tier does not
def test_usage_errors_exit_2_with_oldest_declared_typer_and_click(oldest_cli: Path) -> None:
    probe = _run(["--help"], pythonpath=oldest_cli)
    assert probe.returncode == 0, probe.stderr
    version = subprocess.run(
        [sys.executable, "-c", "import typer, click; print(typer.__file__, click.__version__)"],
        env=dict(os.environ, PYTHONPATH=str(oldest_cli)), capture_output=True, text=True, timeout=60,
    ).stdout
    assert str(oldest_cli) in version and _lower_bound("click") in version, version
    for args, expected in USAGE_ERRORS:
        _assert_usage_error(_run(args, pythonpath=oldest_cli), expected)
    check = _run(["story", "check", "stories/lighthouse.toml"], pythonpath=oldest_cli)
    assert check.returncode == 0, check.stdout + check.stderr
    helped = _run(["story", "run", "--help"], pythonpath=oldest_cli, columns=80)
    assert helped.returncode == 0, helped.stderr
    assert "…" not in helped.stdout and "[default: None]" not in helped.stdout and "\\[" not in helped.stdout
    wide = _run(["story", "run", "--help"], pythonpath=oldest_cli, columns=250)
    assert "[default: as remembered, else the story's, else 28]" in wide.stdout, wide.stdout


def test_user_error_in_process_is_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    """The in-process wrapper (what tests and the console script call) also returns 2."""
    from ipprompt.cli import app
    from ipprompt.cli.console import run_cli_errors

    assert run_cli_errors(app, ["story", "run", "x.toml", "--steps", "many"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_ctrl_c_outside_a_run_says_how_to_resume_and_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    """click turns Ctrl-C into "Aborted!" (exit 1) and typer 0.29 into a silent 130: neither tells
    the user what to do; the wrapper must, on every version."""
    import typer

    from ipprompt.cli.console import run_cli_errors

    demo = typer.Typer()

    @demo.command("load")
    def load() -> None:
        raise KeyboardInterrupt  # Ctrl-C while a command loads, before any run catches it

    @demo.command("other")
    def other() -> None:  # a second command keeps "load" a sub-command, as in ipprompt
        pass

    assert run_cli_errors(demo, ["load"]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
