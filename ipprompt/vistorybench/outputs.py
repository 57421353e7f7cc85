"""Finished runs -> the folder layout the benchmark's reader scores.

The reader (``vistorybench/dataset_loader/read_outputs.py``) walks
``OUTPUTS/<method>/<mode>/<language>/<timestamp>/<story id>/shots/`` and keys every image there by
``int(name.split("_")[-1].split(".")[0])``, which must be the shot's ``index``: an image whose name
does not end in a number crashes it, and every folder in the timestamp folder is read as a story id
(``int``). So each story's folder holds ``shots/shot_NN.png`` and nothing else, and the timestamp
folder holds story folders only. The panel -> shot index map is the one the import wrote
(``vistorybench.json`` beside the story, whose path the run's manifest records).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ipprompt.atomic import atomic_write_bytes
from ipprompt.errors import IppromptError
from ipprompt.vistorybench import LANGUAGES, SIDECAR

TIMESTAMP = re.compile(r"^\d{8}[_-]\d{6}$")  # the reader's TIMESTAMP_PATTERN
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SHOT_FILE = re.compile(r"^shot_(\d+)\.png$")


def shot_file(index: int) -> str:
    """``shot_NN.png``: the index zero-padded to two digits (the reader reads the number back)."""
    return f"shot_{index:02d}.png"


@dataclass
class StoryExport:
    story_id: str
    run: Path
    folder: Path  # .../<story id>/shots
    written: list[int] = field(default_factory=list)  # shot indexes
    missing: list[int] = field(default_factory=list)


@dataclass
class ExportReport:
    root: Path  # OUTPUTS/<method>/<mode>/<language>/<timestamp>
    timestamp: str
    stories: list[StoryExport] = field(default_factory=list)


def now_timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")


def check_names(method: str, mode: str, language: str, timestamp: str) -> None:
    """Refuse names the reader would misread: a mode named en/ch switches it to its language-first layout."""
    for option, name in (("--method", method), ("--mode", mode)):
        if not _NAME.match(name):
            raise IppromptError(f"{option} {name!r}: use letters, digits, '.', '_' or '-' (one folder name).", f"Example: {option} ipprompt")
    if mode in LANGUAGES:
        raise IppromptError(f"--mode {mode!r} is a language name; the benchmark's reader would take it for the language.", "Use --mode base (the default).")
    if language not in LANGUAGES:
        raise IppromptError(f"--language {language!r}: the benchmark has {' and '.join(LANGUAGES)}.")
    try:
        ok = bool(TIMESTAMP.match(timestamp)) and datetime.strptime(timestamp.replace("_", "-"), "%Y%m%d-%H%M%S") is not None
    except ValueError:
        ok = False
    if not ok:
        raise IppromptError(f"--timestamp {timestamp!r} is not YYYYMMDD_HHMMSS.", f"Example: --timestamp {now_timestamp()}")


def read_sidecar(story_path: Path) -> dict[str, Any]:
    """The import's record beside a story: story id, language and the shot index of every panel."""
    path = Path(story_path).parent / SIDECAR
    hint = "Export runs of stories made by `ipprompt vistorybench import` (it writes vistorybench.json beside story.toml)."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IppromptError(f"{story_path} was not imported from ViStoryBench: {path} is missing.", hint) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IppromptError(f"Cannot read {path}: {exc}", hint) from None
    shots = data.get("shots") if isinstance(data, dict) else None
    sid = data.get("story_id") if isinstance(data, dict) else None
    if not (isinstance(sid, str) and sid.isdigit() and isinstance(shots, list) and shots
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in shots)
            and len(set(shots)) == len(shots) and data.get("language") in LANGUAGES):
        raise IppromptError(f"{path} is damaged: it needs story_id (digits), language and one distinct shot index per panel.", hint)
    return data


def plan_story(run_dir: Path) -> tuple[dict[str, Any], dict[int, Path], list[int]]:
    """A run's sidecar, its finished panel images by shot index, and the shot indexes not finished."""
    from ipprompt.runfolder.folder import RunFolder
    from ipprompt.runfolder.manifest import read_manifest

    manifest = read_manifest(run_dir)
    if not manifest.story.path:
        raise IppromptError(f"{run_dir}/manifest.json does not say which story it ran.", "Run the story again with `ipprompt story run`.")
    sidecar = read_sidecar(Path(manifest.story.path))
    shots: list[int] = sidecar["shots"]
    if len(manifest.panels) != len(shots):
        raise IppromptError(
            f"{run_dir} has {len(manifest.panels)} panels but {manifest.story.path} was imported with {len(shots)} shots.",
            "The story changed after this run: run it again (`ipprompt story run`) before exporting.",
        )
    folder = RunFolder(Path(run_dir))
    done: dict[int, Path] = {}
    missing: list[int] = []
    for number, index in enumerate(shots, start=1):
        entry = manifest.panel(number)
        image = folder.panel_image(number)  # built from the number, never a path read from the manifest
        if entry is not None and entry.done and image.is_file():
            done[index] = image
        else:
            missing.append(index)
    return sidecar, done, missing


