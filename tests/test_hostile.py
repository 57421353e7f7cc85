"""Hostile input: link loops, `/` as a theme, a lost index, markup in names, leaking links, odd stories.

Each test builds the bad input for real (links, files, umask) and runs the command a user would.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from cli_helpers import run_cli
from ipprompt.errors import IppromptError
from ipprompt.theme import ThemeLibrary
from test_render import example_run_dir
from test_theme_helpers import make_images

# --------------------------------------------------------------------------- links in `theme add`


def _folder_with_bad_links(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    make_images(src, 3)
    make_images(src / "sub", 1, start=3)
    os.symlink("..", src / "sub" / "loop")  # a folder link back to its parent
    os.symlink("y.png", src / "x.png")  # two links to each other
    os.symlink("x.png", src / "y.png")
    os.symlink("gone.png", src / "broken.png")  # target deleted
    secret = tmp_path / "notes.txt"
    secret.write_text("not a picture")
    os.symlink(secret, src / "alias.png")  # a link to a bad file, named by its own name
    os.symlink("/", src / "sub" / "everything")  # a link to the root: never walked
    return src


def test_theme_add_skips_link_loops_and_broken_links_and_imports_the_rest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    src = _folder_with_bad_links(tmp_path)
    started = time.perf_counter()
    result = run_cli(capsys, "theme", "add", "links", src)
    assert time.perf_counter() - started < 30
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "4 added, 0 duplicates, 6 refused" in result.stdout
    for name in ("x.png", "y.png", "broken.png", "alias.png", str(Path("sub") / "loop"), "everything"):
        assert name in result.stderr, (name, result.stderr)
    assert "notes.txt" not in result.stderr  # the link's own name, not its target's
    assert "symbolic link loop" in result.stderr and "broken symbolic link" in result.stderr


def test_recursive_glob_through_link_loops_ends(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _folder_with_bad_links(tmp_path)
    os.symlink(".", src / "sub" / "again")  # a second loop: glob.glob would search 2**40 paths
    started = time.perf_counter()
    result = run_cli(capsys, "theme", "add", "globbed", f"{src}/**/*.png")
    assert time.perf_counter() - started < 30
    assert result.exit_code == 0, result.output
    assert "2 added, 0 duplicates, 4 refused" in result.stdout  # picture_000.png, sub/picture_003.png


# --------------------------------------------------------------------------- `/` and system folders


def _story(folder: Path, theme: str, model: str = "black-forest-labs/FLUX.1-Fill-dev") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "story.toml"
    path.write_text(
        f'title = "T"\ntheme = {json.dumps(theme)}\n\n[generation]\nmodel = {json.dumps(model)}\n\n'
        '[[panels]]\nprompt = "the sea"\n',
        encoding="utf-8",
    )
    return path


def test_a_story_whose_theme_is_root_is_refused_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _story(tmp_path, "/")
    started = time.perf_counter()
    result = run_cli(capsys, "story", "check", path)
    assert time.perf_counter() - started < 1.0
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{path}:2: theme:" in result.stderr and "root of a filesystem" in result.stderr
    assert not Path("/index.sqlite").exists()


@pytest.mark.parametrize("args", [["theme", "add", "/", "x.png"], ["theme", "search", "/", "sea"], ["theme", "show", "/etc"]])
def test_theme_commands_refuse_root_and_system_folders(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    started = time.perf_counter()
    result = run_cli(capsys, *args)
    assert time.perf_counter() - started < 1.0
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "as a theme folder" in result.stderr
    assert not Path("/index.sqlite").exists() and not Path("/etc/index.sqlite").exists()


@pytest.mark.parametrize("where", ["/", "/usr/share", "/proc/self", "HOME"])
def test_library_open_refuses_system_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    if where == "HOME":
        monkeypatch.setenv("HOME", str(tmp_path))
        where = str(tmp_path)
    with pytest.raises(IppromptError, match="as a theme folder"):
        ThemeLibrary.open(where)


def test_an_unwritable_folder_is_read_and_left_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only archive of pictures is used as it is: its index lives in ipprompt's data folder."""
    make_images(tmp_path / "archive", 2)
    monkeypatch.chdir(tmp_path)  # inside the project, so only the missing write access keeps it read-only
    # Tests run as root, for whom every folder is writable: the check is made to answer as it
    # does for a normal user on a read-only folder.
    real_access = os.access
    archive = (tmp_path / "archive").resolve()
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == archive else real_access(p, mode, **kw))
    with ThemeLibrary.open(archive) as library:
        assert len(library) == 2
    assert not (archive / "index.sqlite").exists()
    assert list((Path(os.environ["IPPROMPT_HOME"]) / "indexes").glob("archive-*/index.sqlite"))


