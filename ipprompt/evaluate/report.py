"""Evaluate finished run folders: per-panel and per-run metrics, and ``eval.json`` in the run folder.

Evaluation reads only what a run left on disk (the manifest, the panel PNGs and the theme), so it
needs no generator and can score a run made on another machine. Both encoders are loaded before
any work, so a missing model fails in a second with a message naming ``--encoder`` or ``--dino``
rather than after minutes of encoding. Results are stored per (CLIP, DINO) pair: numbers from
different encoders are not comparable, and re-evaluating with another encoder must not overwrite
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ipprompt.backends.registry import runs_no_model
from ipprompt.runfolder.safepath import inside_or_none
from ipprompt.errors import IppromptError, ModelUnavailable
from ipprompt.dvp.pruning import search_label
from ipprompt.evaluate import metrics
from ipprompt.evaluate.results import DEFAULT_DINO, Cost, PanelEval, RunEval, Summary, save_eval
from ipprompt.story.schema import DEFAULT_ENCODER
from ipprompt.runfolder.manifest import PanelEntry, RunManifest, now_iso, read_manifest

# --------------------------------------------------------------------------- loading models


def _eval_hint(error: ModelUnavailable) -> str:
    """The loader's hint without advice that is about generating, plus what eval needs."""
    keep = [line for line in (error.hint or "").splitlines() if "--backend preview" not in line and "Gated" not in line]
    keep.append("  - `ipprompt eval` needs a CLIP model (--encoder) and a DINOv2 model (--dino); no generator.")
    return "\n".join(keep)


def load_eval_encoders(encoder_id: str, dino_id: str | None, device: str | None = None) -> tuple[Any, Any]:
    """Load the CLIP and DINOv2 encoders, or raise one ``ModelUnavailable`` (exit 2) naming the option.

    ``dino_id`` None: the default DINOv2 when it is on this machine, else none (character
    consistency is then skipped and said so, rather than failing an offline eval).
    """
    from ipprompt.backends.factory import model_available_locally
    from ipprompt.encoders.clip import ClipEncoder
    from ipprompt.encoders.dino import DinoEncoder

    try:
        clip = ClipEncoder.load(encoder_id, device)
        if dino_id is None:
            dino = DinoEncoder.load(DEFAULT_DINO, device) if model_available_locally(DEFAULT_DINO) else None
        else:
            dino = DinoEncoder.load(dino_id, device)
    except ModelUnavailable as error:
        error.hint = _eval_hint(error)
        raise
    return clip, dino


def run_encoder(roots: Sequence[Path]) -> str:
    """The CLIP model the runs were made with (the first run's), so that eval scores as the run did."""
    for root in roots:
        manifest = read_manifest(root)
        recorded = manifest.settings.get("encoder") or manifest.models.get("encoder")
        if recorded:
            return str(recorded)
    return DEFAULT_ENCODER


# --------------------------------------------------------------------------- one run


def panel_description(panel: PanelEntry, style: str) -> str:
    """What CLIP-T compares with: the recorded description, else prompt + style (older runs)."""
    if panel.description:
        return panel.description
    return f"{panel.prompt}, {style}" if style else panel.prompt


def _panel_image(run_dir: Path, panel: PanelEntry) -> Image.Image | None:
    path = inside_or_none(run_dir, panel.image) if panel.done else None  # never a file outside the run
    if path is None:
        return None
    from ipprompt.images import ImageRejected, ImageTooLarge, open_image

    try:
        return open_image(path)
    except ImageTooLarge as refused:  # a decompression bomb is not "missing": say so and stop
        raise IppromptError(
            f"Panel {panel.number}: {refused.message}", "Replace or delete that file, then evaluate again."
        ) from None
    except ImageRejected:
        return None


def _theme_vectors(manifest: RunManifest, clip: Any, notes: list[str]) -> np.ndarray:
    """The theme's CLIP embeddings, from its index when cached for this encoder (else computed once)."""
    from ipprompt.theme.library import ThemeLibrary

    where = manifest.theme.get("path") or manifest.theme.get("name")
    if not where:
        notes.append("The manifest names no theme: theme fidelity is not measured.")
        return np.zeros((0, clip.dim), dtype=np.float32)
    try:
        with ThemeLibrary.open(str(where), clip) as library:
            vectors = library.embeddings_for([image.sha256 for image in library.images])
    except IppromptError as error:
        notes.append(f"Theme {where} could not be opened ({error.message}): theme fidelity is not measured.")
        return np.zeros((0, clip.dim), dtype=np.float32)
    # Images that could not be read have no embedding (a zero row): they are not part of the theme.
    return vectors[np.linalg.norm(vectors, axis=1) > 0.5]


