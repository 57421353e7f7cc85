"""One ViStoryBench story -> an ipprompt story (``story.toml``), its theme and its shot map.

How the benchmark's fields become a story (``MAPPING`` says the same to the user):

- each character -> ``[characters.<id>]``: the id is a slug of the English name (a TOML key), the
  name and description are ``name_<lang>`` and ``prompt_<lang>``, and its first reference image is
  pinned (``refs``), as the benchmark's adapters pass it (``story_prompt_merge`` takes image 0);
- every reference image -> the story's theme folder, with a ``.txt`` caption holding the
  character's name and description (retrieval may place the other references too);
- each shot -> one wide panel (the published methods draw 1344 x 768): the prompt is the Static
  Shot Description (the action), the Plot Correspondence, the Shot Perspective Design (the camera)
  and the Setting Description; the setting is also the panel's scene, the characters are those of
  Characters Appearing, and the plot is the caption;
- the panel -> shot index map goes to ``vistorybench.json`` beside ``story.toml``, which is what
  ``export`` reads to name each image ``shot_NN.png``.

Files are written only when their bytes change, so importing again does not make a run re-index
its theme or redo finished panels.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PIL import ImageOps

from ipprompt.atomic import atomic_save_image, atomic_write_bytes
from ipprompt.images import ImageRejected, open_image
from ipprompt.vistorybench import SIDECAR
from ipprompt.vistorybench.dataset import DatasetError, Shot, Story
from ipprompt.vistorybench.tomlwrite import string, table_lines

MIN_THEME_IMAGES = 3  # what a run needs (ipprompt.pipeline.run.MIN_THEME_IMAGES)
SIDECAR_FORMAT = 1

if TYPE_CHECKING:
    from PIL import Image

MAPPING = (
    ("Characters.<English name>", "[characters.<slug>]: name = name_<lang>, description = prompt_<lang>"),
    ("image/<English name>/*", "theme/<slug>-NN.<ext> with a .txt caption (name: description); the first one is pinned (refs), as the benchmark's adapters pass it"),
    ("Static Shot Description + Plot Correspondence", "the panel prompt (the action), in that order"),
    ("Shot Perspective Design", "the panel prompt's camera part"),
    ("Setting Description", "the panel's scene ([scenes]) and the prompt's setting part"),
    ("Characters Appearing (en names)", "the panel's characters"),
    ("Plot Correspondence", "also the panel's caption (storyboard only)"),
    ("Shot index", "vistorybench.json: panel N -> shot_<index>.png on export; every panel is wide"),
)
_LABELS = {"en": ("Camera: ", "Setting: ", ". "), "ch": ("镜头：", "场景：", "。")}
_TRAILING = " \t\n.。!！?？;；,，"


def _closer(image: "Image.Image") -> "Image.Image":
    w, h = image.size
    return image.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w, h))


_VARIANTS: dict[str, Callable[["Image.Image"], "Image.Image"]] = {
    "mirrored": ImageOps.mirror,
    "closer": _closer,
    "closer-mirrored": lambda image: ImageOps.mirror(_closer(image)),
}


@dataclass
class Imported:
    """What the import wrote for one story."""

    story_id: str
    path: Path  # story.toml
    panels: int
    theme_images: int
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def slugify(name: str, taken: set[str]) -> str:
    """A bare TOML key from an English name (``Big Brown Rabbit`` -> ``big_brown_rabbit``), unique in ``taken``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_") or "character"
    candidate, n = slug, 2
    while candidate in taken:
        candidate, n = f"{slug}_{n}", n + 1
    taken.add(candidate)
    return candidate


def panel_prompt(shot: Shot, language: str) -> str:
    """Action first (CLIP reads 77 tokens), then the plot, the camera and the setting."""
    camera, setting, stop = _LABELS[language]
    parts = [shot.script, shot.plot]
    parts += [camera + shot.camera if shot.camera.strip() else "", setting + shot.scene if shot.scene.strip() else ""]
    kept = [p.strip().rstrip(_TRAILING) for p in parts if p.strip().rstrip(_TRAILING)]
    text = stop.join(kept)
    return (text + stop.strip()) if text else f"shot {shot.index}"


def _write_if_changed(path: Path, data: bytes) -> None:
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    atomic_write_bytes(path, data)


