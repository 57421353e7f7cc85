"""Key elements of a panel: what the references must show.

IP-Prompter retrieves references per key element (a character, a place, an action). The reference
code writes them by hand; our stories give them structure, so they are derived from the panel:
one per character (its description), one for the scene, one for the action (the panel prompt).
The story's style is deliberately not an element: every reference already carries the style.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ipprompt.story.loading import Panel, Story

ElementKind = Literal["character", "scene", "action", "explicit", "continuity"]


@dataclass(frozen=True)
class Element:
    """One key element: the text used for retrieval, and where it came from."""

    kind: ElementKind
    text: str
    source: str | None = None  # character or scene id; None for action/explicit

    @property
    def label(self) -> str:
        """Short name for tables and the storyboard inspector."""
        return f"{self.kind}:{self.source}" if self.source else self.kind


def extract_elements(panel: Panel, story: Story) -> list[Element]:
    """The panel's key elements, in story order (characters, scene, action).

    A panel's explicit ``elements`` replace extraction entirely: the writer knows best.
    """
    if panel.elements:
        return [Element("explicit", text) for text in panel.elements]
    elements = [
        Element("character", story.characters[cid].description, cid) for cid in dict.fromkeys(panel.characters)
    ]
    if panel.scene is not None:
        elements.append(Element("scene", story.scenes[panel.scene].description, panel.scene))
    elements.append(Element("action", panel.prompt))
    return elements


PROMPT_PREFIX = (
    "A grid of illustrations that all share one consistent art style, the same characters and "
    "the same world; the empty cell shows"
)


def panel_text(panel: Panel, story: Story) -> str:
    """The text prompt of a panel: fixed prefix (the cells share one style) + style + prompt."""
    parts = [PROMPT_PREFIX]
    body = panel.prompt.rstrip(". ")
    if story.style:
        body = f"{body}, {story.style}"
    return f"{parts[0]}: {body}."


def reference_text(panel: Panel, story: Story) -> str:
    """The panel text as the reference method sends it: the author's words as written.

    The reference concatenates its prefix with the frame's text untouched, final "." included
    (stripping it changes the T5 and CLIP tokens, so every pixel). The story's style, which the
    reference has no place for, joins before that final punctuation.
    """
    body = panel.prompt.strip()
    if not story.style:
        return body
    end = body[-1] if body and body[-1] in ".!?" else ""
    return f"{body[: len(body) - len(end)].rstrip()}, {story.style}{end}"


def panel_description(panel: Panel, story: Story) -> str:
    """What the panel should show, in the story's words: its prompt and the story's style.

    Candidates are judged against this (CLIP-T), never against the instruction about the grid
    that the generator's prompt starts with: that text describes the canvas, not the panel.
    """
    body = panel.prompt.rstrip(". ")
    return f"{body}, {story.style}" if story.style else body