def foreign_entries(root: Path, story_id: str) -> list[str]:
    """What in the target folders the reader would misread and ipprompt did not write.

    In the timestamp folder every folder is read as a story id (``int``); in a story folder a
    timestamp-like folder replaces ``shots/``; in ``shots/`` every image is read as a shot.
    """
    found = []
    method_dir = root.parents[2]
    # A language folder right under the method folder switches the reader to its language-first
    # layout ({method}/{language}/{mode}/...), where it would not find this export.
    found += [str(method_dir / lang) for lang in LANGUAGES if (method_dir / lang).is_dir()]
    if root.is_dir():
        found += [str(e) for e in root.iterdir() if e.is_dir() and not e.name.isdigit()]
    story = root / story_id
    if story.is_dir():
        found += [str(e) for e in story.iterdir() if e.name != "shots"]
    shots = story / "shots"
    if shots.is_dir():
        found += [str(e) for e in shots.iterdir() if not (e.is_file() and SHOT_FILE.match(e.name))]
    return found


def _clear_stale(shots_dir: Path, keep: set[str]) -> None:
    """Remove shot images an earlier export into this folder left and this one does not write."""
    if shots_dir.is_dir():
        for entry in shots_dir.iterdir():
            if entry.name not in keep and SHOT_FILE.match(entry.name):
                entry.unlink()


def export_runs(
    runs: list[Path], out: Path, *, method: str = "ipprompt", mode: str = "base", language: str | None = None,
    timestamp: str | None = None, partial: bool = False,
) -> ExportReport:
    """Copy every finished panel to ``OUTPUTS/<method>/<mode>/<language>/<timestamp>/<id>/shots/shot_NN.png``.

    Everything is checked before anything is written: a story with unfinished panels is refused
    (naming its missing shots) unless ``partial``; two runs of one story, or runs of the other
    language, are refused too.
    """
    if not runs:
        raise IppromptError("No run folder given.", "Example: ipprompt vistorybench export runs/01 runs/08 --out data/outputs")
    timestamp = timestamp or now_timestamp()
    plans = [(Path(r), *plan_story(Path(r))) for r in runs]
    languages = {sidecar["language"] for _, sidecar, _, _ in plans}
    language = language or (languages.pop() if len(languages) == 1 else "")
    if not language:
        raise IppromptError("These runs mix English and Chinese imports.", "Export each language on its own, with --language en or --language ch.")
    check_names(method, mode, language, timestamp)
    seen: dict[str, Path] = {}
    problems = []
    for run, sidecar, done, missing in plans:
        sid = sidecar["story_id"]
        if sid in seen:
            problems.append(f"story {sid} twice: {seen[sid]} and {run}")
        seen[sid] = run
        if sidecar["language"] != language:
            problems.append(f"{run} was imported in '{sidecar['language']}', not '{language}'")
        if missing and not partial:
            problems.append(f"story {sid} ({run}) has unfinished shots {', '.join(map(str, missing))}")
        foreign = foreign_entries(Path(out) / method / mode / language / timestamp, sid)
        if foreign:
            problems.append(f"the outputs folder holds files ipprompt did not write, which the benchmark's reader would misread: {', '.join(foreign[:5])}")
    if problems:
        raise IppromptError(
            "Nothing exported: " + "; ".join(problems) + ".",
            "Finish the runs (`ipprompt story run` resumes) or pass --partial to export the finished shots only; "
            "export each language and story once; move files ipprompt did not write, or use another --out or --timestamp.",
        )
    root = Path(out) / method / mode / language / timestamp
    report = ExportReport(root, timestamp)
    for run, sidecar, done, missing in plans:
        shots_dir = root / sidecar["story_id"] / "shots"
        _clear_stale(shots_dir, {shot_file(i) for i in done})
        for index, image in sorted(done.items()):
            atomic_write_bytes(shots_dir / shot_file(index), image.read_bytes())
        report.stories.append(StoryExport(sidecar["story_id"], run, shots_dir, sorted(done), missing))
    return report