# --------------------------------------------------------------------------- a lost index


def test_a_deleted_index_is_rebuilt_from_the_copies(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    make_images(tmp_path / "src", 3)
    assert run_cli(capsys, "theme", "add", "lost", tmp_path / "src").exit_code == 0
    with ThemeLibrary.open("lost") as library:
        folder, first = library.path, library.images[0]
    for index in folder.glob("index.sqlite*"):
        index.unlink()
    Path(first.path).with_suffix(".txt").write_text("a caption kept beside the copy\n")
    result = run_cli(capsys, "theme", "show", "lost")
    assert result.exit_code == 0, result.output
    assert "lost: 3 images" in " ".join(result.stdout.split())
    assert "index was missing" in " ".join(result.stderr.split())
    with ThemeLibrary.open("lost") as library:
        assert len(library) == 3 and not library.sync_report.notes  # said once, not on every open
        assert library.image_by_sha(first.sha256).caption == "a caption kept beside the copy"


# --------------------------------------------------------------------------- markup in user text


def test_markup_in_queries_names_and_model_ids_is_printed_as_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    make_images(tmp_path / "src", 3)
    assert run_cli(capsys, "theme", "add", "odd", tmp_path / "src", "--encoder", "nobody/none").exit_code == 0
    with ThemeLibrary.open("odd") as library:
        folder = library.path
    (folder / "theme.toml").write_text('name = "[bold]odd[/] [/]"\nencoder = "nobody/[/]none"\n', encoding="utf-8")
    searched = run_cli(capsys, "theme", "search", "odd", "[/]")
    assert searched.exit_code == 0, searched.output
    assert '"[/]"' in searched.stdout and "[bold]odd[/] [/]" in searched.stdout
    for args in (["theme", "show", "odd"], ["theme", "list"]):
        shown = run_cli(capsys, *args)
        assert shown.exit_code == 0, shown.output
        assert "[bold]odd[/]" in shown.stdout and "Traceback" not in shown.output
    doctor = run_cli(capsys, "doctor", "--model", "acme/[/]fill", "--encoder", "[bold]clip")
    assert doctor.exit_code == 0, doctor.output
    assert "acme/[/]fill" in doctor.stdout and "[bold]clip" in doctor.stdout


def test_story_check_prints_a_model_id_with_markup(capsys: pytest.CaptureFixture[str], example_copy: Path) -> None:
    text = example_copy.read_text(encoding="utf-8").replace(
        'model = "black-forest-labs/FLUX.1-Fill-dev"', 'model = "acme/[/]fill"', 1
    )
    example_copy.write_text(text, encoding="utf-8")
    result = run_cli(capsys, "story", "check", example_copy)
    assert result.exit_code == 0, result.output
    assert "acme/[/]fill" in result.stdout


# --------------------------------------------------------------------------- single-file page


def test_single_file_page_inlines_no_link_and_no_non_image(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    from ipprompt.storyboard.render import data_urls, render_storyboard

    run = tmp_path / "run"
    shutil.copytree(example_run_dir(tmp_path_factory), run)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-TOKEN-1234567890\n")
    outside_png = tmp_path / "outside.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside_png)
    os.symlink(secret, run / "leak.png")
    os.symlink(outside_png, run / "outside-link.png")
    (run / "text.png").write_text("TOP-SECRET-TOKEN-1234567890\n")
    # A linked folder inside the run: its files are reached through a link, so not inlined.
    shutil.move(str(run / "panels" / "02"), tmp_path / "moved-02")
    os.symlink(tmp_path / "moved-02", run / "panels" / "02")
    from ipprompt.runfolder.manifest import read_manifest

    # The whole manifest as one format-2 document (read as it is), edited as a hostile sender would.
    manifest = {**read_manifest(run).model_dump(mode="json"), "format": 2}
    manifest["panels"][0]["image"] = "leak.png"
    manifest["panels"][0]["candidates"][0]["grid"] = "outside-link.png"
    manifest["panels"][0]["elements"][0]["refs"][0]["thumb"] = "text.png"
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    html = render_storyboard(run, single_file=True).read_text(encoding="utf-8")
    secret_bytes = secret.read_bytes()
    assert "TOP-SECRET" not in html
    for encoded in (base64.b64encode(secret_bytes), base64.b64encode(outside_png.read_bytes())):
        assert encoded.decode("ascii") not in html
    url = data_urls(run)
    assert [url(rel) for rel in ("leak.png", "outside-link.png", "text.png", "panels/02/cand-0.png")] == [None] * 4
    assert url("panels/01/cand-0.png").startswith("data:image/")
    assert "data:image/png;base64," in html  # the run's own pictures are still there


# --------------------------------------------------------------------------- story files


def test_a_story_with_a_byte_order_mark_is_accepted(capsys: pytest.CaptureFixture[str], example_copy: Path) -> None:
    example_copy.write_bytes(b"\xef\xbb\xbf" + example_copy.read_bytes())
    result = run_cli(capsys, "story", "check", example_copy)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "body",
    ["a = " + "[" * 5000 + "]" * 5000, "a = " + "{ b = " * 3000 + "1" + " }" * 3000, 'title = ' + "[" * 950 + "]" * 950],
)
def test_deeply_nested_toml_is_a_located_story_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, body: str) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(body + "\n", encoding="utf-8")
    result = run_cli(capsys, "story", "check", path)
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "RecursionError" not in result.output
    assert str(path) in result.stderr and "nested too deeply" in result.stderr


