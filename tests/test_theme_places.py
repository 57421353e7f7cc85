"""Where a theme's index lives, how far a theme folder is walked, and a full disk (issue 19, items 9, 13).

"System" folders are simulated by folders outside the user's project: the rule (ipprompt/theme/
indexplace.py) writes into a theme folder only inside the story's folder (or, for theme commands
given a path, the working folder), ipprompt's own themes folder, or a theme `theme add` created.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from cli_helpers import run_cli
from conftest import EXAMPLE_THEME, STORIES
from ipprompt.errors import IppromptError
from ipprompt.theme import ThemeLibrary
from test_theme_helpers import make_images


def _story_with_theme(project: Path, theme: str) -> Path:
    """The example story copied into ``project``, its theme line pointing at ``theme``."""
    shutil.copytree(STORIES, project, ignore=shutil.ignore_patterns("index.sqlite*", "__pycache__", "themes"))
    story = project / "lighthouse.toml"
    text = story.read_text(encoding="utf-8").replace('theme = "themes/lighthouse"', f"theme = {theme!r}".replace("'", '"'))
    story.write_text(text, encoding="utf-8")
    return story


def _indexes(home: Path) -> list[Path]:
    return sorted((home / "indexes").glob("*/index.sqlite"))


def _home() -> Path:
    return Path(os.environ["IPPROMPT_HOME"])


def test_a_story_theme_outside_the_project_is_read_never_written(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    system = tmp_path / "var" / "lib"  # stands for /var/lib: not inside the story's folder
    # pictures only: a theme.toml would mark a theme made by `ipprompt theme add` (writable by rule)
    shutil.copytree(EXAMPLE_THEME, system, ignore=shutil.ignore_patterns("index.sqlite*", "theme.toml"))
    before = sorted(p.name for p in system.rglob("*"))
    story = _story_with_theme(tmp_path / "project", str(system))
    result = run_cli(capsys, "story", "run", str(story), "--backend", "preview", "--panels", "1", "--tile", "256",
                     "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in system.rglob("*")) == before  # nothing written, no index.sqlite
    [index] = _indexes(_home())
    assert index.parent.name.startswith("lib-")
    # the same folder seen again (from anywhere) reuses that index, it never moves
    with ThemeLibrary.open(system, relative_to=tmp_path) as library:
        assert library.path == system.resolve() and len(library) > 0
    assert not (system / "index.sqlite").exists() and _indexes(_home()) == [index]


def test_a_theme_inside_the_story_folder_keeps_its_index_there(capsys: pytest.CaptureFixture[str], example_copy: Path) -> None:
    result = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--panels", "1", "--tile", "256",
                     "--out", str(example_copy.parent / "run"))
    assert result.exit_code == 0, result.output
    assert (example_copy.parent / "themes" / "lighthouse" / "index.sqlite").is_file()
    assert _indexes(_home()) == []


def test_a_story_saved_in_the_home_folder_does_not_make_the_home_its_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ipprompt.theme.indexplace import index_folder, project_folders

    monkeypatch.setenv("HOME", str(tmp_path))
    cache = tmp_path / ".cache" / "pictures"  # ~/.cache passed the old deny-list
    make_images(cache, 2)
    assert project_folders(tmp_path) == []
    assert index_folder(cache, story_folder=tmp_path) != cache
    assert project_folders(Path("/")) == []


def test_var_lib_as_a_theme_never_gets_an_index(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/var/lib").is_dir() or Path("/var/lib/index.sqlite").exists():
        pytest.skip("needs a /var/lib without an index.sqlite")
    import ipprompt.theme.finding as finding

    monkeypatch.setattr(finding, "MAX_WALK_ENTRIES", 2_000)  # keep the test fast on a full /var/lib
    monkeypatch.chdir("/")  # even from a shell started in "/", which is never a project folder
    result = run_cli(capsys, "theme", "show", "/var/lib")
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 2), result.output
    assert not Path("/var/lib/index.sqlite").exists()
    assert not Path("/index.sqlite").exists()


def test_adding_images_to_a_folder_that_is_not_yours_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    make_images(archive, 2)
    make_images(tmp_path / "new", 1, start=5)
    before = sorted(p.name for p in archive.rglob("*"))
    result = run_cli(capsys, "theme", "add", str(archive), str(tmp_path / "new"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "writes nothing into" in result.stderr and "theme add NAME" in " ".join(result.stderr.split())
    assert sorted(p.name for p in archive.rglob("*")) == before


def test_walking_stops_past_the_file_limit_with_a_message(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import ipprompt.theme.finding as finding

    monkeypatch.setattr(finding, "MAX_WALK_ENTRIES", 40)
    big = tmp_path / "big"
    make_images(big, 2)
    for i in range(60):
        (big / f"notes-{i}.txt").write_text("x")
    for args in (["theme", "show", str(big)], ["story", "check", str(_story_with_theme(tmp_path / "p", str(big)))]):
        result = run_cli(capsys, *args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "more than 40 files and folders" in " ".join(result.stderr.split())


# --------------------------------------------------------------------------- a full disk (item 13)


def test_a_full_disk_says_so_and_never_suggests_deleting_the_index(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ipprompt.theme.store import ThemeStore

    make_images(tmp_path / "few", 1)
    assert run_cli(capsys, "theme", "add", "demo", str(tmp_path / "few")).exit_code == 0
    real_open = ThemeStore._open_once.__func__  # type: ignore[attr-defined]

    def full_disk(cls: type[ThemeStore], folder: Path) -> ThemeStore:
        store = real_open(cls, folder)
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
        return store

    monkeypatch.setattr(ThemeStore, "_open_once", classmethod(full_disk))
    make_images(tmp_path / "many", 8, start=10)
    result = run_cli(capsys, "theme", "add", "demo", str(tmp_path / "many"), "--caption", "x" * 20_000)
    text = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "disk is full" in text and "Keep index.sqlite" in text
    assert "delete index.sqlite" not in text.lower()
    monkeypatch.setattr(ThemeStore, "_open_once", classmethod(real_open))
    with ThemeLibrary.open("demo") as library:  # the index survived, whole
        assert len(library) == 1


def test_disk_io_error_is_named_as_a_full_disk_and_damage_as_damage(tmp_path: Path) -> None:
    from ipprompt.theme.indexerrors import index_error

    io_error = index_error(sqlite3.OperationalError("disk I/O error"), tmp_path / "index.sqlite")
    assert "disk is full" in io_error.message and "delete" not in (io_error.hint or "").lower()
    damaged = index_error(sqlite3.DatabaseError("file is not a database"), tmp_path / "index.sqlite")
    assert "damaged" in damaged.message and "keep it" in (damaged.hint or "")


def test_opening_an_index_on_a_full_disk_is_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ipprompt.theme.store import ThemeStore

    def no_space(cls: type[ThemeStore], folder: Path) -> ThemeStore:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ThemeStore, "_open_once", classmethod(no_space))
    make_images(tmp_path / "refs", 2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(IppromptError, match="disk is full") as caught:
        ThemeLibrary.open(tmp_path / "refs")
    assert "delete index.sqlite" not in str(caught.value).lower()
