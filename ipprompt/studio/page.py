"""The studio page: the storyboard's own view of the run, plus what the author can change.

The comic and the inspectors are the storyboard's (``storyboard_context`` with the same templates),
so the studio shows a run exactly as ``storyboard.html`` does; image links point at the studio's
``/files/`` route instead of relative paths, with the file's modification time appended, so a
rerolled panel (same file name, new pixels) is fetched again. The studio adds, per panel, its
words as the story file has them (the edit form), its earlier images (to restore) and the queue.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from ipprompt.errors import IppromptError
from ipprompt.runfolder import picks
from ipprompt.runfolder.manifest import read_manifest
from ipprompt.storyboard.page import run_argument
from ipprompt.storyboard.render import UrlFor, make_environment, storyboard_context
from ipprompt.studio.actions import Studio
from ipprompt.studio.security import confined_file

TEMPLATE = "studio.html.j2"


def studio_urls(root: Path) -> UrlFor:
    """``/files/<path>?v=<mtime>`` for the run's own files; None for anything ``confined_file`` refuses."""

    def url(rel: Any) -> str | None:
        if not isinstance(rel, str):
            return None
        path = confined_file(root, rel)
        if path is None:
            return None
        return f"/files/{quote(PurePosixPath(rel).as_posix(), safe='/')}?v={path.stat().st_mtime_ns}"

    return url


def _edit_views(studio: Studio, story_error: list[str]) -> dict[int, dict[str, Any]]:
    """Per panel: its words as the story file has them now (what the form edits)."""
    try:
        story = studio.story()
    except IppromptError as error:
        story_error.append(f"{error.message} {error.hint or ''}".strip())
        return {}
    speakers = [{"id": cid, "name": story.display_name(cid)} for cid in story.characters]
    views = {}
    for n, panel in enumerate(story.panels, start=1):
        views[n] = {
            "prompt": panel.prompt,
            "caption": panel.caption or "",
            "dialogue": [{"speaker": d.speaker, "text": d.text} for d in panel.dialogue],
            "speakers": speakers,
        }
    return views


def _history_views(root: Path, number: int, url: UrlFor) -> list[dict[str, Any]]:
    try:
        items = picks.history(root, number)
    except IppromptError:
        return []
    return [{"name": h.name, "url": url(f"history/{h.name}"), "current": h.current, "modified": h.modified} for h in items]


def render_page(studio: Studio, token: str) -> str:
    """The whole studio page for the run as it is on disk now."""
    root = studio.root
    manifest = read_manifest(root)
    url = studio_urls(root)
    context = storyboard_context(manifest, url, run_arg=run_argument(root))
    story_error: list[str] = []
    edits = _edit_views(studio, story_error)
    for panel in context["panels"]:
        panel["edit"] = edits.get(panel["number"])
        panel["history"] = _history_views(root, panel["number"], url)
    try:
        story_name = studio.story_path().name
    except IppromptError:
        story_name = None
    context.update(
        token=token,
        story_name=story_name,
        story_error=story_error[0] if story_error else None,
        jobs=[job.to_json() for job in studio.queue.jobs()],
        last_event=studio.hub.last_id,
    )
    return make_environment().get_template(TEMPLATE).render(context)
