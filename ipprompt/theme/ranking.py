"""The reference rule of IP-Prompter, as a pure function over a similarity matrix.

For each key element, in order, images are ranked by similarity to the element; the top ``k`` are
its references. Images among an *earlier* element's top ``exclude_top`` are not offered to later
elements (so the character's best pictures are not reused as the scene's), and blocked images
(the user's pinned references, already placed in fixed cells, or images without an embedding) are
never offered. Equal scores are broken by sha256 ascending so a run is reproducible.

Kept free of the library, SQLite and models so it can be checked against a brute-force reference
on random data, and benchmarked on 100k rows. The only Python loop is over elements (a handful);
each element costs one ``argpartition`` over the images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sha_tie_rank(shas: Sequence[str]) -> np.ndarray:
    """Position of each image in sha256-ascending order: the tie-breaker for equal scores.

    A library keeps its images sorted by sha256, so for it this is simply ``arange(n)``.
    """
    order = np.argsort(np.asarray(list(shas), dtype=str), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _top_k(scores: np.ndarray, candidates: np.ndarray, tie_rank: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best candidates, best first, ties by ``tie_rank`` ascending.

    ``argpartition`` finds the k-th best score in linear time; every candidate scoring at least that
    is kept (this includes all images tied at the boundary), and only that short list is sorted.
    """
    values = scores[candidates]
    if k < len(candidates):
        kth = len(values) - k
        threshold = values[np.argpartition(values, kth)[kth]]
        keep = values >= threshold
        candidates, values = candidates[keep], values[keep]
    order = np.lexsort((tie_rank[candidates], -values))
    return candidates[order[:k]]


def rank_matches(
    sim: np.ndarray,
    tie_rank: np.ndarray,
    k: int = 9,
    exclude_top: int = 3,
    blocked: np.ndarray | None = None,
) -> list[list[tuple[int, float]]]:
    """Apply the reference rule to ``sim`` (elements x images); returns (image index, score) lists.

    ``tie_rank`` orders images for ties (see :func:`sha_tie_rank`); ``blocked`` is a boolean mask of
    images never offered. NaN scores are treated as the worst possible score.
    """
    sim = np.asarray(sim)
    if sim.ndim != 2:
        raise ValueError(f"sim must be 2-D (elements x images), got shape {sim.shape}")
    n_images = sim.shape[1]
    if len(tie_rank) != n_images:
        raise ValueError(f"{len(tie_rank)} tie ranks for {n_images} images")
    if k < 1:
        raise ValueError("k must be at least 1")
    if exclude_top < 0:
        raise ValueError("exclude_top must not be negative")
    available = np.ones(n_images, dtype=bool) if blocked is None else ~np.asarray(blocked, dtype=bool)
    if np.isnan(sim).any():
        sim = np.where(np.isnan(sim), -np.inf, sim)
    results: list[list[tuple[int, float]]] = []
    for row in sim:
        top = _top_k(row, np.flatnonzero(available), tie_rank, k)
        results.append([(int(i), float(row[i])) for i in top])
        if exclude_top:
            available[top[:exclude_top]] = False
    return results
