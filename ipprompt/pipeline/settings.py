"""``RunSettings``: every setting of a run, built once, recorded in the manifest, reused later.

A run is decided by the story's ``[generation]`` table, the options typed on the command line (or
given to ``run_story``) and the machine options. They are merged here, once, into one frozen
object that planning, the search, the projection and the manifest all read: there is no second
copy of a setting anywhere.

Runs remember. The options given on a command line are recorded in the manifest
(``RunManifest.options``), and every later command on the same run folder starts from them:
finishing a pick, a reroll, ``eval`` and ``export`` need no flag typed again, and leaving one out
never silently changes what the run makes. Precedence, lowest first: the story's ``[generation]``
(as the story says *now*), the options recorded by earlier commands, the options given now.

Adding a setting: one field (on ``Generation`` when a story may set it, else here) and one typer
option whose parameter name is the field's name. ``settings_options`` picks such parameters out of
a command's arguments by name, so nothing else changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, ValidationError

from ipprompt.backends.factory import MachineOptions
from ipprompt.errors import IppromptError
from ipprompt.story.schema import FAST_DEFAULTS, PRINT_PASS_KEYS, Generation

# Option names that differ from their field's name (a repeatable ``--lora`` fills ``loras``).
OPTION_NAMES = {"loras": "lora"}
# Settings that only say how to run, not what to make: a differing value is remembered but never
# makes a panel again (quantize and VAE tiling do change pixels: they are in the panel key).
MACHINE_FIELDS = tuple(MachineOptions.model_fields)


class RunSettings(Generation, MachineOptions):
    """The story's generation settings with the command line on top, plus how to run them."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @property
    def machine(self) -> MachineOptions:
        """Where and how the generator runs (checked by ``check_inputs`` before anything loads)."""
        return MachineOptions(**self.model_dump(include=set(MachineOptions.model_fields)))

    def option(self, name: str) -> str:
        """How a user types this setting on the command line, with its value."""
        value = getattr(self, name)
        flag = "--" + OPTION_NAMES.get(name, name).replace("_", "-")
        if isinstance(value, bool):
            return flag if value else f"--no-{flag[2:]}"
        if isinstance(value, list):
            return " ".join(f"{flag} {v}" for v in value) or f"{flag} (none)"
        return f"{flag} {value}"


def settings_options(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a command that are settings (by name), leaving out those not given (None)."""
    fields = RunSettings.model_fields
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        if name not in fields or value is None or (isinstance(value, (list, tuple)) and not value):
            continue  # not given (typer passes an empty list for a repeatable option left out)
        out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def build_settings(generation: Generation, given: Mapping[str, Any], remembered: Mapping[str, Any] | None = None) -> RunSettings:
    """Merge the story's ``[generation]``, the remembered options and ``given``, validated as one.

    Only keys the story wrote are taken from it, so that keys with mode-dependent defaults
    (``--fast``) follow the mode; a ``fast`` given on a command line also outranks the story's
    steps and preview step.
    """
    options = {**dict(remembered or {}), **{k: v for k, v in given.items() if v is not None}}
    options = {k: v for k, v in options.items() if k in RunSettings.model_fields}
    written = generation.model_dump(exclude_unset=True)
    if options.get("fast"):
        written = {k: v for k, v in written.items() if k not in FAST_DEFAULTS}
    try:
        return RunSettings.model_validate({**written, **options})
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            key = str(e["loc"][0]) if e["loc"] else ""
            option = "--" + OPTION_NAMES.get(key, key).replace("_", "-")
            msg = e.get("ctx", {}).get("error", e["msg"])
            source = "" if key in given else " (remembered by this run folder)" if key in (remembered or {}) else " (story [generation])"
            problems.append(f"{option} {options.get(key, written.get(key))!r}{source}: {msg}")
        raise IppromptError("Invalid option: " + "; ".join(problems), "See `ipprompt story run --help`.") from None


def differences(settings: RunSettings, recorded: Mapping[str, Any]) -> list[str]:
    """Settings whose value differs from what the run folder recorded, pixel-deciding ones only."""
    out = []
    for name in RunSettings.model_fields:
        if (name in MACHINE_FIELDS and name not in ("quantize", "vae_tiling")) or name in PRINT_PASS_KEYS:
            continue
        if name not in recorded:
            continue
        now = settings.model_dump()[name]
        if now != recorded[name]:
            out.append(name)
    return out
