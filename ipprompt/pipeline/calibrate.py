"""``ipprompt calibrate``: measure where previews start to agree with finished panels.

The search drops candidates on previews. Whether a preview at noise σ ranks candidates as their
finished panels would is a property of the model, the canvas, the steps and the LoRAs, and nobody
can tell it in advance (TTSnap, Probe-Select). So this runs every first-round arrangement of the
chosen panels to the last step, scores each candidate's preview at every σ of ``SIGMA_GRID`` and
its finished cell, and reports per σ, over the panels:

- ``spearman``: the rank correlation between preview and final scores (mean over panels);
- ``top1``: the share of panels whose best preview is the best finished candidate;
- ``top2``: the share of panels whose best finished candidate is among the two best previews;
- ``regret``: the final score lost by finishing the best preview instead of the best candidate
  (best final score minus the final score of the preview's choice; 0 is perfect).

The profile (``ipprompt.dvp.profiles``) is written under ``IPPROMPT_HOME``; later runs with the
same key place their rungs from it. Nothing is written to a run folder.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ipprompt.backends.factory import create_backend, planned_dtype
from ipprompt.dvp.grid import GridSpec
from ipprompt.dvp.profiles import AgreementRow, Profile, profile_path, save_profile, settings_profile_key
from ipprompt.dvp.rungs import schedule_sigmas
from ipprompt.dvp.scoring import Scorer
from ipprompt.dvp.search import CandidateSearch, _unique
from ipprompt.errors import IppromptError
from ipprompt.pipeline.execute import grid_spec, out_of_memory_is_a_user_error, panel_prompt, search_settings
from ipprompt.dvp.agreement import rank_agreement
from ipprompt.progress import RunProgress, SilentProgress

# The σ at which previews are scored; 0.95 and 0.85 are the default rungs.
SIGMA_GRID = (0.99, 0.98, 0.97, 0.96, 0.95, 0.93, 0.90, 0.85, 0.80, 0.70, 0.60, 0.50)


@dataclass
class PanelTrace:
    """One panel's candidates: final score each, and preview score each at every traced step."""

    number: int
    canvas: tuple[int, int]
    finals: list[float]
    previews: dict[int, list[float]]  # step -> score per candidate


@dataclass
class CalibrationResult:
    profiles: list[Profile]
    traces: list[PanelTrace]
    sigmas: dict[tuple[int, int], dict[int, float]]  # canvas -> step -> σ of the judged prediction
    settings: dict[str, Any]
    story: str
    seconds: float
    nfe: int
    notes: list[str] = field(default_factory=list)


def steps_for_grid(sigmas: Sequence[float], steps: int, grid: Sequence[float] = SIGMA_GRID) -> dict[int, float]:
    """The first step whose judged prediction reaches each σ of the grid -> that prediction's σ."""
    out: dict[int, float] = {}
    for target in grid:
        k = next((k for k in range(1, steps) if sigmas[k - 1] <= target + 1e-9), None)
        if k is not None:
            out.setdefault(k, sigmas[k - 1])
    return dict(sorted(out.items()))


def agreement_rows(traces: Sequence[PanelTrace], step_sigmas: dict[int, float]) -> tuple[AgreementRow, ...]:
    """Per traced step: Spearman, top-1, top-2 and regret over the panels with 2+ candidates."""
    rows = []
    for step, sigma in step_sigmas.items():
        stats = [rank_agreement(t.previews[step], t.finals) for t in traces if step in t.previews and len(t.finals) >= 2]
        rhos = [s["spearman"] for s in stats if s["spearman"] is not None]

        def mean(values: list[float]) -> float | None:
            return round(sum(values) / len(values), 4) if values else None

        rows.append(AgreementRow(
            sigma=round(sigma, 4), step=step, spearman=mean(rhos),
            top1=mean([s["top1"] for s in stats]), top2=mean([s["top2"] for s in stats]),
            regret=mean([s["regret"] for s in stats]), panels=len(stats),
        ))
    return tuple(rows)


