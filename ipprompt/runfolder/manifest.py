"""The run manifest: one pydantic model, read and written by run, render, export, eval and the CLI.

A run folder's ``manifest.json`` is the record of hours of GPU work and the only thing the
storyboard, the exporter and ``eval`` read, so it has one schema here and nowhere else: no dict
literals in the runner, no defensive coercion in the renderer. Models allow extra keys so that a
manifest written by a newer ipprompt (or hand-annotated) still loads and round-trips.

Format history: 1 (ipprompt 0.1: no method, shape, picks or per-candidate prompt) loads into this
model with defaults; 2 is written now. Anything else is refused with a message that names the
version that made it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ipprompt.atomic import atomic_write_text
from ipprompt.errors import IppromptError

MANIFEST = "manifest.json"
FORMAT = 2
READABLE_FORMATS = (1, 2)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Scores(_Model):
    """What a candidate was judged on (see ``ipprompt.dvp.scoring``)."""

    total: float
    clip_t: float | None = None
    clip_i: float | None = None
    per_element: list[float] = []
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
    order: list[int] = []
    offsets: list[int] = []
    cells: list[CellEntry] = []


class CandidateEntry(_Model):
    """One visual prompt tried for a panel, and what became of it."""

    index: int
    round: int = 0
    seed: int | None = None
    arrangement: ArrangementEntry = ArrangementEntry()
    grid: str | None = None
    image: str | None = None
    preview_image: str | None = None  # a pruned candidate's preview, kept once the author had it finished
    prompt: str | None = None  # the exact text sent to the generator
    steps_run: int = 0
    finished: bool = False
    pruned: bool = False
    preview_scores: Scores | None = None
    scores: Scores | None = None
    chosen: bool = False


class ElementEntry(_Model):
    kind: str
    text: str
    source: str | None = None
    label: str | None = None
    refs: list[RefEntry] = []


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


# --- print-resolution pass (ipprompt.upscale) ---
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
# --- end print-resolution pass ---


class PanelEntry(_Model):
    """A panel: its story text (always as the story says now) and, when done, how it was made."""

    number: int
    status: Literal["pending", "done"] = "pending"
    prompt: str = ""
    caption: str | None = None
    dialogue: list[DialogueEntry] = []
    characters: list[CharacterEntry] = []
    scene: str | None = None
    shape: str = "square"
    # Everything below is set when the panel is done.
    key: str | None = None
    text: str | None = None  # the model prompt of the chosen candidate
    description: str | None = None  # what CLIP-T compares with (panel prompt + style)
    method: str = "dvp"
    seed: int | None = None
    reroll: int = 0
    elements: list[ElementEntry] = []
    pinned: list[RefEntry] = []
    mask: str | None = None
    candidates: list[CandidateEntry] = []
    chosen: int | None = None  # the candidate whose image is the panel's
    scorer_choice: int | None = None  # what the scorer chose (``chosen`` differs after a pick)
    picked_by: Literal["scorer", "author"] = "scorer"
    picked_from_history: str | None = None
    # A pruned (previewed) candidate the author picked: the next run of the panel finishes it.
    pick_to_finish: int | None = None
    image: str | None = None
    settings: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    fast: bool = False  # made in --fast mode (few-step LoRA)
    loras: list[LoraEntry] = []  # every LoRA fused into the generator, the fast one first
    rounds_run: int | None = None
    nfe: int = 0
    seconds: float = 0.0
    peak_gpu_bytes: int | None = None
    upscale: UpscaleEntry | None = None  # print-resolution pass (its NFE and seconds are not in ``nfe``/``seconds``)

    @property
    def done(self) -> bool:
        return self.status == "done"

    def candidate(self, index: int) -> CandidateEntry | None:
        return next((c for c in self.candidates if c.index == index), None)


class StoryInfo(_Model):
    title: str = "Untitled story"
    path: str | None = None
    style: str = ""
    characters: dict[str, dict[str, Any]] = {}
    scenes: dict[str, dict[str, Any]] = {}


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
    story: StoryInfo = StoryInfo()
    settings: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    models: dict[str, Any] = {}
    theme: dict[str, Any] = {}
    grid: dict[str, Any] = {}
    panels: list[PanelEntry] = Field(default_factory=list)
    totals: Totals = Totals()

    def panel(self, number: int) -> PanelEntry | None:
        return next((p for p in self.panels if p.number == number), None)

    def set_panel(self, entry: PanelEntry) -> None:
        """Replace (or add) a panel entry, keeping panels in number order."""
        others = [p for p in self.panels if p.number != entry.number]
        self.panels = sorted([*others, entry], key=lambda p: p.number)

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
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ManifestError(IppromptError):
    """A manifest that exists but cannot be used as it is (damaged, wrong shape, other version)."""


def parse_manifest(text: str, where: Path) -> RunManifest:
    """Validate a manifest's text; every failure is a ManifestError naming the file and the key."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ManifestError(f"{where} is damaged (not valid JSON: {exc}).", _REPAIR_HINT) from None
    if not isinstance(data, dict):
        raise ManifestError(f"{where} is not an ipprompt manifest (a JSON {type(data).__name__}, not an object).", _REPAIR_HINT)
    version = data.get("format")
    if version not in READABLE_FORMATS:
        raise ManifestError(
            f"{where} has manifest format {version!r} (made by {data.get('tool') or 'another version of ipprompt'}); "
            f"this ipprompt reads formats {', '.join(map(str, READABLE_FORMATS))}.",
            "Render or export it with the version that made it, or run the story again into a new --out folder.",
        )
    try:
        manifest = RunManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"{where} has the wrong shape at '{key}': {first['msg']}.", _REPAIR_HINT) from None
    manifest.format = FORMAT
    return manifest


_REPAIR_HINT = (
    "Finished panels are safe in the panels/ folder: `ipprompt story run` on the same story and --out "
    "rebuilds the manifest from them (the damaged file is kept beside it)."
)


def read_manifest(run_dir: Path) -> RunManifest:
    """The run's manifest, or an IppromptError saying what is wrong and how to go on."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    hint = f"Run a story first: `ipprompt story run STORY.toml --out {run_dir}` (add `--backend preview` to plan without a model)."
    if not run_dir.is_dir():
        raise IppromptError(f"Run folder {run_dir} does not exist.", hint)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IppromptError(f"{run_dir} is not a run folder: it has no {MANIFEST}.", hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"Cannot read {path}: {exc}", _REPAIR_HINT) from None
    return parse_manifest(text, path)


def write_manifest(run_dir: Path, manifest: RunManifest) -> None:
    """Write atomically (callers that share a folder hold the run folder's lock)."""
    manifest.updated = now_iso()
    manifest.refresh_totals()
    atomic_write_text(Path(run_dir) / MANIFEST, manifest.to_json())
