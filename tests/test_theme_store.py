"""Theme storage: importing files, the SQLite index, plain folders, concurrent writers."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from ipprompt.encoders.clip import ClipEncoder
from ipprompt.errors import IppromptError
from ipprompt.theme import ThemeLibrary
from ipprompt.theme.config import read_config
from ipprompt.images import open_image
from test_theme_helpers import make_bad_files, make_images, make_picture


@pytest.fixture()
def encoder(tiny_clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(str(tiny_clip_dir))


def test_adding_30_images_twice_adds_them_once_and_reopening_encodes_nothing(
    tmp_path: Path, encoder: ClipEncoder
) -> None:
    sources = make_images(tmp_path / "src", 30)
    with ThemeLibrary.open(tmp_path / "theme", encoder, create=True) as library:
        first = library.add([tmp_path / "src"])
        assert len(first.added) == 30 and not first.duplicates and not first.refused
        calls_after_first = encoder.calls
        assert calls_after_first >= 1
        second = library.add([tmp_path / "src"])
        assert (len(second.added), len(second.duplicates), len(second.refused)) == (0, 30, 0)
        assert encoder.calls == calls_after_first, "nothing new, so nothing may be encoded"
        assert len(library) == 30 and library.mode == "clip"

    before = encoder.calls
    reopened = ThemeLibrary.open(tmp_path / "theme", encoder)
    assert encoder.calls == before
    assert len(reopened) == 30
    vectors = reopened.embeddings_for([image.sha256 for image in reopened.images])
    assert vectors.shape == (30, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # The stored vector is the encoder's embedding of the picture on disk.
    original = reopened.images[0]
    np.testing.assert_allclose(
        vectors[0], encoder.embed_images([open_image(original.path)])[0], rtol=1e-4, atol=1e-5
    )
    captions = {image.caption for image in reopened.images}
    assert "a red picture number 0" in captions and len(sources) == 30
    reopened.close()


def test_copies_are_content_addressed_original_bytes(tmp_path: Path) -> None:
    source = tmp_path / "Photo.JPG"
    make_picture(5).save(source, format="JPEG")
    with ThemeLibrary.open(tmp_path / "theme", create=True) as library:
        [image] = library.add([source]).added
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert image.sha256 == digest
    assert image.file_name == f"images/{digest[:16]}.jpg"
    assert image.path.read_bytes() == source.read_bytes()
    assert image.original_path == str(source.resolve())
    config = read_config(tmp_path / "theme")
    assert config.name == "theme" and config.encoder == "openai/clip-vit-base-patch32"


def test_bad_files_are_refused_one_by_one_and_cmyk_is_accepted_as_rgb(tmp_path: Path) -> None:
    bad = make_bad_files(tmp_path / "src")
    good = make_images(tmp_path / "src", 2, start=40)
    seen: list[str] = []
    with ThemeLibrary.open(tmp_path / "theme", create=True) as library:
        report = library.add(
            [bad["empty"], bad["text"], good[0], bad["truncated"], bad["cmyk"], good[1]],
            on_refused=lambda refusal: seen.append(refusal.line()),
        )
    refused = {r.path.name: r.reason for r in report.refused}
    assert set(refused) == {"empty.png", "notes.png", "truncated.png"}
    assert "empty" in refused["empty.png"]
    assert "not an image" in refused["notes.png"]
    assert "truncated" in refused["truncated.png"]
    assert len(seen) == 3 and all(str(tmp_path / "src") in line for line in seen)
    added = {Path(image.original_path).name: image for image in report.added}
    assert set(added) == {good[0].name, good[1].name, "print.jpg"}
    cmyk = added["print.jpg"]
    assert (cmyk.width, cmyk.height) == (60, 40)
    assert open_image(cmyk.path).mode == "RGB"
    assert report.summary() == "3 added, 0 duplicates, 3 refused"


def test_exif_orientation_and_transparency_are_applied(tmp_path: Path) -> None:
    rotated = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": stored landscape, shown portrait
    make_picture(9, (80, 40)).save(rotated, format="JPEG", exif=exif)
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(clear)
    with ThemeLibrary.open(tmp_path / "theme", create=True) as library:
        report = library.add([rotated, clear])
    sizes = {Path(i.original_path).name: (i.width, i.height) for i in report.added}
    assert sizes == {"phone.jpg": (40, 80), "clear.png": (10, 10)}
    transparent = next(i for i in report.added if i.original_path.endswith("clear.png"))
    assert open_image(transparent.path).getpixel((5, 5)) == (255, 255, 255)


def test_sidecar_captions_explicit_caption_and_tags(tmp_path: Path) -> None:
    captioned, plain = make_images(tmp_path / "a", 1) + make_images(tmp_path / "b", 1, start=1, captions=False)
    with ThemeLibrary.open("mytheme", create=True) as library:
        assert library.path.parent.name == "themes"  # a bare name lives under $IPPROMPT_HOME/themes
        first = library.add([captioned, plain], tags=["flat", "flat", " dusk "]).added
        [explicit] = library.add(make_images(tmp_path / "c", 1, start=2), caption="my words").added
    assert [i.caption for i in first] == ["a red picture number 0", ""]
    assert first[0].tags == ("flat", "dusk")
    assert explicit.caption == "my words"


def test_globs_folders_and_missing_paths(tmp_path: Path) -> None:
    make_images(tmp_path / "src" / "deep", 3)
    (tmp_path / "src" / "readme.md").write_text("not an image, but not named as one either")
    with ThemeLibrary.open(tmp_path / "theme", create=True) as library:
        by_glob = library.add([str(tmp_path / "src" / "deep" / "*.png")])
        by_folder = library.add([tmp_path / "src", tmp_path / "nope.png", str(tmp_path / "zz*.jpg")])
    assert len(by_glob.added) == 1
    assert (len(by_folder.added), len(by_folder.duplicates)) == (2, 1)
    assert [r.reason for r in by_folder.refused] == ["no such file or folder", "no image files match this pattern"]


def test_index_is_sqlite_in_wal_mode_with_the_documented_tables(tmp_path: Path, encoder: ClipEncoder) -> None:
    make_images(tmp_path / "src", 2)
    with ThemeLibrary.open(tmp_path / "theme", encoder, create=True) as library:
        library.add([tmp_path / "src"])
    db = sqlite3.connect(tmp_path / "theme" / "index.sqlite")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {r[1] for r in db.execute("PRAGMA table_info(images)")}
        assert {"sha256", "file_name", "original_path", "caption", "tags", "width", "height", "added_at"} <= columns
        rows = db.execute("SELECT encoder, dim, length(vector) FROM embeddings").fetchall()
    finally:
        db.close()
    assert rows == [(encoder.model_id, encoder.dim, 4 * encoder.dim)] * 2


def test_plain_folder_is_indexed_in_place_and_follows_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a folder in the user's project is indexed in place (theme/indexplace.py)
    folder = tmp_path / "refs"
    paths = make_images(folder, 4)
    before = sorted(p.name for p in folder.iterdir())
    library = ThemeLibrary.open(folder)
    assert len(library) == 4 and library.name == "refs"
    assert {i.file_name for i in library.images} == {p.name for p in paths}
    assert all(i.in_place and i.path.parent == folder for i in library.images)
    library.close()
    added_files = sorted(set(p.name for p in folder.iterdir()) - set(before))
    assert added_files and all(name.startswith("index.sqlite") for name in added_files)
    assert not (folder / "theme.toml").exists() and not (folder / "images").exists()

    (folder / "sub").mkdir()
    make_picture(50).save(folder / "sub" / "new_one.png")
    paths[0].unlink()
    time.sleep(0.01)
    paths[1].with_suffix(".txt").write_text("an edited caption")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with ThemeLibrary.open(folder) as library:
        names = {i.file_name for i in library.images}
        assert names == {paths[1].name, paths[2].name, paths[3].name, "sub/new_one.png"}
        assert library.image_by_sha(next(i.sha256 for i in library.images if i.file_name == paths[1].name)).caption == (
            "an edited caption"
        )
        assert [r.path.name for r in library.sync_report.refused] == ["broken.png"]
        assert len(library.sync_report.removed) == 1
    with ThemeLibrary.open(folder) as library:
        assert not library.sync_report.refused, "a refused file is remembered, not re-read every open"
        assert len(library) == 4


def test_duplicate_in_place_file_takes_over_when_the_first_copy_is_deleted(tmp_path: Path) -> None:
    folder = tmp_path / "refs"
    [first] = make_images(folder, 1)
    twin = folder / "twin.png"
    twin.write_bytes(first.read_bytes())
    with ThemeLibrary.open(folder) as library:
        assert [i.file_name for i in library.images] == [first.name]
    first.unlink()
    with ThemeLibrary.open(folder) as library:
        assert [i.file_name for i in library.images] == ["twin.png"]


def test_removing_copies_deletes_the_file_but_in_place_images_stay_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # ipprompt copies into a plain folder only inside the user's project
    folder = tmp_path / "refs"
    own = make_images(folder, 2)
    with ThemeLibrary.open(folder) as library:
        [copy] = library.add(make_images(tmp_path / "more", 1, start=9)).added
        assert copy.file_name.startswith("images/")
        library.remove([library.find(copy.sha256[:6]), library.find(own[0].name)])
        assert len(library) == 1
    assert not copy.path.exists() and own[0].exists()
    with ThemeLibrary.open(folder) as library:
        assert [i.file_name for i in library.images] == [own[1].name], "removed in-place file stays removed"


def test_find_rejects_short_unknown_and_ambiguous_references(tmp_path: Path) -> None:
    make_images(tmp_path / "src", 30)
    with ThemeLibrary.open(tmp_path / "theme", create=True) as library:
        library.add([tmp_path / "src"])
        shas = [i.sha256 for i in library.images]
        with pytest.raises(IppromptError, match="too short"):
            library.find(shas[0][:3])
        with pytest.raises(IppromptError, match="No image"):
            library.find("nothing.png")
        assert library.find(shas[0][:8]).sha256 == shas[0]


def test_ambiguous_prefix_is_an_error(tmp_path: Path) -> None:
    make_images(tmp_path / "src", 2)
    with ThemeLibrary.open(tmp_path / "theme", create=True) as library:
        library.add([tmp_path / "src"])
        a, b = library.images
    # Make two rows share a 6-digit prefix so the ambiguity is certain (2 random shas rarely do).
    db = sqlite3.connect(tmp_path / "theme" / "index.sqlite")
    with db:
        db.execute("UPDATE images SET sha256 = ? WHERE sha256 = ?", (a.sha256[:6] + b.sha256[6:], b.sha256))
    db.close()
    with ThemeLibrary.open(tmp_path / "theme") as library:
        with pytest.raises(IppromptError, match="matches 2 images") as excinfo:
            library.find(a.sha256[:6])
        assert "longer sha256 prefix" in str(excinfo.value)
        assert library.find(a.sha256).sha256 == a.sha256


def _add_from_another_process(theme: str, source: str, start_together: Any, results: Any) -> None:
    """Child process body: wait for the others, then add ``source`` to ``theme``."""
    start_together.wait(timeout=60)
    try:
        with ThemeLibrary.open(theme, create=True) as library:
            report = library.add([source])
    except Exception as exc:  # report it: a silent child would only show as a queue timeout
        results.put((source, -1, -1, repr(exc)))
        return
    results.put((source, len(report.added), len(report.duplicates), len(report.refused)))


@pytest.mark.slow
def test_processes_adding_to_one_theme_at_once_lose_nothing(tmp_path: Path) -> None:
    # Separate processes (spawned, so nothing is shared but the files), released together by a
    # barrier so their imports really overlap; "common" is added by two of them at once.
    set_a = make_images(tmp_path / "a", 15)
    set_b = make_images(tmp_path / "b", 15, start=100)
    common = make_images(tmp_path / "common", 5, start=200)
    theme = str(tmp_path / "shared")
    context = multiprocessing.get_context("spawn")
    sources = [tmp_path / "a", tmp_path / "b", tmp_path / "common", tmp_path / "common"]
    barrier, results = context.Barrier(len(sources)), context.Queue()
    workers = [
        context.Process(target=_add_from_another_process, args=(theme, str(src), barrier, results)) for src in sources
    ]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert all(refused == 0 for *_, refused in reports), reports
    added = {src: n for src, n, _, _ in reports if not src.endswith("common")}
    assert added == {str(tmp_path / "a"): 15, str(tmp_path / "b"): 15}
    assert sum(n for src, n, _, _ in reports if src.endswith("common")) == 5, "each common image added once"
    with ThemeLibrary.open(theme) as library:
        originals = {Path(i.original_path).name for i in library.images}
        assert originals == {p.name for p in set_a + set_b + common}
        assert sorted(p.name for p in (tmp_path / "shared" / "images").iterdir()) == sorted(
            i.file_name.split("/")[1] for i in library.images
        )


@pytest.mark.slow  # subprocesses: the whole suite runs it, the quick tier does not
def test_two_cli_processes_adding_to_one_theme_lose_nothing(tmp_path: Path, tiny_clip_dir: Path) -> None:
    # The real command line, with the encoder, twice at once (slow: each process imports torch).
    set_a = make_images(tmp_path / "a", 12)
    set_b = make_images(tmp_path / "b", 12, start=100)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "ipprompt", "theme", "add", "shared", "--encoder", str(tiny_clip_dir)]
    procs = [
        subprocess.Popen(
            [*command, str(tmp_path / name)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name in ("a", "b")
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "12 added" in out and "Traceback" not in err
    with ThemeLibrary.open("shared") as library:
        originals = {Path(i.original_path).name for i in library.images}
        assert originals == {p.name for p in set_a + set_b}
        assert library.embedded_count(str(tiny_clip_dir.resolve())) == 24
