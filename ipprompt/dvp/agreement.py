"""How well one ranking predicts another: Spearman's rank correlation, top-k hits and regret.

Used by calibration to compare the ranking of previews at some σ with the ranking of the finished
candidates. Written out (a few lines) rather than taken from scipy, which is not a dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of the ranks they span (as scipy's ``rankdata``)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Pearson correlation of the tie-aware ranks; None when either side has no spread (undefined)."""
    if len(a) != len(b):
        raise ValueError("spearman needs two sequences of the same length")
    if len(a) < 2:
        return None
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    if va == 0 or vb == 0:
        return None
    return cov / (va * vb) ** 0.5


def rank_agreement(preview: Sequence[float], final: Sequence[float]) -> dict[str, Any]:
    """For one panel: Spearman, whether the best preview is the best final (top1), whether the best
    final is among the two best previews (top2), and the final score lost by trusting the preview.

    Ties go to the lower index, as the search breaks them.
    """
    best_preview = sorted(range(len(preview)), key=lambda i: (-preview[i], i))
    best_final = min(range(len(final)), key=lambda i: (-final[i], i))
    return {
        "spearman": spearman(preview, final),
        "top1": 1.0 if best_preview[0] == best_final else 0.0,
        "top2": 1.0 if best_final in best_preview[:2] else 0.0,
        "regret": final[best_final] - final[best_preview[0]],
    }
