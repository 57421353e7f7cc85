"""Planning: from a story and a theme to one plain, picklable ``PanelJob`` per panel.

Planning is pure (no model, no file writes) so that a job can be made on one machine and run on
another: the in-process runner, several processes sharing one run folder, and Ray workers all take
the same jobs. A job holds everything that decides its pixels, so its ``key`` is a pure function of
the job: a run keeps a finished panel exactly when its key is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipprompt.backends.lora import lora_fingerprint
from ipprompt.story.elements import Element, extract_elements
from ipprompt.dvp.grid import RefImage
from ipprompt.errors import IppromptError
from ipprompt.dvp.methods import method_of, method_problems
from ipprompt.story.loading import Generation, Story

if TYPE_CHECKING:
    from ipprompt.pipeline.settings import RunSettings
    from ipprompt.theme.library import ThemeLibrary
from ipprompt.theme.importer import sha256_hex

RETRIEVAL_K = 9
EXCLUDE_TOP = 3
KEY_VERSION = "ipprompt-panel-4"  # 4: rungs by noise level; the reference keeps the text's final "."
# Settings that decide a panel's pixels. Offload and compile do not change them; the compute
# dtype (bf16 on a GPU, fp32 on a CPU), quantization and VAE tiling do, and join the key too.
KEY_SETTINGS = (
    "backend", "model", "encoder", "tile", "grid", "steps", "guidance", "candidates", "rounds", "search",
    "refine", "continuity", "method", "fast", "budget", "rungs", "finish", "cache",
)
# A reroll moves the seed this far per reroll: far from ``seed + panel number`` of other panels.
REROLL_STRIDE = 1_000_003


@dataclass(frozen=True)
class Overlay:
    """Text drawn over a panel, never into it: it follows the story without regenerating."""

    prompt: str
    caption: str | None
    dialogue: tuple[tuple[str, str, str], ...]  # (speaker id, display name, text)
    characters: tuple[tuple[str, str], ...]  # (id, display name)
    scene: str | None
    shape: str = "square"  # the frame the storyboard and the exporter draw (square, wide, tall)


@dataclass(frozen=True)
class PanelJob:
    """One panel to make: plain data, safe to pickle and send to another process or machine."""

    number: int
    text: str  # the prompt sent to the generator
    description: str  # the panel's own description (prompt + style): what CLIP-T compares with
    elements: tuple[Element, ...]
    ranked: tuple[tuple[RefImage, ...], ...]  # per element, best first
    pinned: tuple[RefImage, ...]
    seed: int
    reroll: int
    settings: "RunSettings"
    machine_key: dict[str, Any]  # dtype, quantize, VAE tiling, retrieval mode: decide pixels too
    overlay: Overlay
    continuity_from: int | None = None  # the panel whose image this job still needs as a reference
    shape: str = "square"  # the panel's aspect ratio: square, wide (2:1) or tall (1:2)
    key: str = field(default="", compare=False)
    content_key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", panel_key(self))
        object.__setattr__(self, "content_key", content_key(self))

    @property
    def label(self) -> str:
        return " | ".join(e.label for e in self.elements)

    @property
    def waiting(self) -> bool:
        """True while the job still needs the previous panel's image (continuity)."""
        return self.continuity_from is not None

    def with_previous(self, image: Path | None, data: bytes | None = None) -> "PanelJob":
        """The job once its previous panel exists: that image joins as a continuity element.

        Without an image (the previous panel was never made) the job runs without continuity.
        With ``data`` (the image's bytes) the reference carries them, for a worker that cannot
        read ``image``.
        """
        if self.continuity_from is None:
            return self
        if image is None:
            return replace(self, continuity_from=None)
        raw = data if data is not None else image.read_bytes()
        prev = self.continuity_from
        element = Element("continuity", f"panel {prev}", str(prev))
        ref = RefImage(sha256_hex(raw), image, f"panel {prev}", 1.0, data=data)
        return replace(self, elements=(*self.elements, element), ranked=(*self.ranked, (ref,)), continuity_from=None)

    def with_reference_bytes(self) -> "PanelJob":
        """The same job carrying every reference's bytes, for a worker without the driver's files."""
        def read(ref: RefImage) -> RefImage:
            if ref.data is not None:
                return ref
            try:
                return replace(ref, data=ref.path.read_bytes())
            except OSError as exc:
                raise IppromptError(f"Cannot read reference image {ref.path}: {exc.strerror or exc}.", "Restore the file, or run again to re-plan without it.") from None

        def load(refs: Sequence[RefImage]) -> tuple[RefImage, ...]:
            return tuple(read(r) for r in refs)

        return replace(self, ranked=tuple(load(refs) for refs in self.ranked), pinned=load(self.pinned))


def _panel_inputs(job: PanelJob) -> dict[str, Any]:
    """The panel's own inputs: what the story and the theme say about it."""
    return {
        "text": job.text,
        "description": job.description,
        "elements": [[e.kind, e.text] for e in job.elements],
        "ranked": [[r.sha256 for r in refs] for refs in job.ranked],
        "pinned": [p.sha256 for p in job.pinned],
        "seed": job.seed,
    }


