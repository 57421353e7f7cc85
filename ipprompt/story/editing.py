"""Write an author's edit of a panel's words back into the story file, keeping the file as it was.

The story TOML is the author's document: its comments, key order, alignment and blank lines are
theirs. ``tomlkit`` edits the parsed document in place and writes back every byte it was not asked
to change, so a caption edited in the studio changes one line of the file, not its layout.

Every edit first copies the file as it was to ``<story>.toml.bak-<UTC time>`` (nothing is ever
lost), and the edited text is validated by the same loader as ``story check`` before it replaces
the story: an edit that would make the story invalid (an unknown speaker) is refused and the
story stays as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

from ipprompt.atomic import atomic_write_bytes, atomic_write_text
from ipprompt.errors import IppromptError
from ipprompt.story.loading import Story, parse_story


@dataclass(frozen=True)
class DialogueLine:
    speaker: str
    text: str


@dataclass(frozen=True)
class PanelText:
    """A panel's words as the author wants them; None leaves a field as the story has it."""

    prompt: str | None = None
    caption: str | None = None  # "" removes the caption
    dialogue: Sequence[DialogueLine] | None = None  # [] removes every line


@dataclass(frozen=True)
class EditResult:
    story: Story  # the story as it is now on disk
    backup: Path | None  # the file as it was before the edit (None: nothing changed)
    prompt_changed: bool  # the panel's pixels depend on it: the panel needs making again
    words_changed: bool  # caption or dialogue: only the lettering changes


def _backup_path(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    return candidate


def _dialogue_array(lines: Sequence[DialogueLine]) -> tomlkit.items.Array:
    array = tomlkit.array()
    for line in lines:
        item = tomlkit.inline_table()
        item["speaker"] = line.speaker
        item["text"] = line.text
        array.append(item)
    return array


def _current_dialogue(table: object) -> list[DialogueLine]:
    lines = table.get("dialogue", []) if hasattr(table, "get") else []  # type: ignore[union-attr]
    return [DialogueLine(str(d.get("speaker", "")), str(d.get("text", ""))) for d in lines if hasattr(d, "get")]


def edit_panel_text(story_path: str | Path, number: int, text: PanelText) -> EditResult:
    """Set panel ``number``'s prompt, caption and/or dialogue in the story file.

    Returns what changed, so a caller knows whether the panel must be made again (its prompt)
    or only re-lettered (its caption or dialogue).
    """
    path = Path(story_path)
    try:
        original = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise IppromptError(f"Cannot read the story {path}: {exc}", "Check that the file exists and can be read.") from None
    try:
        doc = tomlkit.parse(original)
    except TOMLKitError as exc:
        raise IppromptError(f"{path} is not valid TOML: {exc}", f"Fix it, then check it: `ipprompt story check {path}`.") from None
    panels = doc.get("panels")
    if not isinstance(panels, list) or not 1 <= number <= len(panels):
        count = len(panels) if isinstance(panels, list) else 0
        raise IppromptError(f"{path} has no panel {number} (it has {count}).", "Panels are numbered from 1, in the order of the [[panels]] tables.")
    table = panels[number - 1]
    prompt_changed = words_changed = False
    if text.prompt is not None:
        prompt = text.prompt.strip()
        if not prompt:
            raise IppromptError(f"Panel {number}: the prompt may not be empty.", "Say what happens in the panel.")
        if prompt != table.get("prompt"):
            table["prompt"] = prompt
            prompt_changed = True
    if text.caption is not None:
        caption = text.caption.strip()
        if caption != (table.get("caption") or ""):
            if caption:
                table["caption"] = caption
            elif "caption" in table:
                del table["caption"]
            words_changed = True
    if text.dialogue is not None:
        lines = [DialogueLine(d.speaker.strip(), d.text.strip()) for d in text.dialogue if d.text.strip()]
        if lines != _current_dialogue(table):
            if lines:
                table["dialogue"] = _dialogue_array(lines)
            elif "dialogue" in table:
                del table["dialogue"]
            words_changed = True
    if not (prompt_changed or words_changed):
        return EditResult(parse_story(original, path), None, False, False)
    edited = tomlkit.dumps(doc)
    story = parse_story(edited, path)  # an invalid edit is refused here, before any write
    backup = _backup_path(path)
    atomic_write_bytes(backup, path.read_bytes())
    atomic_write_text(path, edited)
    return EditResult(story, backup, prompt_changed, words_changed)
