"""Scores that pick the winning candidate: text alignment and theme consistency.

score = W_TEXT * CLIP-T + W_IMAGE * CLIP-I, where CLIP-T is the cosine similarity between the
generated cell and the panel's description (its prompt and the story's style, never the
instruction about the grid that the generator's prompt starts with), and CLIP-I the mean cosine
similarity between the generated cell and the panel's reference set: the same set for every
candidate of a panel (each element's top references and the pinned ones), so that an arrangement
placing weaker references is not judged against weaker references. The reference method ranks by CLIP-T alone; adding
CLIP-I rewards candidates that keep the theme's look, which is what users judge us on. CLIP-T
alone sits around 0.2-0.35 and CLIP-I around 0.6-0.9 for real CLIP, so the weights also keep
CLIP-I from drowning out the text.

Per element, the cell's similarity to each element's text tells refinement which element the
candidate shows worst; an element that is an image (continuity: the previous panel) is scored by
image similarity to that image, never by its placeholder text.

Without a CLIP model (the preview backend on a laptop), scores are the attention-weighted mean of
the placed references' retrieval scores: they rank arrangements by how well their references
match, which is what a plan needs, and say so (``method = "retrieval"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ipprompt.dvp.grid import Arrangement, GridSpec, RefImage

if TYPE_CHECKING:
    from ipprompt.encoders.clip import ClipEncoder

W_TEXT = 0.7
W_IMAGE = 0.3


@dataclass(frozen=True)
class Scores:
    total: float
    clip_t: float | None
    clip_i: float | None
    per_element: tuple[float, ...]
    method: str  # "clip" or "retrieval"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_element"] = list(self.per_element)
        return data


class Scorer:
    """Scores candidate cells; caches text and reference embeddings across candidates."""

    def __init__(self, encoder: "ClipEncoder | None", reference_embeddings: Callable[[Sequence[RefImage]], np.ndarray] | None = None) -> None:
        self.encoder = encoder
        self._text_cache: dict[str, np.ndarray] = {}
        self._ref_cache: dict[str, np.ndarray] = {}
        self._reference_embeddings = reference_embeddings

    @property
    def method(self) -> str:
        return "clip" if self.encoder is not None else "retrieval"

    def _texts(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            for text, vec in zip(missing, self.encoder.embed_texts(missing)):
                self._text_cache[text] = vec
        return np.stack([self._text_cache[t] for t in texts])

    def _refs(self, refs: Sequence[RefImage]) -> np.ndarray:
        missing = [r for r in {r.sha256: r for r in refs}.values() if r.sha256 not in self._ref_cache]
        if missing:
            if self._reference_embeddings is not None:
                vecs = self._reference_embeddings(missing)
            else:
                vecs = self.encoder.embed_images([r.open() for r in missing])
            for ref, vec in zip(missing, vecs):
                self._ref_cache[ref.sha256] = np.asarray(vec, dtype=np.float32)
        return np.stack([self._ref_cache[r.sha256] for r in refs])

    def score(
        self,
        cell: Image.Image,
        text: str,
        element_texts: Sequence[str],
        arrangement: Arrangement,
        spec: GridSpec,
        references: Sequence[RefImage] | None = None,
        element_images: Sequence[RefImage | None] = (),
    ) -> Scores:
        """Score one generated (or previewed) target cell.

        ``references``: the panel's CLIP-I set (the arrangement's own references when None);
        ``element_images[e]``, when given, stands for element e instead of its text.
        """
        if self.encoder is None:
            return retrieval_scores(arrangement, spec, len(element_texts))
        image_vec = self.encoder.embed_images([cell.convert("RGB")])[0]
        images = list(element_images) + [None] * (len(element_texts) - len(element_images))
        texts = self._texts([text, *(t for t, im in zip(element_texts, images) if im is None)])
        text_sims = iter(texts @ image_vec)
        clip_t = float(next(text_sims))
        by_image = [r for r in images if r is not None]
        image_sims = iter(self._refs(by_image) @ image_vec) if by_image else iter(())
        per_element = [next(image_sims) if im is not None else next(text_sims) for im in images[: len(element_texts)]]
        refs = list(references) if references is not None else [p.ref for p in arrangement.placements]
        clip_i = float(np.mean(self._refs(refs) @ image_vec)) if refs else 0.0
        total = W_TEXT * clip_t + W_IMAGE * clip_i
        return Scores(round(total, 6), round(clip_t, 6), round(clip_i, 6), tuple(round(float(s), 6) for s in per_element), "clip")


def retrieval_scores(arrangement: Arrangement, spec: GridSpec, n_elements: int) -> Scores:
    """Model-free score: retrieval similarity of the placed references, weighted by cell attention."""
    order = list(spec.attention_order)
    weights = {cell: (len(order) - i) / len(order) for i, cell in enumerate(order)}
    num = den = 0.0
    per: list[list[float]] = [[] for _ in range(n_elements)]
    for p in arrangement.placements:
        if p.element is None or p.ref.score is None:
            continue
        w = weights.get(p.cell, 0.0)
        num += w * p.ref.score
        den += w
        per[p.element].append(p.ref.score)
    total = num / den if den else 0.0
    per_element = tuple(round(float(np.mean(v)), 6) if v else 0.0 for v in per)
    return Scores(round(total, 6), None, None, per_element, "retrieval")
