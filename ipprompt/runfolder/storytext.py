"""Bring a run's story text (captions, dialogue, names) up to date without making any panel.

Captions, dialogue and names are drawn over the panels, never into them, so changing them must
not cost a generation. ``story run`` refreshes them on every run (``describe_run``); this does the
same refresh alone, for an author who only changed words: the manifest then says what the story
says, and the storyboard and the export letter the new words. A panel's pixels, key and choice are
left as they are; a panel not made yet also takes the story's shape, as a run would give it.

The run folder can also be new: a studio opened on a story that was never run gets a manifest
with every panel pending, so the page can show the story before anything is made.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ipprompt.runfolder.folder import RunFolder, overlay_fields, pending_entry
from ipprompt.runfolder.manifest import RunManifest, StoryInfo
from ipprompt.story.loading import Generation, Story


def _settings(manifest: RunManifest, story: Story) -> Generation:
    """The settings the run was made with (its shape), else the story's own."""
    if manifest.settings:
        try:
            return Generation.model_validate(manifest.settings)
        except ValidationError:
            pass
    return story.generation


def story_info(story: Story) -> StoryInfo:
    """The story-level facts a manifest keeps (what ``describe_run`` records, minus the run's)."""
    return StoryInfo(
        title=story.title,
        path=str(story.path),
        style=story.style,
        characters={cid: {"name": story.display_name(cid), "description": c.description} for cid, c in story.characters.items()},
        scenes={sid: {"name": sc.name or sid, "description": sc.description} for sid, sc in story.scenes.items()},
    )


def refresh_story_text(run_dir: str | Path, story: Story) -> RunManifest:
    """Write the story's current words into the run's manifest (under the folder's lock).

    Panels the story no longer has are left alone here: removing panels is a run's decision
    (``story run`` drops them), not a side effect of editing a caption.
    """
    from ipprompt.pipeline.plan import overlay_of

    def change(manifest: RunManifest) -> None:
        path = manifest.story.path
        manifest.story = story_info(story).model_copy(update={"path": path or str(story.path)})
        settings = _settings(manifest, story)
        for n in range(1, len(story.panels) + 1):
            overlay = overlay_of(story, n, settings)
            old = manifest.panel(n)
            if old is None:
                manifest.set_panel(pending_entry(n, overlay))
            else:
                manifest.set_panel(old.model_copy(update={**overlay_fields(overlay), **({} if old.done else {"shape": overlay.shape})}))

    return RunFolder(Path(run_dir)).update(change)
