"""The run manifest: one pydantic model, read and written by run, render, export, eval and the CLI.

A run folder's ``manifest.json`` is the record of hours of GPU work and the only thing the
storyboard, the exporter and ``eval`` read, so it has one schema here and nowhere else: no dict
literals in the runner, no defensive coercion in the renderer. Models allow extra keys so that a
manifest written by a newer ipprompt (or hand-annotated) still loads and round-trips.

Format history: 1 (ipprompt 0.1: no method, shape, picks or per-candidate prompt) loads into this
model with defaults; 2 held every panel's full entry inline. 3 is written now: ``manifest.json``
holds the run-level facts and a small index of the panels (status, key, image, picks, story text),
while a done panel's full entry (candidates, references, settings) lives in its own record,
``panels/NN/panel.json``. A commit then rewrites one record and the small index, so the cost of a
panel no longer grows with the number of panels (a 500-panel manifest was 24 MB, rewritten per
panel). ``read_manifest`` assembles both into one ``RunManifest``, so readers see no difference;
formats 1 and 2 still load as they are. Anything else is refused with a message that names the
version that made it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ipprompt.errors import IppromptError

MANIFEST = "manifest.json"
FORMAT = 3
READABLE_FORMATS = (1, 2, 3)
PANEL_RECORD = "panel.json"
# What a done panel's index entry leaves to its record: everything whose size grows with the
# candidates, the references or the settings.
RECORD_ONLY = frozenset({"candidates", "elements", "pinned", "settings", "machine", "loras", "text", "description", "mask"})
# An index entry that says "my full entry is panels/NN/panel.json" (the path is derived from the
# number, never read from the file, so a tampered index cannot point anywhere else).
RECORD_MARK = "record"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Scores(_Model):
    """What a candidate was judged on (see ``ipprompt.dvp.scoring``)."""

    total: float
    clip_t: float | None = None
    clip_i: float | None = None
    per_element: list[float] = Field(default_factory=list)
    method: str = "clip"


class RefEntry(_Model):
    """A reference image shown in the inspector: where it came from and its thumbnail."""

    sha256: str
    caption: str | None = None
    score: float | None = None
    file: str | None = None
    thumb: str | None = None


class CellEntry(_Model):
    row: int
    col: int
    element: int | None = None
    pinned: bool = False
    sha256: str
    thumb: str | None = None
    caption: str | None = None


class ArrangementEntry(_Model):
    order: list[int] = Field(default_factory=list)
    offsets: list[int] = Field(default_factory=list)
    cells: list[CellEntry] = Field(default_factory=list)


class CandidateEntry(_Model):
    """One visual prompt tried for a panel, and what became of it."""

    index: int
    round: int = 0
    seed: int | None = None
    arrangement: ArrangementEntry = Field(default_factory=ArrangementEntry)
    grid: str | None = None
    image: str | None = None
    preview_image: str | None = None  # a pruned candidate's preview, kept once the author had it finished
    # The exact text sent to the generator; None (not stored) when it is the panel's own ``text``,
    # so a long style is not copied into every candidate (see ``PanelEntry.candidate_prompt``).
    prompt: str | None = None
    steps_run: int = 0
    finished: bool = False
    pruned: bool = False
    preview_scores: Scores | None = None  # at the last rung it was judged at
    scores: Scores | None = None
    chosen: bool = False
    judged_at: list[dict[str, Any]] = []  # per rung it reached: step, σ, preview total


class ElementEntry(_Model):
    kind: str
    text: str
    source: str | None = None
    label: str | None = None
    refs: list[RefEntry] = Field(default_factory=list)


class DialogueEntry(_Model):
    speaker: str
    name: str | None = None
    text: str


class CharacterEntry(_Model):
    id: str
    name: str | None = None


class LoraEntry(_Model):
    """A LoRA fused into the generator for a panel (``--fast``'s few-step LoRA or ``--lora``)."""

    source: str
    scale: float = 1.0


class UpscaleEntry(_Model):
    """The print-resolution pass of a panel: the large image, how it was made and what it cost."""

    key: str  # ``upscale_key``: pass settings + generator + the grid-size image's sha256
    image: str  # the large panel, relative to the run folder (``panels/NN-print.png``)
    source_sha256: str  # the grid-size image it was made from
    factor: int
    strength: float
    tile: int
    overlap: int
    tiles: int = 0  # FLUX calls (0: enlargement only)
    steps: int = 0  # denoising steps per tile
    width: int = 0
    height: int = 0
    upscaler: str | None = None  # the model's file name, architecture and scale; None: Lanczos
    upscaler_sha256: str | None = None
    backend: str | None = None  # the generator that re-detailed (None: strength 0)
    nfe: int = 0
    seconds: float = 0.0


class PanelEntry(_Model):
    """A panel: its story text (always as the story says now) and, when done, how it was made."""

    number: int
    status: Literal["pending", "done"] = "pending"
    prompt: str = ""
    caption: str | None = None
    dialogue: list[DialogueEntry] = Field(default_factory=list)
    characters: list[CharacterEntry] = Field(default_factory=list)
    scene: str | None = None
    shape: str = "square"
    # Everything below is set when the panel is done.
    key: str | None = None
    # The key of the panel's own inputs (text, references, seed, shape) without the run settings:
    # an author's pick is kept when only settings changed (None: made before it was recorded).
    content_key: str | None = None
    text: str | None = None  # the model prompt of the chosen candidate
    description: str | None = None  # what CLIP-T compares with (panel prompt + style)
    method: str = "dvp"
    seed: int | None = None
    reroll: int = 0  # the reroll count of the image shown (pending: of the image being made)
    # The highest reroll count handed out (``RunFolder.reserve_rerolls``), so two rerolls started
    # together get different counts, hence different seeds.
    rerolls_reserved: int = 0
    elements: list[ElementEntry] = Field(default_factory=list)
    pinned: list[RefEntry] = Field(default_factory=list)
    mask: str | None = None
    candidates: list[CandidateEntry] = Field(default_factory=list)
    chosen: int | None = None  # the candidate whose image is the panel's
    scorer_choice: int | None = None  # what the scorer chose (``chosen`` differs after a pick)
    picked_by: Literal["scorer", "author"] = "scorer"
    picked_from_history: str | None = None
    # A pruned (previewed) candidate the author picked: the next run of the panel finishes it.
    pick_to_finish: int | None = None
    image: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    machine: dict[str, Any] = Field(default_factory=dict)
    fast: bool = False  # made in --fast mode (few-step LoRA)
    loras: list[LoraEntry] = Field(default_factory=list)  # every LoRA fused into the generator, the fast one first
    rounds_run: int | None = None
    # The rungs the search used (step, σ, target, which candidates each judged and kept) and where
    # they came from ("budget balanced", "story", "profile <file>"); empty without rungs.
    rungs: list[dict[str, Any]] = []
    schedule_source: str | None = None
    nfe: int = 0
    seconds: float = 0.0
    peak_gpu_bytes: int | None = None
    upscale: UpscaleEntry | None = None  # print-resolution pass (its NFE and seconds are not in ``nfe``/``seconds``)

    @property
    def done(self) -> bool:
        return self.status == "done"

    def candidate(self, index: int) -> CandidateEntry | None:
        return next((c for c in self.candidates if c.index == index), None)

    def candidate_prompt(self, candidate: CandidateEntry) -> str:
        """The text the candidate was generated from (stored only where it differs from ``text``)."""
        return candidate.prompt if candidate.prompt is not None else (self.text or self.prompt)

    def index_entry(self) -> dict[str, Any]:
        """This panel as ``manifest.json``'s index holds it (a done panel: without its record's part)."""
        if not self.done:
            return self.model_dump(mode="json")
        return {**self.model_dump(mode="json", exclude=RECORD_ONLY), RECORD_MARK: True}


class StoryInfo(_Model):
    title: str = "Untitled story"
    path: str | None = None
    style: str = ""
    characters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    scenes: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Totals(_Model):
    panels_done: int = 0
    nfe: int = 0
    seconds: float = 0.0
    peak_gpu_bytes: int | None = None


class RunManifest(_Model):
    """The whole run folder's record."""

    format: int = FORMAT
    tool: str = ""
    created: str = ""
    updated: str = ""
    story: StoryInfo = Field(default_factory=StoryInfo)
    settings: dict[str, Any] = Field(default_factory=dict)  # every setting of the last run (RunSettings)
    # The options given on command lines: later commands on the folder start from them.
    options: dict[str, Any] = Field(default_factory=dict)
    machine: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, Any] = Field(default_factory=dict)
    theme: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, Any] = Field(default_factory=dict)
    panels: list[PanelEntry] = Field(default_factory=list)
    totals: Totals = Field(default_factory=Totals)
    # Done panels whose entries are still index entries (their records not loaded; see ``load_records``).
    _in_records: set[int] = PrivateAttr(default_factory=set)
    # The format the file on disk had (an older one is rewritten wholly on the next write).
    _loaded_format: int = PrivateAttr(default=FORMAT)

    def panel(self, number: int) -> PanelEntry | None:
        return next((p for p in self.panels if p.number == number), None)

    def set_panel(self, entry: PanelEntry) -> None:
        """Replace (or add) a panel entry, keeping panels in number order."""
        others = [p for p in self.panels if p.number != entry.number]
        self.panels = sorted([*others, entry], key=lambda p: p.number)
        self._in_records.discard(entry.number)

    def refresh_totals(self) -> None:
        done = [p for p in self.panels if p.done]
        peaks = [p.peak_gpu_bytes for p in done if p.peak_gpu_bytes]
        self.totals = Totals(
            panels_done=len(done),
            nfe=sum(p.nfe for p in done),
            seconds=round(sum(p.seconds for p in done), 3),
            peak_gpu_bytes=max(peaks) if peaks else None,
        )

    def to_json(self) -> str:
        """The whole manifest as one JSON document (every panel's full entry inline)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ManifestError(IppromptError):
    """A manifest that exists but cannot be used as it is; the subclasses say which kind."""


class ManifestDamaged(ManifestError):
    """Damaged: not JSON, not UTF-8, cut short, the wrong shape. Rebuilt from the panels' records."""


