"""`ipprompt theme ...` end to end, in-process, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cli_helpers import run_cli
from ipprompt.theme import ThemeLibrary
from test_theme_helpers import copy_example_theme, make_bad_files, make_images

COMMANDS = ["add", "list", "show", "search", "rm", "reindex"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_teaches_with_an_example(capsys: pytest.CaptureFixture[str], command: str) -> None:
    result = run_cli(capsys, "theme", command, "--help")
    assert result.exit_code == 0
    assert "Example: ipprompt theme " + command in " ".join(result.stdout.split())


def test_add_list_show_search_rm_reindex(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_clip_dir: Path) -> None:
    make_images(tmp_path / "src", 6)
    added = run_cli(capsys, "theme", "add", "demo", tmp_path / "src", "--tag", "flat", "--encoder", tiny_clip_dir)
    assert added.exit_code == 0, added.output
    assert "Created theme demo" in added.stdout and "6 added, 0 duplicates, 0 refused" in added.stdout

    again = run_cli(capsys, "theme", "add", "demo", str(tmp_path / "src" / "*.png"))
    assert again.exit_code == 0 and "0 added, 2 duplicates, 0 refused" in again.stdout

    listed = run_cli(capsys, "theme", "list")
    assert listed.exit_code == 0 and "demo" in listed.stdout and " 6 " in listed.stdout

    sheet = tmp_path / "sheet.png"
    shown = run_cli(capsys, "theme", "show", "demo", "--sheet", sheet)
    assert shown.exit_code == 0, shown.output
    assert "a red picture number 0" in shown.stdout and "flat" in shown.stdout
    assert "6 encoded" in " ".join(shown.stdout.split())
    with Image.open(sheet) as picture:
        assert picture.width > 160 and picture.height > 160

    found = run_cli(capsys, "theme", "search", "demo", "a red picture", "-k", "3", "--json")
    assert found.exit_code == 0, found.output
    payload = json.loads(found.stdout)
    assert payload["mode"] == "clip" and payload["encoder"] == str(tiny_clip_dir)
    assert [r["rank"] for r in payload["results"]] == [1, 2, 3]
    scores = [r["score"] for r in payload["results"]]
    assert scores == sorted(scores, reverse=True)

    table = run_cli(capsys, "theme", "search", "demo", "a red picture")
    assert table.exit_code == 0 and "mode clip" in table.stdout

    victim = payload["results"][0]
    removed = run_cli(capsys, "theme", "rm", "demo", victim["sha256"][:8])
    assert removed.exit_code == 0, removed.output
    assert "Removed" in removed.stdout and "5 images left" in removed.stdout
    assert not Path(victim["path"]).exists()

    reindexed = run_cli(capsys, "theme", "reindex", "demo", "--encoder", tiny_clip_dir)
    assert reindexed.exit_code == 0, reindexed.output
    assert "encoded 5 of 5 images" in reindexed.stdout


def test_all_refused_exits_2_and_names_each_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = make_bad_files(tmp_path / "src")
    result = run_cli(capsys, "theme", "add", "broken", bad["empty"], bad["text"], bad["truncated"], tmp_path / "missing.png")
    assert result.exit_code == 2
    for name in ("empty.png", "notes.png", "truncated.png", "missing.png"):
        assert name in result.stderr
    assert "0 added, 0 duplicates, 4 refused" in result.stdout
    assert "Traceback" not in result.output


def test_missing_encoder_adds_anyway_and_search_falls_back_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    make_images(tmp_path / "src", 3)
    added = run_cli(capsys, "theme", "add", "nomodel", tmp_path / "src", "--encoder", "nobody/no-such-clip")
    assert added.exit_code == 0, added.output
    assert added.stderr.count("No CLIP model available") == 1
    assert "computed later" in " ".join(added.stderr.split())
    assert "3 added" in added.stdout and "Traceback" not in added.output

    found = run_cli(capsys, "theme", "search", "nomodel", "a green picture", "--json")
    assert found.exit_code == 0, found.output
    assert found.stderr.count("No CLIP model available") == 1
    payload = json.loads(found.stdout)
    assert payload["mode"] == "lexical" and payload["encoder"] is None
    assert payload["results"][0]["caption"] == "a green picture number 2"

    table = run_cli(capsys, "theme", "search", "nomodel", "a green picture")
    assert "mode lexical" in table.stdout and "Traceback" not in table.output


def test_reindex_without_a_model_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    theme = copy_example_theme(tmp_path)
    result = run_cli(capsys, "theme", "reindex", theme, "--encoder", "nobody/no-such-clip")
    assert result.exit_code == 2
    assert "Could not load the CLIP encoder model 'nobody/no-such-clip'" in result.stderr
    assert "Traceback" not in result.output


def test_rm_errors_leave_the_theme_untouched(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    theme = copy_example_theme(tmp_path)
    count = len(list(theme.glob("*.png")))
    short = run_cli(capsys, "theme", "rm", theme, "mira_raincoat_standing.png", "ab")
    assert short.exit_code == 2 and "too short" in short.stderr
    unknown = run_cli(capsys, "theme", "rm", theme, "no_such_picture.png")
    assert unknown.exit_code == 2 and "No image 'no_such_picture.png'" in unknown.stderr
    with ThemeLibrary.open(theme) as library:
        assert len(library) == count

    by_name = run_cli(capsys, "theme", "rm", theme, "mira_raincoat_standing.png")
    assert by_name.exit_code == 0 and "file kept" in by_name.stdout
    assert (theme / "mira_raincoat_standing.png").exists()
    with ThemeLibrary.open(theme) as library:
        assert len(library) == count - 1


def test_show_of_an_unknown_theme_and_an_empty_list(capsys: pytest.CaptureFixture[str]) -> None:
    empty = run_cli(capsys, "theme", "list")
    assert empty.exit_code == 0 and "No themes yet" in empty.stdout
    missing = run_cli(capsys, "theme", "show", "nonexistent")
    assert missing.exit_code == 2 and "Theme 'nonexistent' not found" in missing.stderr
    assert "Traceback" not in missing.output


def test_show_with_a_bad_sheet_name_is_a_user_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    theme = copy_example_theme(tmp_path)
    result = run_cli(capsys, "theme", "show", theme, "--sheet", tmp_path / "sheet.nope")
    assert result.exit_code == 2 and "unknown image extension" in result.stderr


def test_add_with_nothing_to_add_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli(capsys, "theme", "add", "nothing", tmp_path / "empty")
    assert result.exit_code == 2 and "No image files found" in result.stderr
