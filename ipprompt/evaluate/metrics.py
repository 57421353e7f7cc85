"""The evaluation metrics as pure arithmetic on unit-length embeddings.

Kept free of models and files so each number can be checked against a direct computation in a
test, and so that ``eval`` and any notebook agree exactly on what "consistency" means. Every input
row is assumed L2-normalised (as ``ClipEncoder`` and ``DinoEncoder`` return them), so a dot
product is a cosine similarity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ipprompt.evaluate.results import THEME_TOP_K  # re-exported: the k of theme fidelity


def clip_t(image_vecs: np.ndarray, text_vecs: np.ndarray) -> np.ndarray:
    """CLIP-T per panel: cosine between each panel image and its own description (row by row)."""
    if image_vecs.shape != text_vecs.shape:
        raise ValueError(f"{image_vecs.shape} images but {text_vecs.shape} texts")
    return np.einsum("ij,ij->i", image_vecs, text_vecs).astype(np.float64)


def theme_fidelity(image_vecs: np.ndarray, theme_vecs: np.ndarray, k: int = THEME_TOP_K) -> np.ndarray | None:
    """CLIP-I to the theme per panel: mean cosine to the ``k`` most similar theme images.

    A theme with fewer than ``k`` images uses all of them; an empty theme gives None (no number
    is better than a made-up one).
    """
    if len(theme_vecs) == 0 or len(image_vecs) == 0:
        return None
    if k < 1:
        raise ValueError("k must be at least 1")
    sims = image_vecs @ theme_vecs.T  # (panels, theme images)
    top = min(k, sims.shape[1])
    best = -np.sort(-sims, axis=1)[:, :top]
    return best.mean(axis=1).astype(np.float64)


def mean_pairwise(vecs: np.ndarray) -> float | None:
    """Mean cosine over all unordered pairs of rows; None for fewer than two rows.

    Identical rows give exactly 1.0 (up to rounding), so "all panels the same" is the ceiling.
    """
    n = len(vecs)
    if n < 2:
        return None
    sims = vecs @ vecs.T
    upper = np.triu_indices(n, k=1)
    return float(sims[upper].mean())


def mean_to_others(vecs: np.ndarray) -> list[float | None]:
    """For each row, its mean cosine to every other row: one panel's share of a pairwise mean."""
    n = len(vecs)
    if n < 2:
        return [None] * n
    sims = vecs @ vecs.T
    return [float((sims[i].sum() - sims[i, i]) / (n - 1)) for i in range(n)]


def character_consistency(
    panel_vecs: Mapping[int, np.ndarray], panels_by_character: Mapping[str, Sequence[int]]
) -> dict[str, float]:
    """Per character shown in two or more panels: mean pairwise similarity of those panels.

    ``panel_vecs`` maps a panel number to its (DINOv2) embedding; panels without one are left
    out, and characters left with fewer than two panels get no entry (consistency needs a pair).
    """
    result: dict[str, float] = {}
    for character, numbers in panels_by_character.items():
        rows = [panel_vecs[n] for n in dict.fromkeys(numbers) if n in panel_vecs]
        value = mean_pairwise(np.stack(rows)) if len(rows) >= 2 else None
        if value is not None:
            result[character] = value
    return result


def panel_character_consistency(
    panel_vecs: Mapping[int, np.ndarray], panels_by_character: Mapping[str, Sequence[int]]
) -> dict[int, float]:
    """Per panel: mean similarity to the other panels that share a character with it.

    This is what the per-panel breakdown shows: the panel that lowers a character's consistency
    is the one with the lowest value here.
    """
    partners: dict[int, set[int]] = {n: set() for n in panel_vecs}
    for numbers in panels_by_character.values():
        present = [n for n in numbers if n in panel_vecs]
        for n in present:
            partners[n].update(m for m in present if m != n)
    return {
        n: float(np.mean([float(panel_vecs[n] @ panel_vecs[m]) for m in sorted(others)]))
        for n, others in partners.items()
        if others
    }


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """Mean of the values that exist; None when none do (a summary of an empty column)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
