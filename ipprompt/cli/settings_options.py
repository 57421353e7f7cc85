"""The command-line options that set ``RunSettings`` fields, declared once for every command.

``story run``, ``vistorybench run`` and ``calibrate`` all make panels, so they take the same
settings options. ``with_settings_options`` adds them to a command's signature (typer reads the
signature) and hands the command one ``settings`` dict holding the options that were given, by
field name. Adding a setting is one entry here (a typer option whose name is the field's name)
and one field on the settings model; nothing else in the CLI changes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, List, Optional

import typer

GENERATION = "Generation settings (remembered by the run folder)"
MACHINE = "Machine (remembered by the run folder)"
PRINT = "Print pass (remembered by the run folder)"


def _opt(*flags: str, help: str, panel: str = GENERATION, metavar: str | None = None, **kw: Any) -> Any:
    return typer.Option(None, *flags, help=help, rich_help_panel=panel, metavar=metavar, **kw)


METAVARS = {"model": "ID", "encoder": "ID", "loras": "SPEC", "rungs": "LIST", "cache": "NAME[:T]", "upscaler": "PATH"}


def _with_default(name: str, kind: Any, option: Any) -> Any:
    """A copy of the option with its default in its help (read from the model that defines it)
    and a short metavar, so that ``--help`` fits 80 columns and never drifts from the code."""
    import copy

    from ipprompt.backends.factory import MachineOptions
    from ipprompt.cli.helptext import default, story_default
    from ipprompt.story.schema import Generation

    option = copy.copy(option)
    if option.metavar is None and kind is not Optional[bool]:
        option.metavar = METAVARS.get(name, "N" if kind is Optional[int] else "X" if kind is Optional[float] else "NAME")
    if name in Generation.model_fields:
        option.help = f"{option.help} {story_default(name)}"
    elif name in MachineOptions.model_fields:
        value = MachineOptions.model_fields[name].default
        option.help = f"{option.help} {default('on' if value is True else 'off' if value is False else str(value))}"
    return option


def _sigmas(text: Optional[str]) -> Optional[list[float]]:
    """``--rungs 0.95,0.85`` -> [0.95, 0.85] (the schema checks the values)."""
    if text is None or isinstance(text, list):
        return text
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a list of numbers, e.g. 0.95,0.85") from None


# name -> (type, option). Defaults are None: "not given", so the run folder's value (or the
# story's) applies; the real defaults are in the help and in ipprompt/story/schema.py.
SETTINGS_OPTIONS: dict[str, tuple[Any, Any]] = {
    "backend": (Optional[str], _opt(help="flux-fill (FLUX.1-Fill-dev) or preview (no model).")),
    "model": (Optional[str], _opt(help="FLUX Fill model: hub id or local folder.")),
    "encoder": (Optional[str], _opt(help="CLIP model for retrieval and scoring: hub id or folder.")),
    "method": (Optional[str], _opt(help="dvp (ours) or reference (IP-Prompter, reproduced).")),
    "candidates": (Optional[int], _opt(help="Arrangements in the first round.")),
    "steps": (Optional[int], _opt(help="Denoising steps.")),
    "guidance": (Optional[float], _opt(help="Guidance.")),
    "seed": (Optional[int], _opt(help="Base seed; a panel's own seed wins.")),
    "rounds": (Optional[int], _opt(help="Refinement rounds after the first.")),
    "refine": (Optional[int], _opt(help="New arrangements per refinement round.")),
    "search": (Optional[str], _opt(help="pruned (judge previews at rungs) or exhaustive.")),
    "budget": (Optional[str], _opt(help="fast (<= 60 NFE/panel), balanced (<= 150) or thorough (<= 300).")),
    "rungs": (Optional[str], _opt(help="σ at which candidates are judged, e.g. 0.95,0.85 (default: the budget's or a profile's).", callback=_sigmas)),
    "finish": (Optional[int], _opt(help="Candidates the last rung keeps and finishes.")),
    "calibration": (Optional[str], _opt(help="auto (use a matching calibration profile) or off.")),
    "cache": (Optional[str], _opt(help="none or fbcache[:THRESHOLD]: First Block Cache.")),
    "one_seed": (Optional[bool], _opt("--one-seed/--no-one-seed", help="Every panel from the base seed, as one reference run.")),
    "fast": (Optional[bool], _opt("--fast/--no-fast", help="Few-step LoRA, 8 steps, no refinement: 34 NFE per panel (at most 40).")),
    "loras": (Optional[List[str]], _opt("--lora", help="LoRA: hub id or .safetensors[:SCALE] (repeatable).")),
    "continuity": (Optional[bool], _opt("--continuity/--no-continuity", help="Previous panel as a reference.")),
    "tile": (Optional[int], _opt(help="Pixels per grid cell, multiple of 16.")),
    "grid": (Optional[int], _opt(help="Cells per side: 2 or 3.")),
    "shape": (Optional[str], _opt(help="Panels' shape: square, wide or tall.")),
    "upscale": (Optional[int], _opt(help="Print pass: enlarge each chosen panel 2, 3 or 4 times and re-detail it with FLUX Fill (1: off).", panel=PRINT)),
    "upscale_strength": (Optional[float], _opt(help="Share of the schedule the print pass re-draws (0: enlargement only, no FLUX).", panel=PRINT)),
    "upscale_tile": (Optional[int], _opt(help="Largest side FLUX re-details at once, in px (multiple of 16).", panel=PRINT)),
    "upscale_overlap": (Optional[int], _opt(help="Px shared by neighbouring tiles, blended without a seam.", panel=PRINT)),
    "upscaler": (Optional[str], _opt(help="ESRGAN/SwinIR-class model (.safetensors or .pth, through spandrel) that enlarges before the FLUX pass.", panel=PRINT)),
    "device": (Optional[str], _opt(help="auto, cpu, cuda or cuda:N.", panel=MACHINE)),
    "offload": (Optional[str], _opt(help="none, model or sequential.", panel=MACHINE)),
    "quantize": (Optional[str], _opt(help="none, fp8 or nf4.", panel=MACHINE)),
    "vae_tiling": (Optional[bool], _opt("--vae-tiling/--no-vae-tiling", help="Decode in tiles.", panel=MACHINE)),
    "compile": (Optional[bool], _opt("--compile/--no-compile", help="torch.compile the blocks.", panel=MACHINE)),
    "attention": (Optional[str], _opt(help="native, flash, _flash_3 or sage.", panel=MACHINE)),
}


def with_settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` every settings option; it receives them as ``settings`` (given ones only).

    ``command`` declares a ``settings: dict`` parameter; typer sees the options in its place.
    """
    from ipprompt.pipeline.settings import settings_options

    own = inspect.signature(command, eval_str=True)
    kept = [p for p in own.parameters.values() if p.name != "settings"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_with_default(name, kind, option), annotation=kind)
        for name, (kind, option) in SETTINGS_OPTIONS.items()
    ]
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [p.replace(kind=keyword) if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD else p for p in kept] + added

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in SETTINGS_OPTIONS if name in kwargs}
        return command(settings=settings_options(given), **kwargs)

    wrapper.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # typer must read the new signature, not the command's
    return wrapper
