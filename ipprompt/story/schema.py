"""The story schema: what a story file may say, as strict pydantic models.

Strict mode and ``extra="forbid"``: "512" is not silently turned into 512, and a misspelt key is an
error, never ignored. ``ipprompt.story.loading`` loads files into these models and turns validation errors
into located problems.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator, model_validator

DEFAULT_MODEL = "black-forest-labs/FLUX.1-Fill-dev"
DEFAULT_ENCODER = "openai/clip-vit-base-patch32"
BACKENDS = ("flux-fill", "preview")
SEARCH_MODES = ("pruned", "exhaustive")
METHODS = ("dvp", "reference")
Shape = Literal["square", "wide", "tall"]  # a panel's aspect ratio: 1:1, 2:1, 1:2
# --fast: a few-step LoRA distilled from FLUX.1-dev, loaded into FLUX.1-Fill-dev (diffusers
# expands its x_embedder to Fill's wider input), 8 steps at guidance 30.
DEFAULT_FAST_LORA = "alimama-creative/FLUX.1-Turbo-Alpha"
# What --fast changes unless the story or the command line sets the key itself:
# 6 x 3 + 2 x 3 + 2 x 3 + 1 x 5 = 35 NFE per panel (<= 40).
FAST_DEFAULTS = {"steps": 8, "preview_step": 3}


class _Strict(BaseModel):
    # Strict: "512" is not silently turned into 512; extra="forbid": typos are errors.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Generation(_Strict):
    """How panels are generated. Every key has a default; the CLI may override any of them."""

    backend: Literal["flux-fill", "preview"] = "flux-fill"
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
    # --- print-resolution pass (ipprompt.upscale): after the search, never part of the panel key ---
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
    # --- end print-resolution pass ---

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
        (``apply_overrides`` re-validates only what was written) brings the normal defaults back.
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
    name: str | None = None
    description: str = Field(min_length=1)
    refs: list[str] = []


class Scene(_Strict):
    name: str | None = None
    description: str = Field(min_length=1)


class Dialogue(_Strict):
    speaker: str = Field(min_length=1)
    text: str = Field(min_length=1)


class Panel(_Strict):
    prompt: str = Field(min_length=1)
    characters: list[str] = []
    scene: str | None = None
    elements: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]] = []
    caption: str | None = None
    dialogue: list[Dialogue] = []
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    shape: Shape | None = None  # None: [generation] shape


class StoryDocument(_Strict):
    """The TOML document as written (before references are resolved)."""

    title: str = Field(min_length=1)
    theme: str = Field(min_length=1)
    style: str = ""
    generation: Generation = Generation()
    characters: dict[str, Character] = {}
    scenes: dict[str, Scene] = {}
    panels: list[Panel] = Field(min_length=1)
