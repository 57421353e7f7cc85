"""A run folder's manifest on disk: ``manifest.json`` (the run and a small index of its panels)
and each done panel's record, ``panels/NN/panel.json`` (see ``ipprompt.runfolder.manifest`` for the
format). Reading assembles both into one ``RunManifest``; writing keeps them in step, records first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ipprompt.atomic import atomic_write_bytes, atomic_write_text
from ipprompt.errors import IppromptError
from ipprompt.runfolder.manifest import (
    FORMAT,
    MANIFEST,
    PANEL_RECORD,
    ManifestUnreadable,
    PanelEntry,
    RunManifest,
    now_iso,
    parse_manifest,
)


def record_path(run_dir: Path, number: int) -> Path:
    """Where panel ``number``'s full entry lives: ``panels/NN/panel.json``."""
    return Path(run_dir) / "panels" / f"{number:02d}" / PANEL_RECORD


def read_record_file(run_dir: Path, number: int) -> PanelEntry | None:
    """Panel ``number``'s record, or None when it is absent, damaged or names another panel."""
    try:
        entry = PanelEntry.model_validate_json(record_path(run_dir, number).read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return entry if entry.number == number else None


def load_records(run_dir: Path, manifest: RunManifest, only: Iterable[int] | None = None) -> RunManifest:
    """Put the full entries of the index's done panels (``only`` those, when given) in from their records.

    A record that is missing, damaged or not done leaves the index entry, which has no candidates
    or mask: the panel then counts as not made (``RunFolder.has_files``) and is made again.
    """
    wanted = manifest._in_records if only is None else manifest._in_records & set(only)
    for number in sorted(wanted):
        record = read_record_file(run_dir, number)
        if record is not None and record.done:
            manifest.set_panel(record)
        manifest._in_records.discard(number)
    return manifest


def read_manifest_bytes(path: Path) -> bytes:
    """The manifest's bytes; FileNotFoundError passes, any other read failure is ManifestUnreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ManifestUnreadable(f"Cannot read {path}: {exc.strerror or exc}.", "Check the folder's permissions.") from None


def read_manifest(run_dir: Path) -> RunManifest:
    """The run's whole manifest (index and records), or an IppromptError saying what is wrong and how to go on."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    hint = f"Run a story first: `ipprompt story run STORY.toml --out {run_dir}` (add `--backend preview` to plan without a model)."
    if not run_dir.is_dir():
        raise IppromptError(f"Run folder {run_dir} does not exist.", hint)
    try:
        data = read_manifest_bytes(path)
    except FileNotFoundError:
        raise IppromptError(f"{run_dir} is not a run folder: it has no {MANIFEST}.", hint) from None
    return load_records(run_dir, parse_manifest(data, path))


def index_json(manifest: RunManifest, lines: dict[int, str] | None = None) -> str:
    """``manifest.json``'s text: the run-level facts and each panel's index entry, one a line.

    ``lines`` holds panels' lines already made (``IndexCache``: unchanged panels are not dumped
    again, which keeps a commit's cost from growing with the panels).
    """
    data = manifest.model_dump(mode="json", exclude={"panels"})
    data["format"] = FORMAT
    lines = lines or {}
    panels = ",\n  ".join(lines.get(p.number) or index_line(p) for p in manifest.panels)
    data["panels"] = _PANELS_SLOT
    head = json.dumps(data, indent=1, ensure_ascii=False)
    return head.replace(json.dumps(_PANELS_SLOT), "[\n  " + panels + "\n ]" if panels else "[]", 1) + "\n"


def index_line(entry: PanelEntry) -> str:
    """One panel's line in ``manifest.json``."""
    return json.dumps(entry.index_entry(), ensure_ascii=False)


_PANELS_SLOT = "\x00panels\x00"  # a string no manifest value can hold: JSON writes NUL as \u0000


def write_record(run_dir: Path, entry: PanelEntry) -> None:
    """A panel's full entry beside its files (what the index points to, and what a damaged
    manifest is rebuilt from)."""
    atomic_write_text(record_path(run_dir, entry.number), entry.model_dump_json(indent=1))


def write_index(run_dir: Path, manifest: RunManifest, lines: dict[int, str] | None = None) -> bytes:
    """Rewrite ``manifest.json`` (the index only; records are written by their own commits);
    returns the bytes written."""
    manifest.updated = now_iso()
    manifest.refresh_totals()
    data = index_json(manifest, lines).encode("utf-8")
    atomic_write_bytes(Path(run_dir) / MANIFEST, data)
    return data


def write_manifest(run_dir: Path, manifest: RunManifest) -> None:
    """Write a whole manifest: every done panel's record, then the index (callers that share a
    folder hold the run folder's lock; ``RunFolder`` writes only what changed)."""
    for entry in manifest.panels:
        if entry.done and entry.number not in manifest._in_records:
            write_record(run_dir, entry)
    write_index(run_dir, manifest)
