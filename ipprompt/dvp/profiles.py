"""Calibration profiles: measured agreement between previews and finished panels, and the rungs it allows.

``ipprompt calibrate`` runs every arrangement of some panels to the end and records, for a grid of
σ, how well the ranking of previews at that σ predicts the ranking of the finished panels. The
result depends on the model, the canvas, the number of steps and the LoRAs, so a profile is keyed by
exactly those and stored under ``IPPROMPT_HOME/profiles``. A later run with the same key places its
rungs from the profile (``rungs_from_profile``) instead of the budget's defaults.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipprompt.atomic import atomic_write_text
from ipprompt.dvp.rungs import MIN_FINISHED, TRUST
from ipprompt.paths import ipprompt_home

if TYPE_CHECKING:
    from ipprompt.dvp.rungs import Schedule

PROFILE_FORMAT = 1


def profiles_home() -> Path:
    return ipprompt_home() / "profiles"


def profile_key(model: str, width: int, height: int, steps: int, loras: Sequence[Any]) -> dict[str, Any]:
    """What a profile's measurements depend on: the model, the canvas, the steps and the LoRAs."""
    local = Path(model).expanduser()
    return {
        "model": str(local.resolve()) if local.is_dir() else model,
        "canvas": [int(width), int(height)],
        "steps": int(steps),
        "loras": list(loras),
    }


def profile_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return profiles_home() / f"{digest}.json"


@dataclass(frozen=True)
class AgreementRow:
    """Agreement between preview and final rankings at one σ (over the calibrated panels)."""

    sigma: float
    step: int
    spearman: float | None  # mean over panels of the rank correlation; None when no panel had 2+ ranks
    top1: float | None  # share of panels whose best preview is the best finished candidate
    top2: float | None  # share of panels whose best finished candidate is among the 2 best previews
    regret: float | None  # mean final score lost by taking the best preview (best final - its final)
    panels: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Profile:
    key: dict[str, Any]
    rows: tuple[AgreementRow, ...]
    path: Path
    story: str = ""
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT, "key": self.key, "story": self.story, "created": self.created,
            "rows": [r.to_json() for r in self.rows],
        }


def save_profile(profile: Profile) -> Path:
    atomic_write_text(profile.path, json.dumps(profile.to_json(), indent=2) + "\n")
    return profile.path


def load_profile(key: dict[str, Any]) -> Profile | None:
    """The profile measured for exactly this key, or None (also for an unreadable file: the
    defaults are always safe, so a damaged profile never stops a run)."""
    path = profile_path(key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != PROFILE_FORMAT or data.get("key") != key:
            return None
        rows = tuple(AgreementRow(**r) for r in data["rows"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return Profile(key, rows, path, data.get("story", ""), data.get("created", ""))


def _trusted(value: float | None) -> bool:
    return value is not None and value >= TRUST


def rungs_from_profile(profile: Profile, default_targets: Sequence[float], default_finish: int) -> tuple[tuple[float, ...], int, str]:
    """Rung targets and the number finished, as the profile's measurements allow.

    The first rung goes to the highest σ from which agreement (Spearman) stays >= 0.9 all the way
    down: above 0.95 where the profile shows it (the one relaxation of that limit), later than the
    default where agreement only comes later. The default rungs below it stay. One candidate is
    finished only where the last rung's top-1 hit rate is >= 0.9; else the default count. Without
    any σ of agreement >= 0.9, the default rungs stay (and the note says so).
    """
    rows = sorted(profile.rows, key=lambda r: r.sigma)
    first = None
    for row in rows:  # from low σ upwards, while agreement holds
        if not _trusted(row.spearman):
            break
        first = row.sigma
    if first is None:
        return tuple(default_targets), default_finish, f"profile {profile.path.name} (no σ with agreement >= {TRUST}: default rungs)"
    targets = (first, *[t for t in default_targets if t < first - 1e-9])
    last = min(targets)
    at_last = max((r for r in rows if r.sigma <= last + 1e-9), key=lambda r: r.sigma, default=None)
    finish = 1 if at_last is not None and _trusted(at_last.top1) else max(default_finish, MIN_FINISHED)
    return targets, finish, f"profile {profile.path.name}"


def settings_profile_key(settings: Any, width: int, height: int) -> dict[str, Any]:
    """The profile key of a search's settings (``SearchSettings``) at one canvas."""
    return profile_key(settings.model, width, height, settings.steps, [json.loads(f) for f in settings.loras])


def resolve_schedule(settings: Any, width: int, height: int, scheduler: Any | None = None) -> "Schedule":
    """The rungs a panel uses at a ``width`` x ``height`` canvas, and where they came from.

    Rungs written in the story (or ``--rungs``) win; else a calibration profile for exactly this
    model, canvas, step count and LoRAs (``calibration = "auto"``); else the ``--budget`` preset.
    An exhaustive search or the reference method has no rungs: every candidate runs to the end.
    σ comes from ``scheduler`` (the loaded model's) or, without one, the shipped FLUX.1-Fill-dev
    configuration.
    """
    from ipprompt.dvp.methods import method_of
    from ipprompt.dvp.rungs import BUDGETS, Schedule, schedule_for

    if not settings.pruned or not method_of(settings.method).rungs:
        return Schedule(settings.steps, (), 0, "none: every candidate runs to the end")
    if settings.rungs is not None:
        return schedule_for(settings.rungs, settings.finish, settings.steps, width, height, "story", scheduler)
    targets, finish, source = BUDGETS[settings.budget].rungs, settings.finish, f"budget {settings.budget}"
    if settings.calibration == "auto" and settings.model:
        profile = load_profile(settings_profile_key(settings, width, height))
        if profile is not None:
            targets, finish, source = rungs_from_profile(profile, targets, finish)
    return schedule_for(targets, finish, settings.steps, width, height, source, scheduler)
