"""Read a ViStoryBench dataset folder by the rules of the benchmark's own loader.

The benchmark scores the shots its loader (``vistorybench/dataset_loader/dataset_load.py``) reads,
so ipprompt must read exactly those: a story is a folder whose name is all digits, ``story.json`` is
read as ``utf-8-sig`` (the files carry a byte-order mark), a shot lacking any of the five fields is
skipped, a field without the chosen language becomes ``"(<lang> data missing) " + str(field)``,
shots name characters by their English names (the ``en`` list of "Characters Appearing", which
are the keys of "Characters"), and a character's references are the ``.png/.jpg/.jpeg`` files
under ``image/<key>/``, file names sorted. Folders with other names are ignored, as there.

Where the official code would crash or silently produce a shot without its character, we stop
with a message naming the file instead: a story that cannot be read is reported and skipped by the
caller, never half-imported.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipprompt.errors import IppromptError
from ipprompt.vistorybench import LANGUAGES, LITE_SPLIT

# Field of story.json -> the loader's name for it.
FIELDS = {
    "Setting Description": "scene",
    "Plot Correspondence": "plot",
    "Characters Appearing": "character_name",
    "Static Shot Description": "script",
    "Shot Perspective Design": "camera",
}
REFERENCE_SUFFIXES = (".png", ".jpg", ".jpeg")  # the loader's test, on the lower-cased name


class DatasetError(IppromptError):
    """A story (or the whole dataset folder) that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Character:
    key: str  # the English name: key of "Characters", folder name under image/
    name: str  # name_<language>
    prompt: str  # prompt_<language>: how the character looks
    tag: str
    images: tuple[Path, ...]


@dataclass(frozen=True)
class Shot:
    index: int  # the shot's "index": the number in shot_NN.png
    scene: str
    plot: str
    script: str
    camera: str
    character_names: tuple[str, ...]  # in the chosen language
    character_keys: tuple[str, ...]  # English names: keys of the story's characters


@dataclass
class Story:
    id: str
    folder: Path
    language: str
    story_type: str
    characters: dict[str, Character]
    shots: list[Shot]
    skipped: list[str] = field(default_factory=list)  # "shot 4: missing 'Plot Correspondence'"
    warnings: list[str] = field(default_factory=list)

    @property
    def json_path(self) -> Path:
        return self.folder / "story.json"


def story_ids(dataset: Path) -> list[str]:
    """The story folders of ``dataset`` in the loader's order: names all digits, sorted as numbers."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise DatasetError(
            f"Dataset folder {dataset} does not exist.",
            "Give the folder that holds the story folders 01, 02, ... (data/dataset/ViStory in the benchmark's repository).",
        )
    ids = [e.name for e in os.scandir(dataset) if e.is_dir() and e.name.isdigit()]
    if not ids:
        inner = [e.name for e in os.scandir(dataset) if e.is_dir() and e.name in ("ViStory", "ViStoryBench")]
        raise DatasetError(
            f"{dataset} holds no story folders (folders named with digits only, such as 01).",
            f"Did you mean {dataset / inner[0]}?" if inner else
            "Give the folder that holds 01/story.json, 02/story.json, ... (data/dataset/ViStory after the benchmark's download).",
        )
    return sorted(ids, key=int)


def select_stories(dataset: Path, stories: str | None) -> list[str]:
    """``lite``, ``full`` (or None) or a list such as ``01,08`` (``8`` finds ``08``), in dataset order."""
    available = story_ids(dataset)
    spec = (stories or "full").strip()
    if spec.lower() == "full":
        return available
    if spec.lower() == "lite":
        chosen = [s for s in available if s in LITE_SPLIT]
        if not chosen:
            raise DatasetError(f"{dataset} holds none of the Lite split's stories ({', '.join(LITE_SPLIT)}).", "Use --stories full or a list such as 01,02.")
        return chosen
    by_number = {int(s): s for s in available}
    chosen = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if not part.isdigit():
            raise DatasetError(f"--stories: '{part}' is not a story number.", "Use lite, full or numbers such as 01,08,15.")
        if int(part) not in by_number:
            raise DatasetError(f"--stories: story {part} is not in {dataset}.", f"Stories there: {', '.join(available[:12])}{' ...' if len(available) > 12 else ''}")
        chosen.append(by_number[int(part)])
    if not chosen:
        raise DatasetError("--stories selects no story.", "Use lite, full or numbers such as 01,08,15.")
    return sorted(dict.fromkeys(chosen), key=int)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: every story folder needs its story.json.", "Download the dataset again, or leave this folder out with --stories.") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text (byte {exc.start}).", "The benchmark's files are UTF-8; download the dataset again.") from None
    except OSError as exc:
        raise DatasetError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.", "Fix the file or download the dataset again.") from None
    except RecursionError:
        raise DatasetError(f"{path} is nested too deeply to read.") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a JSON {type(data).__name__}, not the object with \"Characters\" and \"Shots\" the benchmark writes.")
    return data


def _reference_images(folder: Path) -> tuple[Path, ...]:
    """The loader's walk: every .png/.jpg/.jpeg under the folder, file names sorted in each folder
    (sub-folders in name order too, so the first reference does not depend on the file system)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if name.lower().endswith(REFERENCE_SUFFIXES) and path.is_file():
                found.append(path)
    return tuple(found)