def test_a_huge_pinned_reference_is_refused_by_name(capsys: pytest.CaptureFixture[str], example_copy: Path) -> None:
    ref = example_copy.parent / "refs" / "mira.png"
    Image.new("1", (12000, 12000)).save(ref)  # 18 KB on disk, 144 megapixels decoded
    result = run_cli(capsys, "story", "check", example_copy)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "mira.png" in result.stderr and "too large" in result.stderr


# --------------------------------------------------------------------------- permissions


def test_theme_files_are_readable_like_the_users_other_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        make_images(tmp_path / "src", 2)
        assert run_cli(capsys, "theme", "add", "shared", tmp_path / "src").exit_code == 0
        sheet = tmp_path / "sheet.png"
        assert run_cli(capsys, "theme", "show", "shared", "--sheet", sheet).exit_code == 0
        with ThemeLibrary.open("shared") as library:
            folder = library.path
        files = [folder / "theme.toml", folder / "index.sqlite", sheet, *(folder / "images").iterdir()]
        assert len(files) == 5
        for path in files:
            assert path.stat().st_mode & 0o777 == 0o644, (path, oct(path.stat().st_mode))
        assert (folder / "images").stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(old)


def test_blank_explicit_elements_are_refused(example_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = example_copy.read_text().replace('elements = ["a small red fishing boat', 'elements = ["", " ", "a small red fishing boat', 1)
    example_copy.write_text(text)
    r = run_cli(capsys, "story", "check", str(example_copy))
    assert r.exit_code == 2 and "elements[0]" in r.output and "Traceback" not in r.output