def calibrate(
    story_path: str | Path,
    *,
    panels: str | list[int] | None = None,
    progress: RunProgress | None = None,
    backend_instance: Any | None = None,
    encoder_instance: Any | None = None,
    **options: Any,
) -> CalibrationResult:
    """Trace every first-round arrangement of the selected panels and write one profile per canvas."""
    from ipprompt.backends.factory import create_encoder
    from ipprompt.pipeline.plan import plan_panels
    from ipprompt.pipeline.run import open_theme, preflight
    from ipprompt.backends.registry import backend_spec
    from ipprompt.pipeline.core import ReferenceEmbeddings, theme_embeddings

    progress = progress or SilentProgress()
    pre = preflight(story_path, panels, options, check_machine=backend_instance is None)
    story, settings, numbers = pre.story, pre.settings, pre.numbers
    machine = settings.machine
    if not backend_spec(settings.backend).denoises:
        raise IppromptError("Calibration needs a generator: the preview backend makes no previews to compare.", "Use --backend flux-fill.")
    started = time.perf_counter()
    encoder = encoder_instance if encoder_instance is not None else create_encoder(settings, progress.note)
    if encoder is None:
        raise IppromptError(
            f"Calibration scores previews with CLIP, and the CLIP model '{settings.encoder}' could not be loaded.",
            "Give --encoder a local folder or a model in the Hugging Face cache.",
        )
    library = open_theme(story, encoder, progress)
    machine_key = {"quantize": machine.quantize, "vae_tiling": machine.vae_tiling, "dtype": planned_dtype(settings.backend, machine)}
    # Without continuity images (no run folder): each panel is traced on its own references.
    jobs = [j.with_previous(None) for j in plan_panels(story, settings, library, numbers, machine_key=machine_key)]
    with out_of_memory_is_a_user_error("loading the model"):
        backend = backend_instance if backend_instance is not None else create_backend(settings, progress.note)
    references = ReferenceEmbeddings(encoder)  # as a run scores: the theme's cached embeddings
    for job in jobs:
        references.update(theme_embeddings(library, job))
    scorer = Scorer(encoder, references)
    search_s = search_settings(settings)
    traces: list[PanelTrace] = []
    grids: dict[tuple[int, int], dict[int, float]] = {}
    nfe_before = backend.nfe
    with out_of_memory_is_a_user_error("calibration"):
        backend.encode_texts([j.text for j in jobs])
        for job in jobs:
            spec: GridSpec = grid_spec(job)
            canvas = (spec.width, spec.height)
            if canvas not in grids:
                grids[canvas] = steps_for_grid(schedule_sigmas(settings.steps, *canvas, getattr(backend, "scheduler", None)), settings.steps)
            search = CandidateSearch(backend, scorer, spec, search_s)
            prompt = panel_prompt(job)
            finals: list[float] = []
            previews: dict[int, list[float]] = {k: [] for k in grids[canvas]}
            for i, arrangement in enumerate(_unique(search.first_round(prompt))):
                progress.note(f"panel {job.number}: arrangement {i + 1}, {settings.steps} steps")
                candidate, scores = search.trace(prompt, arrangement, i, list(grids[canvas]))
                assert candidate.scores is not None
                finals.append(candidate.scores.total)
                for k in previews:
                    previews[k].append(scores[k].total)
            traces.append(PanelTrace(job.number, canvas, finals, previews))
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    profiles = []
    for canvas, step_sigmas in grids.items():
        key = settings_profile_key(search_s, *canvas)
        rows = agreement_rows([t for t in traces if t.canvas == canvas], step_sigmas)
        profile = Profile(key, rows, profile_path(key), str(story.path), created)
        save_profile(profile)
        profiles.append(profile)
    return CalibrationResult(
        profiles, traces, grids, settings.model_dump(mode="json"), str(story.path),
        round(time.perf_counter() - started, 2), backend.nfe - nfe_before, list(settings.legacy_notes),
    )
