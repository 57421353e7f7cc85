"""Shared by the studio tests: a quick preview run of the example story, and a studio over it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Small and fast, and the same for every run of a test folder (the studio passes them to run_story).
OPTIONS: dict[str, Any] = {"backend": "preview", "tile": 256, "candidates": 3, "rounds": 1}


def make_run(story: Path, panels: str = "1-3", **extra: Any) -> Path:
    """A preview run of ``story`` into ``runs/<stem>`` beside the story's folder."""
    from ipprompt.pipeline.run import run_story

    out = story.parent.parent / "runs" / story.stem
    run_story(story, out=out, panels=panels, **{**OPTIONS, **extra})
    return out


def manifest(run_dir: Path) -> dict[str, Any]:
    """The run's whole manifest as JSON: ``manifest.json`` is an index, each done panel's full entry
    (candidates, settings) is its record ``panels/NN/panel.json``; ``read_manifest`` joins them."""
    from ipprompt.runfolder.manifest import read_manifest

    return json.loads(read_manifest(run_dir).model_dump_json())


def panel(run_dir: Path, number: int) -> dict[str, Any]:
    return next(p for p in manifest(run_dir)["panels"] if p["number"] == number)


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(lines removed, lines added) between two versions of a file: a layout kept changes only these."""
    import difflib

    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def comments(text: str) -> list[str]:
    """Every comment line of a TOML file (whole-line comments), in order."""
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]
