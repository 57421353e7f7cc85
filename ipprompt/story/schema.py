"""The story schema: what a story file may say, as strict pydantic models.

Strict mode and ``extra="forbid"``: "512" is not silently turned into 512, and a misspelt key is an
error, never ignored. ``ipprompt.story.loading`` loads files into these models and turns validation errors
into located problems.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator, model_validator

DEFAULT_MODEL = "black-forest-labs/FLUX.1-Fill-dev"
# [generation] keys of the print pass: its own key decides when it is redone, so a change to them
# remakes no panel (and is not announced as one that would).
PRINT_PASS_KEYS = ("upscale", "upscale_strength", "upscale_tile", "upscale_overlap", "upscaler")
DEFAULT_ENCODER = "openai/clip-vit-base-patch32"
SEARCH_MODES = ("pruned", "exhaustive")
METHODS = ("dvp", "reference")
Shape = Literal["square", "wide", "tall"]  # a panel's aspect ratio: 1:1, 2:1, 1:2
# --fast: a few-step LoRA distilled from FLUX.1-dev, loaded into FLUX.1-Fill-dev (diffusers
# expands its x_embedder to Fill's wider input), 8 steps at guidance 30.
DEFAULT_FAST_LORA = "alimama-creative/FLUX.1-Turbo-Alpha"
# What --fast changes unless the story or the command line sets the key itself (after the budget's
# defaults): at 1536², rungs at steps 4 (σ 0.926) and 6: 6 x 4 + 3 x 2 + 2 x 2 = 34 NFE per panel (<= 40).
FAST_DEFAULTS = {"steps": 8, "rounds": 0}
BUDGET_NAMES = ("fast", "balanced", "thorough")
# Keys a --budget preset sets unless the story or the command line writes them (ipprompt.dvp.rungs.BUDGETS).
BUDGET_KEYS = ("steps", "candidates", "rounds", "refine", "finish")
CACHE_HELP = "none, or fbcache[:THRESHOLD] (FLUX First Block Cache; threshold 0 < t < 1, default 0.08)"


def parse_cache(value: str) -> tuple[str, float | None]:
    """``"none"`` -> ("none", None); ``"fbcache"`` / ``"fbcache:0.1"`` -> ("fbcache", threshold)."""
    name, _, threshold = value.partition(":")
    if name == "none" and not threshold:
        return "none", None
    if name != "fbcache":
        raise ValueError(f"unknown cache {value!r}: use {CACHE_HELP}")
    if not threshold:
        return "fbcache", 0.08
    try:
        t = float(threshold)
    except ValueError:
        raise ValueError(f"fbcache threshold {threshold!r} is not a number (e.g. fbcache:0.08)") from None
    if not 0 < t < 1:
        raise ValueError(f"fbcache threshold {t} is outside 0 < t < 1 (below 0.2 keeps quality; 0.08 is the default)")
    return "fbcache", t
# Sizes past any real story, refused with the limit named: a text is copied into each panel's
# record (prompt, description), and a 9.5 MB style once made a 290 MB manifest. The text encoders
# read at most 512 tokens (T5; CLIP 77), about 2,000 characters, so 4,000 loses nothing.
MAX_TEXT_CHARS = 4000
MAX_TITLE_CHARS = 200
MAX_STORY_BYTES = 2**20
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]


class _Strict(BaseModel):
    # Strict: "512" is not silently turned into 512; extra="forbid": typos are errors.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Generation(_Strict):
    """How panels are generated. Every key has a default; the CLI may override any of them."""

    backend: str = "flux-fill"  # a registered backend (ipprompt.backends.registry)
    model: str = DEFAULT_MODEL
    encoder: str = DEFAULT_ENCODER
    tile: int = Field(512, ge=256, le=1024)
    grid: Literal[2, 3] = 3
    # Search size: a --budget preset's values unless written (ipprompt.dvp.rungs.BUDGETS).
    budget: Literal["fast", "balanced", "thorough"] = "balanced"
    steps: int = Field(28, ge=1, le=1000)
    guidance: float = Field(30.0, ge=0.0, le=100.0)
    candidates: int = Field(6, ge=1, le=120)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    rounds: int = Field(1, ge=0, le=10)
    search: Literal["pruned", "exhaustive"] = "pruned"
    # "dvp": our Dynamic Visual Prompting; "reference": IP-Prompter's own code, reproduced exactly.
    method: Literal["dvp", "reference"] = "dvp"
    refine: int = Field(2, ge=1, le=120)
    # Rungs: the σ at which candidates are judged, highest first (None: the profile's or the budget's).
    rungs: list[float] | None = None
    finish: int = Field(2, ge=1, le=120)  # candidates the last rung keeps and runs to the end
    calibration: Literal["auto", "off"] = "auto"  # auto: a matching `ipprompt calibrate` profile places the rungs
    cache: str = "none"  # see CACHE_HELP; changes pixels, so it is part of the panel key
    # Every panel starts from ``seed`` itself (a panel's own seed still wins), as one reference run
    # of several frames does; off: seed + panel number, so panels differ.
    one_seed: bool = False
    # Old keys (ipprompt <= 0.3): ``keep`` is read as ``finish``; ``preview_step`` has no meaning
    # any more (rungs are noise levels). Both still load; ``legacy_notes`` says what became of them.
    preview_step: int | None = Field(None, ge=1, le=1000)
    keep: int | None = Field(None, ge=1, le=120)
    continuity: bool = False
    shape: Shape = "square"  # every panel's shape unless the panel sets its own
    fast: bool = False
    fast_lora: str = Field(DEFAULT_FAST_LORA, min_length=1)
    loras: list[str] = []
    # The print-resolution pass (ipprompt.upscale): after the search, never part of the panel key.
    upscale: Literal[1, 2, 3, 4] = 1  # 1: off; N: the chosen panel enlarged N times and re-detailed
    upscale_strength: float = Field(0.35, ge=0.0, le=1.0)  # 0: enlargement only (Lanczos or upscaler)
    upscale_tile: int = Field(1024, ge=256, le=2048)  # largest side FLUX re-details at once
    upscale_overlap: int = Field(128, ge=16, le=1024)  # tiles share this many px, blended with a cosine ramp
    upscaler: str | None = Field(None, min_length=1)  # ESRGAN/SwinIR-class model file, loaded through spandrel

    @field_validator("upscale_tile", "upscale_overlap")
    @classmethod
    def _pass_multiple_of_16(cls, v: int) -> int:
        if v % 16:
            raise ValueError(f"must be a multiple of 16 (FLUX works on 16 px blocks); try {v - v % 16 or 16} or {v - v % 16 + 16}")
        return v

    @field_validator("upscale_overlap")
    @classmethod
    def _pass_overlap(cls, v: int, info: ValidationInfo) -> int:
        tile = info.data.get("upscale_tile")
        if isinstance(tile, int) and v * 2 > tile:
            raise ValueError(f"at most half of upscale_tile ({tile // 2})")
        return v

    @field_validator("upscaler")
    @classmethod
    def _pass_upscaler(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("upscale", 1) == 1:
            raise ValueError("needs upscale = 2, 3 or 4 (the factor the model's output is brought to)")
        return v

    @field_validator("backend")
    @classmethod
    def _registered_backend(cls, v: str) -> str:
        from ipprompt.backends.registry import backend_names

        names = backend_names()
        if v not in names:
            import difflib

            close = difflib.get_close_matches(v, names, n=1)
            guess = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown backend {v!r}; {guess}use one of: {', '.join(names)}")
        return v

    @field_validator("loras")
    @classmethod
    def _lora_specs(cls, v: list[str]) -> list[str]:
        from ipprompt.backends.lora import parse_lora

        for spec in v:
            parse_lora(spec)  # ValueError names the bad entry
        return v

    @field_validator("rungs")
    @classmethod
    def _rung_sigmas(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("give at least one σ, e.g. [0.95, 0.85], or leave the key out for the budget's rungs")
        if any(not 0 < s < 1 for s in v):
            raise ValueError("every rung is a noise level σ with 0 < σ < 1, e.g. [0.95, 0.85]")
        if sorted(set(v), reverse=True) != list(v):
            raise ValueError(f"rungs must fall: highest σ first, no repeats (e.g. {sorted(set(v), reverse=True)})")
        return v

    @field_validator("cache")
    @classmethod
    def _cache_spec(cls, v: str) -> str:
        parse_cache(v)
        return v

    @model_validator(mode="after")
    def _fast_defaults(self) -> "Generation":
        """--budget and --fast change the defaults of the keys they need, never a value someone wrote.

        Set through ``object.__setattr__`` so that they stay "unset": turning --fast off again
        (``build_settings`` re-validates only what was written) brings the normal defaults back.
        """
        from ipprompt.dvp.rungs import BUDGETS

        preset = BUDGETS[self.budget]
        for key in BUDGET_KEYS:
            if key not in self.model_fields_set:
                object.__setattr__(self, key, getattr(preset, key))
        from ipprompt.dvp.methods import method_of

        own_steps = method_of(self.method).steps  # the reference's own 50
        if own_steps is not None and "steps" not in self.model_fields_set:
            object.__setattr__(self, "steps", own_steps)
        if self.keep is not None and "finish" not in self.model_fields_set:
            object.__setattr__(self, "finish", self.keep)
        if self.fast:
            for key, value in FAST_DEFAULTS.items():
                if key not in self.model_fields_set:
                    object.__setattr__(self, key, value)
        return self

    @property
    def legacy_notes(self) -> list[str]:
        """What became of old keys this table still uses (shown by the dry run and the run summary)."""
        notes = []
        if self.preview_step is not None:
            notes.append(
                "`preview_step` is ignored: candidates are now judged at rungs by noise level (`rungs`, `--budget`); "
                "remove it from [generation]"
            )
        if self.keep is not None:
            notes.append(f"`keep = {self.keep}` is read as `finish = {self.finish}` (candidates run to the end); rename the key")
        return notes

    @property
    def lora_specs(self) -> list[str]:
        """Every LoRA loaded into the generator, in order: the fast one first, then the user's."""
        return ([self.fast_lora] if self.fast else []) + list(self.loras)

    @field_validator("tile")
    @classmethod
    def _tile_multiple_of_16(cls, v: int) -> int:
        if v % 16:
            lower, upper = v - v % 16, v - v % 16 + 16
            raise ValueError(f"must be a multiple of 16 (FLUX works on 16 px blocks); try {lower} or {upper}")
        return v


class Character(_Strict):
    name: str | None = Field(None, max_length=MAX_TITLE_CHARS)
    description: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    refs: list[str] = []


class Scene(_Strict):
    name: str | None = Field(None, max_length=MAX_TITLE_CHARS)
    description: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class Dialogue(_Strict):
    speaker: str = Field(min_length=1)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class Panel(_Strict):
    prompt: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    characters: list[str] = []
    scene: str | None = None
    elements: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)]] = []
    caption: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    dialogue: list[Dialogue] = []
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    shape: Shape | None = None  # None: [generation] shape


class StoryDocument(_Strict):
    """The TOML document as written (before references are resolved)."""

    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    theme: str = Field(min_length=1)
    style: str = Field("", max_length=MAX_TEXT_CHARS)
    generation: Generation = Generation()
    characters: dict[str, Character] = {}
    scenes: dict[str, Scene] = {}
    panels: list[Panel] = Field(min_length=1)
