"""The story format: the example is valid, and every kind of mistake is reported where it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import run_cli
from conftest import EXAMPLE_STORY
from ipprompt.story.loading import StoryError, load_story

VALID = """\
title = "Test"
theme = "theme"

[generation]
tile = 256
grid = 3
candidates = 2

[characters.mira]
name = "Mira"
description = "a girl in a yellow raincoat"
refs = ["mira.png"]

[scenes.cliff]
description = "a lighthouse on a cliff"

[[panels]]
prompt = "Mira waves"
characters = ["mira"]
scene = "cliff"
dialogue = [{ speaker = "mira", text = "Hello" }]

[[panels]]
prompt = "The sea at night"
scene = "cliff"
"""


def write_story(folder: Path, text: str) -> Path:
    from PIL import Image

    (folder / "theme").mkdir(exist_ok=True)
    Image.new("RGB", (32, 32), (200, 180, 0)).save(folder / "mira.png")
    path = folder / "story.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_story_is_valid() -> None:
    story = load_story(EXAMPLE_STORY)
    assert len(story.panels) >= 8
    assert len(story.characters) >= 2 and len(story.scenes) >= 3
    assert any(c.refs for c in story.characters.values())
    assert any(p.caption for p in story.panels) and any(p.dialogue for p in story.panels)
    for cid in story.characters:
        for ref in story.ref_paths(cid):
            assert ref.is_file()


def test_valid_story_loads_typed_objects(tmp_path: Path) -> None:
    story = load_story(write_story(tmp_path, VALID))
    assert story.generation.tile == 256 and story.generation.steps == 28  # the default budget (balanced)
    assert story.panels[0].dialogue[0].speaker == "mira"
    assert story.display_name("mira") == "Mira"
    assert story.ref_paths("mira")[0] == (tmp_path / "mira.png").resolve()


# (name, change to VALID, text the message must contain, line the message must name or None)
MALFORMED = [
    ("toml syntax", ("candidates = 2", "candidates = = 2"), "TOML syntax error", 7),
    ("unknown top-level key", ('title = "Test"', 'title = "Test"\ntitel = "x"'), "unknown key 'titel'", 2),
    ("unknown panel key", ('prompt = "Mira waves"', 'prompt = "Mira waves"\npromt = "x"'), "panels[0].promt", 19),
    ("missing prompt", ('prompt = "The sea at night"\n', ""), "panels[1].prompt: required key is missing", None),
    ("unknown character", ('characters = ["mira"]', 'characters = ["mria"]'), "did you mean 'mira'", 19),
    ("unknown scene", ('scene = "cliff"\ndialogue', 'scene = "clif"\ndialogue'), "panels[0].scene: unknown scene id 'clif'; did you mean 'cliff'", 20),
    ("tile not multiple of 16", ("tile = 256", "tile = 500"), "generation.tile: must be a multiple of 16 (FLUX works on 16 px blocks); try 496 or 512", 5),
    ("grid 4", ("grid = 3", "grid = 4"), "generation.grid", 6),
    ("candidates 0", ("candidates = 2", "candidates = 0"), "generation.candidates: must be at least 1", 7),
    ("missing ref file", ('refs = ["mira.png"]', 'refs = ["missing.png"]'), "characters.mira.refs[0]: reference image not found", 12),
    ("empty panels", (None, 'title = "T"\ntheme = "theme"\npanels = []\n'), "panels", 3),
    ("wrong type", ("tile = 256", 'tile = "256"'), "generation.tile: expected integer", 5),
    ("unknown speaker", ('speaker = "mira"', 'speaker = "mirra"'), "dialogue[0].speaker", 21),
    ("unknown generation key", ("grid = 3", "grid = 3\nsteeps = 4"), "unknown key 'steeps'; did you mean 'steps'", 7),
    ("bad backend", ("tile = 256", 'tile = 256\nbackend = "flux"'), "did you mean 'flux-fill'", 6),
]


@pytest.mark.parametrize("name,change,expected,line", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_story_is_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, change: tuple[str | None, str], expected: str, line: int | None
) -> None:
    old, new = change
    text = new if old is None else VALID.replace(old, new, 1)
    assert old is None or text != VALID, "the change must apply"
    path = write_story(tmp_path, text)
    result = run_cli(capsys, "story", "check", str(path))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert str(path) in result.stderr
    assert expected in result.stderr, result.stderr
    if line is not None:
        assert f"{path}:{line}" in result.stderr, result.stderr


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = VALID.replace("tile = 256", "tile = 500").replace("grid = 3", "grid = 5")
    with pytest.raises(StoryError) as info:
        load_story(write_story(tmp_path, text))
    keys = [p.key for p in info.value.problems]
    assert "generation.tile" in keys and "generation.grid" in keys


def test_missing_story_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run_cli(capsys, "story", "check", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert "Story file not found" in result.stderr and "Traceback" not in result.output


def test_story_check_summary(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "story", "check", str(EXAMPLE_STORY))
    assert result.exit_code == 0, result.output
    assert "Story is valid" in result.stdout
    assert "pinned ref" in result.stdout and "images" in result.stdout


def test_help_and_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--help"], ["story", "--help"], ["story", "run", "--help"], ["doctor"]):
        result = run_cli(capsys, *args)
        assert result.exit_code == 0, (args, result.output)
    assert "suggested memory mode" in result.stdout
