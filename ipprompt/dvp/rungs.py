"""Rungs by noise level: where the search judges its candidates, and how many survive each judgement.

A preview after ``k`` steps shows the model's prediction of the clean image made at the noise level
of step ``k``'s input, ``sigmas[k - 1]``. At high noise that prediction is close to the average of
every plausible completion, and rankings made on it do not hold (TTSnap, Probe-Select). So the
schedule is written in σ, not in steps: a rung names a noise level, the scheduler of the real
canvas (FLUX's resolution shift included) says at which step the prediction first reaches it, and
the rung says how many candidates go on.

The default is successive halving: every arrangement runs to the first rung, the better half goes
on to the next, and the last rung keeps ``finish`` candidates, which run to the end; the best
finished one wins. Limits of the defaults (``docs/speed.md``): nothing is eliminated at σ > 0.95,
at least 2 candidates are finished, at most 150 NFE per panel at a 1536² canvas. A calibration
profile (``ipprompt calibrate``) may move the first rung above 0.95, or finish only one candidate,
where it measured agreement >= 0.9 between preview and final rankings there.

σ is read from a scheduler: the loaded model's own, or, without a model (``--dry-run``), the
FLUX.1-Fill-dev scheduler configuration shipped with the package.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

# The published scheduler configuration of FLUX.1-Fill-dev (FlowMatchEulerDiscreteScheduler).
SHIPPED_SCHEDULER = Path(__file__).resolve().parent.parent / "backends" / "flux_fill_scheduler.json"
MAX_ELIMINATION_SIGMA = 0.95  # defaults never drop a candidate on a prediction noisier than this
MIN_FINISHED = 2  # defaults finish at least this many candidates
TRUST = 0.9  # agreement (Spearman, top-1 hit rate) a profile must show to relax the two limits above
MAX_DEFAULT_NFE = 150  # per panel, at the defaults and a 1536² canvas
VAE_SCALE = 8  # FLUX's VAE: 8 px per latent, 2 x 2 latents per token


@dataclass(frozen=True)
class Budget:
    """A ``--budget`` preset: the search's size and its rungs (keys a story writes still win)."""

    steps: int
    candidates: int
    rounds: int
    refine: int
    rungs: tuple[float, ...]
    finish: int


# NFE at 1536² (mu ~ 2.02) with 3 elements, worked out in docs/speed.md:
#   fast      6 x 6 + 2 x 10                    =  56  (<= 60)
#   balanced  8 x 9 + 4 x 8 + 2 x 11            = 126  (<= 150)
#   thorough  10 x 16 + 5 x 14 + 3 x 20         = 290  (<= 300)
BUDGETS: dict[str, Budget] = {
    "fast": Budget(steps=16, candidates=6, rounds=0, refine=2, rungs=(0.95,), finish=2),
    "balanced": Budget(steps=28, candidates=6, rounds=1, refine=2, rungs=(0.95, 0.85), finish=2),
    "thorough": Budget(steps=50, candidates=6, rounds=2, refine=2, rungs=(0.95, 0.85), finish=3),
}
DEFAULT_BUDGET = "balanced"
NFE_LIMITS = {"fast": 60, "balanced": MAX_DEFAULT_NFE, "thorough": 300}  # per panel at 1536², 3 elements


@dataclass(frozen=True)
class Rung:
    """One judgement: after ``step`` steps, on the prediction made at noise ``sigma``."""

    step: int
    sigma: float  # the σ of the judged prediction (the input σ of step ``step``)
    target: float  # the σ the schedule asked for (the first step whose prediction reaches it)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "sigma": round(self.sigma, 4), "target": self.target}


@dataclass(frozen=True)
class Schedule:
    """A panel's rungs at its canvas, how many are finished, and where the rungs came from."""

    steps: int
    rungs: tuple[Rung, ...]
    finish: int
    source: str  # "budget balanced", "story", "profile <file>"

    def survivors(self, n: int) -> list[int]:
        """How many candidates each rung keeps when ``n`` arrive at the first one (halving)."""
        out = []
        alive = n
        for i in range(len(self.rungs)):
            last = i == len(self.rungs) - 1
            alive = min(alive, self.finish if last else max(self.finish, math.ceil(alive / 2)))
            out.append(alive)
        return out

    def nfe(self, n: int) -> int:
        """Transformer evaluations for ``n`` arrangements (no rungs: every one runs every step)."""
        if not self.rungs:
            return n * self.steps
        cost = n * self.rungs[0].step
        for i, alive in enumerate(self.survivors(n)):
            nxt = self.rungs[i + 1].step if i + 1 < len(self.rungs) else self.steps
            cost += alive * (nxt - self.rungs[i].step)
        return cost

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "finish": self.finish, "source": self.source, "rungs": [r.to_json() for r in self.rungs]}


