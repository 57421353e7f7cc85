"""The last ``manifest.json`` index a run folder object read or wrote, kept so that a commit neither
parses nor dumps the panels it does not touch.

A run commits each panel with a read-modify-write of the index under the folder's lock. At 500
panels, validating and dumping every panel's index entry costs tens of milliseconds per commit,
growing with the panels. The file's bytes are read each time (a fraction of a millisecond) and
compared with the bytes this object last saw: equal bytes mean equal content, whoever wrote them,
so the parsed index is reused; otherwise it is parsed again. When writing, each panel whose entry
is the very object read from the cache keeps its line of JSON. The cache holds done panels as their
index entries only, so full entries always come from their records on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

from ipprompt.runfolder.manifest import FORMAT, RECORD_MARK, PanelEntry, RunManifest, parse_manifest
from ipprompt.runfolder.store import index_line, write_index


def copy_manifest(manifest: RunManifest) -> RunManifest:
    """A copy whose panel list and bookkeeping are its own (entries are shared: they are replaced,
    never changed in place)."""
    copy = manifest.model_copy()
    copy.panels = list(manifest.panels)
    copy._in_records = set(manifest._in_records)
    copy._loaded_format = manifest._loaded_format
    return copy


class IndexCache:
    """Parse and write ``manifest.json``, reusing what did not change since this object's last look."""

    def __init__(self) -> None:
        # (the file's bytes, the index as parsed, each panel's (entry object, line))
        self._state: tuple[bytes, RunManifest, dict[int, tuple[PanelEntry, str]]] | None = None

    def parse(self, data: bytes, where: Path) -> RunManifest:
        """``parse_manifest``, or a copy of the index parsed from the same bytes before."""
        state = self._state
        if state is not None and state[0] == data:
            return copy_manifest(state[1])
        manifest = parse_manifest(data, where)
        if manifest._loaded_format == FORMAT:
            self._state = (data, copy_manifest(manifest), {})
        return manifest

    def write(self, root: Path, manifest: RunManifest) -> None:
        """``write_index``, dumping only the panels whose entries changed since the last look."""
        state = self._state
        known = state[2] if state is not None else {}
        lines: dict[int, str] = {}
        entries: list[PanelEntry] = []
        remembered: dict[int, tuple[PanelEntry, str]] = {}
        for entry in manifest.panels:
            old = known.get(entry.number)
            if old is not None and old[0] is entry:
                line, kept = old[1], entry
            else:
                line = index_line(entry)
                kept = entry
                if entry.done and entry.number not in manifest._in_records:  # a full entry: keep its index part
                    kept = PanelEntry.model_validate({k: v for k, v in json.loads(line).items() if k != RECORD_MARK})
            lines[entry.number] = line
            entries.append(kept)
            remembered[entry.number] = (kept, line)
        data = write_index(root, manifest, lines)
        cached = copy_manifest(manifest)
        cached.panels = entries
        cached._in_records = {e.number for e in entries if e.done}
        cached._loaded_format = FORMAT
        self._state = (data, cached, remembered)