class ManifestFromOtherVersion(ManifestError):
    """Written by another version of ipprompt (an unknown format): never rewritten."""


class ManifestUnreadable(ManifestError):
    """The file exists but cannot be read (permissions, I/O error): nothing to rebuild from."""


def parse_manifest(text: str | bytes, where: Path) -> RunManifest:
    """Validate a manifest's text; every failure is a ManifestError naming the file and the key.

    A format-3 manifest's done panels come back as their index entries: ``load_records`` puts their
    full entries in. Bytes that are not UTF-8 (a file cut inside a multi-byte character) are damage,
    like JSON cut short.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestDamaged(f"{where} is damaged (not valid UTF-8 text: {exc.reason} at byte {exc.start}).", _REPAIR_HINT) from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ManifestDamaged(f"{where} is damaged (not valid JSON: {exc}).", _REPAIR_HINT) from None
    if not isinstance(data, dict):
        raise ManifestDamaged(f"{where} is not an ipprompt manifest (a JSON {type(data).__name__}, not an object).", _REPAIR_HINT)
    version = data.get("format")
    if version not in READABLE_FORMATS:
        raise ManifestFromOtherVersion(
            f"{where} has manifest format {version!r} (made by {data.get('tool') or 'another version of ipprompt'}); "
            f"this ipprompt reads formats {', '.join(map(str, READABLE_FORMATS))}.",
            "Render or export it with the version that made it, or run the story again into a new --out folder.",
        )
    in_records: set[int] = set()
    if version == 3 and isinstance(data.get("panels"), list):
        for item in data["panels"]:
            marked = isinstance(item, dict) and item.pop(RECORD_MARK, None) is True
            if marked and item.get("status") == "done" and isinstance(item.get("number"), int):
                in_records.add(item["number"])
    try:
        manifest = RunManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ManifestDamaged(f"{where} has the wrong shape at '{key}': {first['msg']}.", _REPAIR_HINT) from None
    manifest.format = FORMAT
    manifest._in_records = in_records
    manifest._loaded_format = version
    return manifest


_REPAIR_HINT = (
    "Finished panels are safe in the panels/ folder: `ipprompt story run` on the same story and --out "
    "rebuilds the manifest from them (the damaged file is kept beside it)."
)


# The files (records, the index, the whole manifest) live in ``store``; callers import them from
# here too, resolved on first use so that either module can be imported first.
_STORE_NAMES = frozenset({
    "index_json", "index_line", "load_records", "read_manifest", "read_manifest_bytes",
    "read_record_file", "record_path", "write_index", "write_manifest", "write_record",
})


def __getattr__(name: str) -> Any:
    if name in _STORE_NAMES:
        from ipprompt.runfolder import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
