"""The story schema: what a story file may say, as strict pydantic models.

Strict mode and ``extra="forbid"``: "512" is not silently turned into 512, and a misspelt key is an
error, never ignored. ``ipprompt.story.loading`` loads files into these models and turns validation errors
into located problems.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

DEFAULT_MODEL = "black-forest-labs/FLUX.1-Fill-dev"
DEFAULT_ENCODER = "openai/clip-vit-base-patch32"
SEARCH_MODES = ("pruned", "exhaustive")
METHODS = ("dvp", "reference")
Shape = Literal["square", "wide", "tall"]  # a panel's aspect ratio: 1:1, 2:1, 1:2
# --fast: a few-step LoRA distilled from FLUX.1-dev, loaded into FLUX.1-Fill-dev (diffusers
# expands its x_embedder to Fill's wider input), 8 steps at guidance 30.
DEFAULT_FAST_LORA = "alimama-creative/FLUX.1-Turbo-Alpha"
# What --fast changes unless the story or the command line sets the key itself:
# 6 x 3 + 2 x 3 + 2 x 3 + 1 x 5 = 35 NFE per panel (<= 40).
FAST_DEFAULTS = {"steps": 8, "preview_step": 3}
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
    steps: int = Field(50, ge=1, le=1000)
    guidance: float = Field(30.0, ge=0.0, le=100.0)
    candidates: int = Field(6, ge=1, le=120)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    rounds: int = Field(2, ge=0, le=10)
    search: Literal["pruned", "exhaustive"] = "pruned"
    # "dvp": our Dynamic Visual Prompting; "reference": IP-Prompter's own code, reproduced exactly.
    method: Literal["dvp", "reference"] = "dvp"
    preview_step: int = Field(6, ge=1, le=1000)
    keep: int = Field(1, ge=1, le=120)
    refine: int = Field(2, ge=1, le=120)
    continuity: bool = False
    shape: Shape = "square"  # every panel's shape unless the panel sets its own
    fast: bool = False
    fast_lora: str = Field(DEFAULT_FAST_LORA, min_length=1)
    loras: list[str] = []

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

    @model_validator(mode="after")
    def _fast_defaults(self) -> "Generation":
        """--fast changes the defaults of the keys it needs, never a value someone wrote.

        Set through ``object.__setattr__`` so that they stay "unset": turning --fast off again
        (``build_settings`` re-validates only what was written) brings the normal defaults back.
        """
        if self.fast:
            for key, value in FAST_DEFAULTS.items():
                if key not in self.model_fields_set:
                    object.__setattr__(self, key, value)
        return self

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
