"""ViStoryBench: the dataset read as the benchmark's loader reads it, import (en and ch), a preview
run and export into exactly the layout the benchmark's reader scores, and every bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from ipprompt.pipeline.run import run_story
from ipprompt.story.loading import load_story as load_ipprompt_story
from ipprompt.vistorybench.dataset import load_story, select_stories, story_ids
from ipprompt.vistorybench.outputs import shot_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATASET = Path(__file__).parent / "data" / "vistorybench"
KEPT = {"01": [1, 2, 3, 5], "02": [1, 2]}  # story 01's shot 4 lacks "Plot Correspondence"
TIMESTAMP = "20250101_120000"


def official_shots(outputs: Path, method: str, mode: str, language: str, timestamp: str) -> dict[str, dict[int, Path]]:
    """The benchmark reader's rules (read_outputs.py, mode-first layout), transcribed:

    - the method folder must not hold an ``en``/``ch`` folder (that switches the reader to its
      language-first layout);
    - every folder in the timestamp folder is a story id, read with ``int`` (anything else crashes);
    - in a story folder, folders named like a timestamp replace it; else a folder named ``shots``
      (or ``shot``, or ending in either) holds the shots;
    - every file there whose lower-cased name ends in .png/.jpg/.jpeg/.gif/.bmp is a shot, keyed by
      ``int`` of the text after the last ``_`` and before the first ``.`` (anything else crashes).
    """
    method_dir = outputs / method
    assert not any((method_dir / lang).is_dir() for lang in ("en", "ch"))
    ts_dir = method_dir / mode / language / timestamp
    result: dict[str, dict[int, Path]] = {}
    for story in sorted((d for d in ts_dir.iterdir() if d.is_dir()), key=lambda d: int(d.name)):
        assert not [d for d in story.iterdir() if d.is_dir() and re.match(r"^\d{8}[_-]\d{6}$", d.name)]
        subs = [s for s in story.iterdir() if s.name.lower() in {"shots", "shot"} or s.name.endswith(("shot", "shots"))]
        base = subs[-1] if subs and subs[-1].is_dir() else story
        shots: dict[int, Path] = {}
        for f in base.iterdir():
            if f.is_file() and f.name.lower().endswith((".png", ".jpg", ".jpeg", ".gif", ".bmp")):
                shots[int(f.name.split("_")[-1].split(".")[0])] = f
        result[story.name] = shots
    return result


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """A writable copy of the test dataset (for the bad-input tests to damage)."""
    return Path(shutil.copytree(DATASET, tmp_path / "ViStory"))


def test_the_dataset_is_read_as_the_benchmark_loader_reads_it() -> None:
    assert story_ids(DATASET) == ["01", "02"]  # "extras" (not all digits) is ignored, as there
    assert (DATASET / "01" / "story.json").read_bytes().startswith(b"\xef\xbb\xbf")  # the test data has a BOM
    story = load_story(DATASET, "01", "en")
    assert [s.index for s in story.shots] == KEPT["01"]
    assert story.skipped == ["shot 4: missing 'Plot Correspondence'"]
    by_index = {s.index: s for s in story.shots}
    assert by_index[2].character_keys == ()
    assert by_index[3].character_keys == ("Big Brown Rabbit", "Little Nutbrown Hare", "Owl")
    owl = story.characters["Owl"].images
    assert [p.name for p in owl] == ["00.JPG"]  # the upper-case suffix counts, notes.txt does not
    assert [p.name for p in story.characters["Big Brown Rabbit"].images] == ["00.jpg", "01.png"]
    ch = load_story(DATASET, "01", "ch")
    assert ch.characters["Owl"].name == "猫头鹰" and ch.story_type == "儿童绘本"
    assert {s.index: s for s in ch.shots}[3].character_names == ("大栗色兔子", "小栗色兔子", "猫头鹰")
    assert {s.index: s for s in ch.shots}[3].character_keys == ("Big Brown Rabbit", "Little Nutbrown Hare", "Owl")


def test_story_selection() -> None:
    assert select_stories(DATASET, "lite") == ["01"]  # 02 is not in the Lite split
    assert select_stories(DATASET, "full") == ["01", "02"]
    assert select_stories(DATASET, "2,1") == ["01", "02"]
    assert shot_file(5) == "shot_05.png" and shot_file(12) == "shot_12.png"


@pytest.mark.parametrize("language", ["en", "ch"])
def test_import_writes_stories_a_run_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str], language: str) -> None:
    out = tmp_path / "stories"
    result = run_cli(capsys, "vistorybench", "import", DATASET, "--out", out, "--language", language)
    assert result.exit_code == 0, result.output
    assert "Static Shot Description" in result.stdout and "skipped shot 4" in result.stdout
    assert "1 shots skipped" in result.stdout
    story = load_ipprompt_story(out / "01" / "story.toml")
    assert len(story.panels) == 4 and all(p.shape == "wide" for p in story.panels)
    assert [len(p.characters) for p in story.panels] == [2, 0, 3, 1]
    assert story.characters["big_brown_rabbit"].refs == ["theme/big_brown_rabbit-00.jpg"]  # the first image, pinned
    raw = tomllib.loads((out / "01" / "story.toml").read_text(encoding="utf-8"))
    sidecar = json.loads((out / "01" / "vistorybench.json").read_text(encoding="utf-8"))
    assert sidecar["shots"] == KEPT["01"] and sidecar["story_id"] == "01" and sidecar["language"] == language
    source = json.loads((DATASET / "01" / "story.json").read_text(encoding="utf-8-sig"))
    hare = source["Characters"]["Little Nutbrown Hare"]
    assert raw["characters"]["little_nutbrown_hare"]["description"] == hare[f"prompt_{language}"]  # escaping round-trips
    assert raw["characters"]["little_nutbrown_hare"]["name"] == hare[f"name_{language}"]
    shot3 = source["Shots"][2]
    assert shot3["Static Shot Description"][language] in story.panels[2].prompt
    assert shot3["Shot Perspective Design"][language] in story.panels[2].prompt
    assert story.scenes[story.panels[2].scene].description == shot3["Setting Description"][language]
    theme = out / "01" / "theme"
    caption = (theme / "owl-00.txt").read_text(encoding="utf-8")
    assert source["Characters"]["Owl"][f"name_{language}"] in caption and source["Characters"]["Owl"][f"prompt_{language}"] in caption
    assert (theme / "owl-00.jpg").read_bytes() == (DATASET / "01" / "image" / "Owl" / "00.JPG").read_bytes()  # copied
    assert not (theme / "owl-00.jpg").is_symlink()
    # story 02 has one reference; a run needs three theme images
    assert len(list((out / "02" / "theme").glob("*.png"))) >= 3


def test_importing_again_rewrites_nothing(tmp_path: Path) -> None:
    from ipprompt.vistorybench.driver import import_dataset

    out = tmp_path / "stories"
    import_dataset(DATASET, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    import_dataset(DATASET, out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("language", ["en", "ch"])
def test_preview_run_and_export_give_the_official_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str], language: str) -> None:
    stories, outputs = tmp_path / "stories", tmp_path / "outputs"
    assert run_cli(capsys, "vistorybench", "import", DATASET, "--out", stories, "--language", language).exit_code == 0
    runs = []
    for sid in KEPT:
        runs.append(tmp_path / "runs" / sid)
        run_story(stories / sid / "story.toml", out=runs[-1], backend="preview")
    result = run_cli(capsys, "vistorybench", "export", *runs, "--out", outputs, "--timestamp", TIMESTAMP)
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(outputs).as_posix() for p in outputs.rglob("*") if p.is_file())
    assert files == sorted(f"ipprompt/base/{language}/{TIMESTAMP}/{sid}/shots/shot_{i:02d}.png" for sid, kept in KEPT.items() for i in kept)
    read = official_shots(outputs, "ipprompt", "base", language, TIMESTAMP)
    assert {sid: sorted(shots) for sid, shots in read.items()} == KEPT
    for sid, shots in read.items():
        for index, path in shots.items():
            number = KEPT[sid].index(index) + 1  # panel N is the N-th kept shot
            assert path.read_bytes() == (tmp_path / "runs" / sid / "panels" / f"{number:02d}.png").read_bytes()
    # exporting again into the same folder keeps exactly the same files
    assert run_cli(capsys, "vistorybench", "export", *runs, "--out", outputs, "--timestamp", TIMESTAMP).exit_code == 0
    assert sorted(p.relative_to(outputs).as_posix() for p in outputs.rglob("*") if p.is_file()) == files


def test_export_refuses_unfinished_runs_unless_partial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipprompt.vistorybench.driver import import_dataset

    import_dataset(DATASET, tmp_path / "stories", stories="01")
    run = tmp_path / "runs" / "01"
    run_story(tmp_path / "stories" / "01" / "story.toml", out=run, backend="preview", panels="1-2")
    outputs = tmp_path / "outputs"
    refused = run_cli(capsys, "vistorybench", "export", run, "--out", outputs, "--timestamp", TIMESTAMP)
    assert refused.exit_code == 2 and "unfinished shots 3, 5" in refused.stderr and "--partial" in refused.stderr
    assert not outputs.exists()
    partial = run_cli(capsys, "vistorybench", "export", run, "--out", outputs, "--timestamp", TIMESTAMP, "--partial")
    assert partial.exit_code == 0, partial.output
    assert "missing shots 3, 5" in partial.stdout
    assert sorted(official_shots(outputs, "ipprompt", "base", "en", TIMESTAMP)["01"]) == [1, 2]


def test_export_refuses_what_the_reader_would_misread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipprompt.vistorybench.driver import import_dataset

    import_dataset(DATASET, tmp_path / "stories", stories="02")
    run = tmp_path / "runs" / "02"
    run_story(tmp_path / "stories" / "02" / "story.toml", out=run, backend="preview")
    out = tmp_path / "outputs"
    bad_ts = run_cli(capsys, "vistorybench", "export", run, "--out", out, "--timestamp", "2025-01-01")
    assert bad_ts.exit_code == 2 and "YYYYMMDD_HHMMSS" in bad_ts.stderr
    bad_mode = run_cli(capsys, "vistorybench", "export", run, "--out", out, "--mode", "en")
    assert bad_mode.exit_code == 2 and "language" in bad_mode.stderr
    wrong_language = run_cli(capsys, "vistorybench", "export", run, "--out", out, "--language", "ch")
    assert wrong_language.exit_code == 2 and "imported in 'en'" in wrong_language.stderr
    stray = out / "ipprompt" / "base" / "en" / TIMESTAMP / "02" / "shots" / "notes.txt"
    stray.parent.mkdir(parents=True)
    stray.write_text("x")
    foreign = run_cli(capsys, "vistorybench", "export", run, "--out", out, "--timestamp", TIMESTAMP)
    assert foreign.exit_code == 2 and "notes.txt" in foreign.stderr
    not_imported = run_cli(capsys, "vistorybench", "export", tmp_path / "nowhere", "--out", out)
    assert not_imported.exit_code == 2 and "does not exist" in not_imported.stderr


# --------------------------------------------------------------------------- bad input


def _import(capsys: pytest.CaptureFixture[str], dataset: Path, out: Path, *args: str):  # noqa: ANN202
    return run_cli(capsys, "vistorybench", "import", dataset, "--out", out, *args)


def test_missing_story_json_skips_that_story(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (dataset / "02" / "story.json").unlink()
    result = _import(capsys, dataset, tmp_path / "out")
    assert result.exit_code == 0, result.output  # story 01 is still imported
    assert "story 02 not imported" in result.stderr and str(dataset / "02" / "story.json") in result.stderr.replace("\n", "")
    assert (tmp_path / "out" / "01" / "story.toml").is_file() and not (tmp_path / "out" / "02").exists()


def test_malformed_json_is_named_and_nothing_imported_exits_2(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (dataset / "02" / "story.json").write_text('{"Characters": {}, "Shots": [', encoding="utf-8")
    result = _import(capsys, dataset, tmp_path / "out", "--stories", "02")
    assert result.exit_code == 2
    text = result.stderr.replace("\n", "")
    assert "not valid JSON" in text and str(dataset / "02" / "story.json") in text and "Traceback" not in result.output


def test_character_without_image_folder(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(dataset / "02" / "image" / "Mira")
    result = _import(capsys, dataset, tmp_path / "out")
    assert result.exit_code == 0
    text = result.stderr.replace("\n", "")
    assert "story 02 not imported" in text and "'Mira'" in text and "does not exist" in text


def test_shot_naming_an_unknown_character(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = dataset / "02" / "story.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["Shots"][1]["Characters Appearing"]["en"].append("Keeper")
    path.write_text(json.dumps(data), encoding="utf-8")
    result = _import(capsys, dataset, tmp_path / "out", "--stories", "02")
    assert result.exit_code == 0, result.output
    text = result.stderr.replace("\n", "")
    assert "'Keeper'" in text and str(path) in text and "left out" in text  # as the benchmark's loader does
    story = load_ipprompt_story(tmp_path / "out" / "02" / "story.toml")
    assert story.panels[1].characters == ["mira"]


def test_empty_dataset_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "ViStory"
    (empty / "notes").mkdir(parents=True)  # only a non-numeric folder: no story
    result = _import(capsys, empty, tmp_path / "out")
    assert result.exit_code == 2 and "no story folders" in result.stderr and str(empty) in result.stderr.replace("\n", "")
    shutil.copytree(DATASET, tmp_path / "data" / "ViStory")
    parent = _import(capsys, tmp_path / "data", tmp_path / "out")  # one level too high
    assert parent.exit_code == 2 and "Did you mean" in parent.stderr and "ViStory" in parent.stderr
    missing = _import(capsys, tmp_path / "absent", tmp_path / "out")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


@pytest.mark.skipif(os.name == "nt", reason="file names with quotes")
def test_awkward_character_keys_become_valid_ids(dataset: Path, tmp_path: Path) -> None:
    from ipprompt.vistorybench.driver import import_dataset

    path = dataset / "02" / "story.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    odd = 'Dr. "Ø" Mira'
    data["Characters"][odd] = data["Characters"].pop("Mira")
    for shot in data["Shots"]:
        shot["Characters Appearing"]["en"] = [odd]
    path.write_text(json.dumps(data), encoding="utf-8")
    (dataset / "02" / "image" / "Mira").rename(dataset / "02" / "image" / odd)
    import_dataset(dataset, tmp_path / "out", stories="02")
    story = load_ipprompt_story(tmp_path / "out" / "02" / "story.toml")
    assert list(story.characters) == ["dr_mira"] and story.panels[0].characters == ["dr_mira"]  # Ø has no ASCII form: dropped


def test_toml_writer_round_trips_any_text() -> None:
    from ipprompt.vistorybench.tomlwrite import key, string

    texts = ['say "hi"', "C:\\new\\table", "line\nnext\ttab\r", "\x00\x1f\x7f\b\f", "中文，「引号」", "'single' ''' \"\"\""]
    for text in texts:
        assert tomllib.loads(f"k = {string(text)}")["k"] == text
    assert tomllib.loads(f'{key("a b.c")} = 1\n{key("plain_id-2")} = 2') == {"a b.c": 1, "plain_id-2": 2}


def test_a_character_name_that_is_not_a_folder_name(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = dataset / "02" / "story.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["Characters"]["../01"] = data["Characters"].pop("Mira")
    path.write_text(json.dumps(data), encoding="utf-8")
    result = _import(capsys, dataset, tmp_path / "out")
    assert result.exit_code == 0 and "story 02 not imported" in result.stderr and "'../01'" in result.stderr


def test_registering_the_commands_loads_neither_pillow_nor_torch() -> None:
    import subprocess

    code = "import sys, ipprompt.cli.vistorybench; bad = {'PIL', 'torch'} & set(sys.modules); assert not bad, bad"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
