"""Retrieval without a CLIP model: TF-IDF cosine between element text and image descriptions.

When no CLIP model can be loaded (offline laptop, preview backend) the theme is still searchable,
because reference images usually come with words: sidecar captions, tags, descriptive file names.

The score, documented because users see it:

- Words are lower-cased, split on anything that is not a letter or digit, stop words ("a", "the",
  "with", ...) are removed and a light suffix stemmer maps "boots"/"boot", "glowing"/"glow",
  "shining"/"shine" to one form. The same processing is applied to both sides.
- An image's document is its caption + tags + the words of its original file name
  (``mira_raincoat_standing.png`` -> "mira raincoat standing").
- Term weight = (1 + ln tf) * idf with idf = ln((1 + N) / (1 + df)) + 1 (N images, df images
  containing the word); each vector is L2-normalised; the score is their dot product, the cosine,
  in [0, 1]: 0 shares no word, 1 has the same words in the same proportions. Rare words (a
  character's name, "lens") count more than words every caption has ("lighthouse").
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

STOP_WORDS = frozenset(
    "a an the of in on at with and or to from by for into onto is are was were be been being "
    "it its his her hers their them they he she we you i this that these those as up down out "
    "over under off some any very just than then there here while who whom which what".split()
)
_WORD = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """Light suffix stripping (plural, -ing, -ed, final -e); enough to match caption words."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith(("sses", "xes", "ches", "shes", "zes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # running -> run
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The stemmed content words of ``text``."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and len(w) > 1]


def _weights(counts: Counter[str], idf: dict[str, float]) -> dict[str, float]:
    weights = {t: (1.0 + math.log(c)) * idf[t] for t, c in counts.items() if t in idf}
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {t: w / norm for t, w in weights.items()} if norm > 0 else {}


class LexicalIndex:
    """TF-IDF vectors of a fixed list of image documents, scored against query texts."""

    def __init__(self, documents: Sequence[str]) -> None:
        """Index ``documents`` (one per image, in the library's image order)."""
        self.size = len(documents)
        counted = [Counter(terms(doc)) for doc in documents]
        df = Counter(t for c in counted for t in c)
        self._idf = {t: math.log((1 + self.size) / (1 + n)) + 1.0 for t, n in df.items()}
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for i, counts in enumerate(counted):
            for t, w in _weights(counts, self._idf).items():
                docs, ws = postings.setdefault(t, ([], []))
                docs.append(i)
                ws.append(w)
        self._postings = {
            t: (np.asarray(d, dtype=np.int64), np.asarray(w, dtype=np.float32)) for t, (d, w) in postings.items()
        }

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """(len(queries), len(documents)) cosine scores in [0, 1]."""
        out = np.zeros((len(queries), self.size), dtype=np.float32)
        for q, query in enumerate(queries):
            for t, weight in _weights(Counter(terms(query)), self._idf).items():
                docs, doc_weights = self._postings[t]
                out[q, docs] += weight * doc_weights
        return out


def image_document(caption: str, tags: Sequence[str], original_name: str) -> str:
    """The words an image is searched by: caption, tags and its original file-name stem."""
    stem_words = re.sub(r"[^A-Za-z0-9]+", " ", original_name)
    return " ".join([caption, *tags, stem_words])