def _panel_settings(panel: PanelEntry, manifest: RunManifest) -> dict[str, Any]:
    return panel.settings or manifest.settings


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def evaluate_run(run_dir: str | Path, clip: Any, dino: Any, *, k: int = metrics.THEME_TOP_K) -> RunEval:
    """Measure one finished run with loaded encoders (see ``docs/eval.md`` for each number)."""
    root = Path(run_dir)
    manifest = read_manifest(root)
    notes: list[str] = []
    style = manifest.story.style
    panels: list[PanelEntry] = []
    images: list[Image.Image] = []
    for panel in manifest.panels:
        if not panel.done:
            continue
        image = _panel_image(root, panel)
        if image is None:
            notes.append(f"Panel {panel.number}: its image {panel.image} is missing or unreadable; skipped.")
            continue
        panels.append(panel)
        images.append(image)
    # The print pass: scores stay at the grid's size, comparable with runs without it
    printed = [p.number for p in panels if p.upscale is not None]
    if printed:
        notes.append(
            f"Panel{'s' if len(printed) != 1 else ''} {', '.join(map(str, printed))} also "
            f"{'have' if len(printed) != 1 else 'has'} a print-pass image; eval scores the grid-size image the search chose "
            "(panels/NN.png), so the scores compare with runs without the pass."
        )
    if not panels:
        raise IppromptError(
            f"{root} has no finished panels to evaluate.",
            f"Run the story first: `ipprompt story run {manifest.story.path or 'STORY.toml'} --out {root}`.",
        )
    clip_vecs = clip.embed_images(images)
    text_vecs = clip.embed_texts([panel_description(p, style) for p in panels])
    dino_vecs = dino.embed_images(images) if dino is not None else None
    theme_vecs = _theme_vectors(manifest, clip, notes)

    numbers = [p.number for p in panels]
    by_character: dict[str, list[int]] = {}
    for p in panels:
        for c in p.characters:
            by_character.setdefault(c.id, []).append(p.number)
    dino_by_number = dict(zip(numbers, dino_vecs)) if dino_vecs is not None else {}
    if dino is None:
        notes.append(f"No DINOv2 model on this machine ({DEFAULT_DINO}): no character consistency; pass --dino DIR.")
    texts = metrics.clip_t(clip_vecs, text_vecs)
    fidelity = metrics.theme_fidelity(clip_vecs, theme_vecs, k)
    style_each = metrics.mean_to_others(clip_vecs)
    character_each = metrics.panel_character_consistency(dino_by_number, by_character)
    per_character = metrics.character_consistency(dino_by_number, by_character)

    rows: list[PanelEval] = []
    for i, p in enumerate(panels):
        made_with = _panel_settings(p, manifest)
        rows.append(
            PanelEval(
                number=p.number,
                characters=[c.id for c in p.characters],
                clip_t=_round(texts[i]),
                theme_fidelity=_round(fidelity[i]) if fidelity is not None else None,
                character_consistency=_round(character_each.get(p.number)),
                style_consistency=_round(style_each[i]),
                preview=runs_no_model(made_with.get("backend")),
                backend=made_with.get("backend"),
                method=p.method,
                search=search_label(made_with, p.rungs),
                fast=made_with.get("fast"),
                nfe=p.nfe,
                seconds=p.seconds,
                peak_gpu_bytes=p.peak_gpu_bytes,
            )
        )
    summary = Summary(
        clip_t=_round(metrics.mean_or_none([r.clip_t for r in rows])),
        theme_fidelity=_round(metrics.mean_or_none([r.theme_fidelity for r in rows])),
        character_consistency=_round(metrics.mean_or_none(list(per_character.values()))),
        style_consistency=_round(metrics.mean_pairwise(clip_vecs)),
        characters={c: round(v, 6) for c, v in per_character.items()},
    )
    peaks = [r.peak_gpu_bytes for r in rows if r.peak_gpu_bytes]
    backends = list(dict.fromkeys(str(r.backend) for r in rows if r.backend))
    cost = Cost(
        panels=len(rows),
        nfe=sum(r.nfe for r in rows),
        seconds=round(sum(r.seconds for r in rows), 3),
        peak_gpu_bytes=max(peaks) if peaks else None,
        backend=" + ".join(backends) or None,
        methods=list(dict.fromkeys(r.method for r in rows if r.method)),
        search=search_label(manifest.settings, any(p.rungs for p in panels) if panels else None),
        fast=manifest.settings.get("fast"),
    )
    if not per_character:
        notes.append("No character appears in two or more evaluated panels: no character consistency.")
    names = {cid: str(info.get("name") or cid) for cid, info in manifest.story.characters.items()}
    for p in panels:
        for c in p.characters:
            names.setdefault(c.id, c.name or c.id)
    return RunEval(
        run=str(root),
        title=manifest.story.title,
        story=manifest.story.path,
        encoder=clip.model_id,
        dino=dino.model_id if dino is not None else "none",
        theme_top_k=k,
        theme=manifest.theme.get("name"),
        theme_images=len(theme_vecs),
        preview=any(r.preview for r in rows),
        evaluated=now_iso(),
        manifest_updated=manifest.updated,
        character_names=names,
        panels=rows,
        summary=summary,
        cost=cost,
        notes=notes,
    )


def evaluate_runs(
    runs: Sequence[str | Path],
    *,
    encoder: str | None = None,
    dino: str | None = None,
    save: bool = True,
    k: int = metrics.THEME_TOP_K,
    on_run: Callable[[Path], None] | None = None,
) -> list[RunEval]:
    """Load both encoders once, evaluate every run, and (with ``save``) store each in its eval.json.

    Every run folder is checked before the models load, so a typo fails fast.
    """
    roots = [Path(r) for r in runs]
    for root in roots:
        read_manifest(root)
    clip_model, dino_model = load_eval_encoders(encoder or run_encoder(roots), dino)
    results = []
    for root in roots:
        if on_run is not None:
            on_run(root)
        result = evaluate_run(root, clip_model, dino_model, k=k)
        if save:
            save_eval(root, result)
        results.append(result)
    return results