def _text(value: Any, language: str) -> str:
    """A shot field in ``language``; the loader's placeholder text when it lacks that language."""
    if isinstance(value, dict) and language in value:
        value = value[language]
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return "" if value is None else str(value)
    return f"({language} data missing) " + str(value)


def _names(value: Any, language: str, where: str) -> tuple[str, ...]:
    names = value.get(language) if isinstance(value, dict) else None
    if names is None:
        return ()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{where}: \"Characters Appearing\".{language} must be a list of names, not {names!r:.60}.")
    return tuple(names)


def _characters(data: dict[str, Any], folder: Path, language: str, path: Path) -> dict[str, Character]:
    raw = data.get("Characters", {})
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: \"Characters\" must be an object mapping English names to characters.")
    characters = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: character '{key}' must be an object with name_en, prompt_en, ...")
        if not key.strip() or key in (".", "..") or "/" in key or "\\" in key or "\0" in key:
            raise DatasetError(f"{path}: character name {key!r} cannot be a folder name under image/.", "Character names name their reference folders; fix the name.")
        images = _reference_images(folder / "image" / key)
        characters[key] = Character(
            key=key,
            name=str(entry.get(f"name_{language}", "") or ""),
            prompt=str(entry.get(f"prompt_{language}", "") or ""),
            tag=str(entry.get("tag", "") or ""),
            images=images,
        )
    return characters


def _shot_index(shot: dict[str, Any], where: str) -> int:
    index = shot.get("index")
    if isinstance(index, bool) or not isinstance(index, (int, str)) or not str(index).strip().isdigit():
        raise DatasetError(f"{where}: \"index\" must be a shot number, not {index!r:.40}.", "The outputs are named shot_<index>.png; every shot needs its number.")
    return int(index)


def load_story(dataset: Path, story_id: str, language: str = "en") -> Story:
    """One story as the benchmark's loader reads it; a DatasetError names the file when it cannot."""
    if language not in LANGUAGES:
        raise DatasetError(f"--language {language!r}: the benchmark has {' and '.join(LANGUAGES)}.")
    folder = Path(dataset) / story_id
    path = folder / "story.json"
    data = _read_json(path)
    shots_raw = data.get("Shots", [])
    if not isinstance(shots_raw, list):
        raise DatasetError(f"{path}: \"Shots\" must be a list of shots.")
    story_type = data.get("Story_type", {})
    story_type = str(story_type.get(language, "")) if isinstance(story_type, dict) else ""
    characters = _characters(data, folder, language, path)
    story = Story(story_id, folder, language, story_type, characters, [])
    seen: dict[int, int] = {}
    for n, shot in enumerate(shots_raw, start=1):
        label = f"shot {shot.get('index', '?')}" if isinstance(shot, dict) else f"entry {n} of \"Shots\""
        if not isinstance(shot, dict):
            raise DatasetError(f"{path}: {label} is not an object.")
        missing = [f for f in FIELDS if f not in shot]
        if missing:  # the official loader skips such a shot (and so scores no image for it)
            story.skipped.append(f"{label}: missing {', '.join(repr(m) for m in missing)}")
            continue
        where = f"{path}: {label}"
        index = _shot_index(shot, where)
        if index in seen:
            raise DatasetError(f"{path}: shots {seen[index]} and {n} both have index {index}; each output file shot_{index:02d}.png can hold only one.")
        seen[index] = n
        keys = _names(shot["Characters Appearing"], "en", where)
        names = _names(shot["Characters Appearing"], language, where) or keys
        kept_keys, kept_names = [], []
        for i, key in enumerate(keys):
            if key not in characters:  # the official merge warns and leaves the character out
                story.warnings.append(f"{where} names character '{key}', which \"Characters\" does not define: left out of that shot, as the benchmark's loader does")
                continue
            kept_keys.append(key)
            kept_names.append(names[i] if i < len(names) else key)
        story.shots.append(Shot(
            index=index,
            scene=_text(shot["Setting Description"], language),
            plot=_text(shot["Plot Correspondence"], language),
            script=_text(shot["Static Shot Description"], language),
            camera=_text(shot["Shot Perspective Design"], language),
            character_names=tuple(kept_names),
            character_keys=tuple(kept_keys),
        ))
    if not story.shots:
        raise DatasetError(f"{path} has no shot with all five fields ({len(story.skipped)} skipped).", "; ".join(story.skipped) or None)
    _check_references(story)
    return story


def _check_references(story: Story) -> None:
    """A character that appears needs a reference (the benchmark's adapters pass its first image);
    one that never appears and has none is left out with a note."""
    appearing = {k for shot in story.shots for k in shot.character_keys}
    for key in list(story.characters):
        if story.characters[key].images:
            continue
        folder = story.folder / "image" / key
        state = "has no .png/.jpg image" if folder.is_dir() else "does not exist"
        if key in appearing:
            raise DatasetError(
                f"{story.json_path}: character '{key}' appears in shots but its reference folder {folder} {state}.",
                "Every character that appears needs at least one reference image there; download the dataset again.",
            )
        story.warnings.append(f"{story.json_path}: character '{key}' appears in no shot and its folder {folder} {state}: left out")
        del story.characters[key]