def content_key(job: PanelJob) -> str:
    """Hash of the panel's own inputs and shape, without the run settings: an author's pick is
    kept when only this run's settings differ from those it was made with."""
    data = {"v": KEY_VERSION, **_panel_inputs(job), "shape": job.shape, "continuity_from": job.continuity_from}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


def panel_key(job: PanelJob) -> str:
    """Hash of everything that decides a panel's pixels (texts, references, seed, settings)."""
    data = {
        "v": KEY_VERSION,
        **_panel_inputs(job),
        "settings": {k: getattr(job.settings, k) for k in KEY_SETTINGS},
        "loras": [lora_fingerprint(s) for s in job.settings.lora_specs],
        "continuity_from": job.continuity_from,
        # The rungs decide which candidate wins: a calibration profile that moves them changes the panel.
        "schedule": schedule_fingerprint(job.settings, job.shape),
        **job.machine_key,
    }
    if job.shape != "square":  # square panels keep the keys they had before shapes existed
        data["shape"] = job.shape
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


def schedule_fingerprint(settings: Generation, shape: str) -> str:
    """Where the panel's rungs come from (story, budget, or which calibration profile)."""
    from ipprompt.dvp.grid import GridSpec
    from ipprompt.dvp.profiles import load_profile, settings_profile_key
    from ipprompt.pipeline.execute import search_settings

    search = search_settings(settings)
    if settings.rungs is not None or settings.calibration == "off" or not method_of(settings.method).rungs:
        return "settings"
    spec = GridSpec(settings.grid, settings.tile, shape)
    profile = load_profile(settings_profile_key(search, spec.width, spec.height))
    return "settings" if profile is None else hashlib.sha256(json.dumps(profile.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def panel_seed(story: Story, settings: Generation, number: int, reroll: int = 0) -> int:
    """A panel's own seed, else the base seed plus its number (``one_seed``: the base seed itself,
    as one multi-frame reference run uses one seed); each reroll moves it on."""
    panel = story.panels[number - 1]
    base = panel.seed if panel.seed is not None else settings.seed + (0 if settings.one_seed else number)
    return (base + reroll * REROLL_STRIDE) % 2**32


def panel_shape(story: Story, settings: Generation | None, number: int) -> str:
    """The panel's own shape, else the [generation] shape (command-line overrides included)."""
    panel = story.panels[number - 1]
    return panel.shape or (settings or story.generation).shape


def overlay_of(story: Story, number: int, settings: Generation | None = None) -> Overlay:
    panel = story.panels[number - 1]
    return Overlay(
        prompt=panel.prompt,
        caption=panel.caption,
        dialogue=tuple((d.speaker, story.display_name(d.speaker), d.text) for d in panel.dialogue),
        characters=tuple((c, story.display_name(c)) for c in panel.characters),
        scene=panel.scene,
        shape=panel_shape(story, settings, number),
    )


def _pinned(story: Story, character_ids: Sequence[str]) -> tuple[RefImage, ...]:
    refs = []
    for cid in dict.fromkeys(character_ids):
        for path in story.ref_paths(cid):
            refs.append(RefImage(sha256_hex(path.read_bytes()), path, f"{story.display_name(cid)} (pinned)"))
    return tuple(refs)


def plan_panels(
    story: Story,
    settings: "RunSettings",
    library: "ThemeLibrary",
    numbers: Sequence[int] | None = None,
    *,
    machine_key: dict[str, Any] | None = None,
    rerolls: dict[int, int] | None = None,
) -> list[PanelJob]:
    """One job per selected panel (all panels by default), in story order.

    ``library`` is an open ``ThemeLibrary`` (CLIP or lexical ``match``). With continuity, every
    job after the first waits for its predecessor's image (``PanelJob.with_previous``).
    """
    numbers = list(numbers) if numbers is not None else list(range(1, len(story.panels) + 1))
    method = method_of(settings.method)
    method_problems(story, settings, numbers)
    machine_key = dict(machine_key or {})
    machine_key.setdefault("retrieval", library.mode)
    jobs = []
    for n in numbers:
        panel = story.panels[n - 1]
        elements = extract_elements(panel, story)
        pinned = _pinned(story, panel.characters)
        # The reference method leaves pinned images in the retrieval pool; DVP places them anyway.
        offered = () if method.offers_pinned else [p.sha256 for p in pinned]
        ranked = method.retrieve(library, [e.text for e in elements], RETRIEVAL_K, EXCLUDE_TOP, offered)
        reroll = (rerolls or {}).get(n, 0)
        description = method.description(panel, story)
        jobs.append(
            PanelJob(
                number=n,
                text=method.prompt(panel, story),
                description=description,
                elements=tuple(elements),
                ranked=ranked,
                pinned=pinned,
                seed=panel_seed(story, settings, n, reroll),
                reroll=reroll,
                settings=settings,
                machine_key=machine_key,
                overlay=overlay_of(story, n, settings),
                continuity_from=n - 1 if settings.continuity and n > 1 else None,
                shape=panel_shape(story, settings, n),
            )
        )
    return jobs