def flux_mu(config: Any, width: int, height: int) -> float:
    """FluxFillPipeline's resolution shift: linear in the image's token count (extrapolated past 4096)."""
    from diffusers.pipelines.flux.pipeline_flux_fill import calculate_shift

    seq_len = (height // VAE_SCALE // 2) * (width // VAE_SCALE // 2)
    return float(calculate_shift(
        seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
        config.get("base_shift", 0.5), config.get("max_shift", 1.15),
    ))


def set_flux_schedule(scheduler: Any, steps: int, width: int, height: int, device: Any = None) -> Any:
    """Set ``scheduler`` to FluxFillPipeline's schedule for a ``width`` x ``height`` canvas.

    The pipeline's own call: sigmas ``linspace(1, 1/steps, steps)`` shifted by mu. Returns the
    timesteps. The sampler and every σ we print go through here, so they cannot disagree.
    """
    import numpy as np

    sigmas = np.linspace(1.0, 1 / steps, steps)
    scheduler.set_timesteps(sigmas=sigmas, device=device, mu=flux_mu(scheduler.config, width, height))
    return scheduler.timesteps


@lru_cache(maxsize=1)
def shipped_scheduler() -> Any:
    """FLUX.1-Fill-dev's scheduler built from the configuration shipped with the package (no model)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    config = json.loads(SHIPPED_SCHEDULER.read_text(encoding="utf-8"))
    config.pop("_class_name", None)
    return FlowMatchEulerDiscreteScheduler.from_config(config)


def schedule_sigmas(steps: int, width: int, height: int, scheduler: Any | None = None) -> list[float]:
    """σ after each step (``steps + 1`` values, 1.0 first, 0.0 last) for this canvas."""
    sched = copy.deepcopy(scheduler if scheduler is not None else shipped_scheduler())
    set_flux_schedule(sched, steps, width, height)
    return [float(s) for s in sched.sigmas]


def place_rungs(targets: Sequence[float], sigmas: Sequence[float], steps: int) -> tuple[Rung, ...]:
    """Each target σ at the first step whose judged prediction (made at ``sigmas[k-1]``) reaches it.

    A target that is only reached at the last step is no rung (that is finishing); two targets
    that land on the same step make one rung.
    """
    out: dict[int, Rung] = {}
    for target in sorted(targets, reverse=True):
        k = next((k for k in range(1, steps) if sigmas[k - 1] <= target + 1e-9), None)
        if k is not None and k not in out:
            out[k] = Rung(k, sigmas[k - 1], float(target))
    return tuple(out[k] for k in sorted(out))


def schedule_for(
    targets: Sequence[float], finish: int, steps: int, width: int, height: int, source: str, scheduler: Any | None = None
) -> Schedule:
    """A ``Schedule`` for one canvas: targets placed on this canvas's σ."""
    return Schedule(steps, place_rungs(targets, schedule_sigmas(steps, width, height, scheduler), steps), finish, source)


def limit_problems(schedule: Schedule, n: int, nfe_limit: int | None = MAX_DEFAULT_NFE) -> list[str]:
    """Where a schedule breaks the limits of the defaults (for the dry run; empty when it keeps them)."""
    problems = []
    survivors = schedule.survivors(n)
    for rung, alive, before in zip(schedule.rungs, survivors, [n, *survivors]):
        if alive < before and rung.sigma > MAX_ELIMINATION_SIGMA + 1e-9:
            problems.append(f"eliminates at σ {rung.sigma:.3f} > {MAX_ELIMINATION_SIGMA}")
    finished = survivors[-1] if survivors else n
    if finished < min(MIN_FINISHED, n):
        problems.append(f"finishes {finished} < {MIN_FINISHED}")
    if nfe_limit is not None and schedule.nfe(n) > nfe_limit:
        problems.append(f"{schedule.nfe(n)} NFE > {nfe_limit}")
    return problems
