"""What --help and the README tell a newcomer must be true (issue 19, "README and help truths").

Help fits an 80-column terminal without cut words, every option shows its default, the run folder
is RUN in every command, and the examples a newcomer copies work on a fresh install.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
import typer.main

from cli_helpers import run_cli
from conftest import REPO, STORIES

README = (REPO / "README.md").read_text(encoding="utf-8")


def _commands() -> Iterator[tuple[list[str], Any]]:
    from ipprompt.cli import app

    def walk(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, path + [name])

    yield from walk(typer.main.get_command(app), [])


COMMAND_PATHS = [" ".join(path) for path, _ in _commands()]


@pytest.mark.parametrize("command", COMMAND_PATHS)
def test_help_fits_80_columns_without_cut_words(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                command: str) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = run_cli(capsys, *command.split(), "--help")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    cut = [line for line in lines if "…" in line]
    assert not cut, "\n".join(cut)
    assert "\\[" not in result.stdout  # markup escapes are rendered, not printed


def test_every_option_shows_its_default() -> None:
    missing = []
    for path, command in _commands():
        for param in getattr(command, "params", []):
            if param.param_type_name != "option" or param.name == "help" or param.required:
                continue  # a required option has no default to show
            off_flag = getattr(param, "is_flag", False) and param.default is False
            shown_by_typer = param.show_default and param.default not in (None, [], ())
            in_help = "[default:" in (param.help or "").replace("\\[", "[")
            if not (off_flag or shown_by_typer or in_help):
                missing.append(f"{' '.join(path)} --{param.name}")
    assert not missing, missing


def test_story_run_defaults_are_the_story_schema_defaults() -> None:
    from ipprompt.story.schema import Generation

    [(_, run)] = [(p, c) for p, c in _commands() if p == ["story", "run"]]
    helps = {p.name: (p.help or "") for p in run.params}
    assert helps["steps"].endswith(f"else {Generation.model_fields['steps'].default}]")
    assert helps["candidates"].endswith(f"else {Generation.model_fields['candidates'].default}]")
    assert "FLUX.1-Fill-dev (black-forest-labs)" in helps["model"]


def test_the_run_folder_argument_is_called_run_everywhere() -> None:
    names = {}
    for path, command in _commands():
        for param in getattr(command, "params", []):
            if param.param_type_name == "argument" and param.name in ("run_dir", "run_dirs", "runs", "run"):
                names[" ".join(path)] = param.metavar
    assert set(names) >= {"story render", "story open", "story export", "story pick", "story history", "eval"}, names
    assert {m.rstrip(".") for m in names.values()} == {"RUN"}, names
    assert "RUN_DIR" not in README


def test_fast_nfe_agrees_between_help_and_readme() -> None:
    [(_, run)] = [(p, c) for p, c in _commands() if p == ["story", "run"]]
    [fast] = [p for p in run.params if p.name == "fast"]
    assert "34 NFE per panel (at most 40)" in (fast.help or "")
    assert "8 steps, 34 NFE" in README and "34 NFE per panel" in README
    assert "<= 40 NFE" not in (fast.help or "")


@pytest.mark.parametrize("command", ["show", "search"])
def test_theme_help_examples_work_on_a_fresh_install(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """The example is copied from --help and run in a fresh clone's folder with no named theme."""
    import shlex

    monkeypatch.setenv("COLUMNS", "200")  # the example on one line
    help_text = run_cli(capsys, "theme", command, "--help").stdout
    [example] = re.findall(rf"Example: (ipprompt theme {command} [^│\n]*)", help_text)
    shutil.copytree(STORIES, tmp_path / "stories", ignore=shutil.ignore_patterns("index.sqlite*", "__pycache__"))
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, *shlex.split(example.strip())[1:])
    assert result.exit_code == 0, result.output


def test_readme_pick_example_names_a_candidate_the_example_run_has(
    capsys: pytest.CaptureFixture[str], example_copy: Path
) -> None:
    import shlex

    [example] = re.findall(r"^(ipprompt story pick runs/lighthouse \d+ \d+)\s", README, flags=re.M)
    _, _, _, _, panel, candidate = shlex.split(example)
    out = example_copy.parent / "run"
    made = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--panels", panel, "--tile", "256",
                   "--out", str(out))
    assert made.exit_code == 0, made.output
    picked = run_cli(capsys, "story", "pick", str(out), panel, candidate)
    assert picked.exit_code == 0, picked.output


def test_readme_names_grids_as_written() -> None:
    assert "`grid-K.jpg`" in README
    assert "IPPROMPT_HOME" in README and "Chromium" in README and '-m "not slow"' in README