def _theme(story: Story, slugs: dict[str, str], theme: Path) -> tuple[dict[str, str], int]:
    """Copy every reference into the theme with its caption; returns each character's pinned file."""
    pinned: dict[str, str] = {}
    opened = []
    for key, character in story.characters.items():
        slug = slugs[key]
        caption = f"{character.name or key}: {character.prompt}".strip().rstrip(":")
        for n, source in enumerate(character.images):
            try:
                image = open_image(source)
            except ImageRejected as rejected:
                raise DatasetError(f"{source}: not a usable reference image ({rejected.reason}).", "Download the dataset again.") from None
            name = f"{slug}-{n:02d}{source.suffix.lower()}"
            _write_if_changed(theme / name, source.read_bytes())
            _write_if_changed((theme / name).with_suffix(".txt"), (caption + "\n").encode("utf-8"))
            pinned.setdefault(key, f"theme/{name}")
            opened.append((slug, n, image, caption))
    count = len(opened)
    # A run needs a few theme images; a story with one or two references gets mirrored and closer
    # copies of them (the same character, so retrieval and the grid stay true to the references).
    variants = [(slug, n, image, caption, kind) for kind in _VARIANTS for slug, n, image, caption in opened]
    for slug, n, image, caption, kind in variants[: max(0, MIN_THEME_IMAGES - count)]:
        name = f"{slug}-{n:02d}-{kind}.png"
        if not (theme / name).is_file():
            atomic_save_image(theme / name, _VARIANTS[kind](image))
        _write_if_changed((theme / name).with_suffix(".txt"), (caption + "\n").encode("utf-8"))
        count += 1
    return pinned, count


def story_toml(story: Story, slugs: dict[str, str], pinned: dict[str, str]) -> str:
    """The story file's text (escaped by ``tomlwrite``; ``tomllib`` reads back every string)."""
    lines = [
        f"# ViStoryBench story {story.id} ({story.language}), imported by `ipprompt vistorybench import`.",
        f"# Panel N draws the shot whose index is entry N of \"shots\" in {SIDECAR} (export names its image by it).",
        f"title = {string(f'ViStoryBench {story.id}' + (f': {story.story_type}' if story.story_type else ''))}",
        'theme = "theme"',
        "",
        "[generation]",
        'shape = "wide"',
    ]
    for key, character in story.characters.items():
        description = character.prompt.strip() or character.name or key
        lines += ["", f"[characters.{slugs[key]}]"]
        lines += table_lines({"name": character.name or key, "description": description, "refs": [pinned[key]]})
    scenes: dict[str, str] = {}
    for shot in story.shots:
        if shot.scene.strip() and shot.scene not in scenes:
            scenes[shot.scene] = f"setting_{len(scenes) + 1}"
    for text, sid in scenes.items():
        lines += ["", f"[scenes.{sid}]"] + table_lines({"description": text.strip()})
    for shot in story.shots:
        chars = list(dict.fromkeys(slugs[k] for k in shot.character_keys))
        lines += ["", f"[[panels]]  # shot {shot.index}"]
        lines += table_lines({
            "prompt": panel_prompt(shot, story.language),
            "characters": chars,
            "scene": scenes.get(shot.scene),
            "shape": "wide",
            "caption": shot.plot.strip() or None,
        })
    return "\n".join(lines) + "\n"


def convert_story(story: Story, out: Path) -> Imported:
    """Write ``out/<id>/story.toml``, its theme and ``vistorybench.json``; the story is checked by
    the same loader a run uses before this returns."""
    from ipprompt.story.loading import load_story

    folder = Path(out) / story.id
    taken: set[str] = set()
    slugs = {key: slugify(key, taken) for key in story.characters}
    pinned, theme_images = _theme(story, slugs, folder / "theme")
    path = folder / "story.toml"
    _write_if_changed(path, story_toml(story, slugs, pinned).encode("utf-8"))
    sidecar = {
        "format": SIDECAR_FORMAT,
        "benchmark": "ViStoryBench",
        "story_id": story.id,
        "language": story.language,
        "source": str(story.json_path.resolve()),
        "shots": [shot.index for shot in story.shots],  # panel N draws shots[N-1]
        "characters": {slugs[k]: k for k in story.characters},
        "skipped": story.skipped,
    }
    _write_if_changed(folder / SIDECAR, (json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    load_story(path)  # what a run would refuse is refused now, naming the story
    return Imported(story.id, path, len(story.shots), theme_images, list(story.skipped), list(story.warnings))
