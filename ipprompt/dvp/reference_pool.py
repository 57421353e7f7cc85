"""The reference method's retrieval pool: the theme folder's own top-level JPEG and PNG files.

IP-Prompter's ``search_images`` lists ``os.listdir(data_dir)`` (no sub-folders), keeps names ending
in ``.jpg``, ``.jpeg`` or ``.png`` (case-insensitive), and keys images by path, so two files with
the same bytes are two candidates. Our theme library indexes a theme recursively, in more formats,
and once per distinct image (sha256). ``reference_match`` ranks the reference's pool instead, with
the library's own similarities (the same CLIP embedding, or lexical scores without CLIP) and the
reference's rule (top 9 per element; an element's top 3 are not offered to later elements).
Files are taken in name order (``os.listdir`` order is the file system's, so not reproducible);
equal scores keep that order, as the reference's stable sort keeps its listing order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ipprompt.dvp.grid import RefImage
from ipprompt.theme.importer import sha256_hex
from ipprompt.theme.ranking import rank_matches

REFERENCE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def pool_files(folder: Path) -> list[Path]:
    """The theme folder's top-level image files the reference would read, in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.lower().endswith(REFERENCE_EXTENSIONS))


def reference_match(library: Any, elements: Sequence[str], k: int = 9, exclude_top: int = 3) -> list[list[RefImage]]:
    """Per element, the best ``k`` files of the reference's pool, best first (duplicates kept).

    A file whose image the library has no score for (refused when indexed, or not embedded) is
    left out: we never score an image we have not checked.
    """
    files = pool_files(library.path)
    known = {image.path.resolve(): image for image in library.images}
    pool: list[tuple[Path, Any]] = []
    for path in files:
        image = known.get(path.resolve())
        if image is None:  # a duplicate indexed under another name: the same bytes, the same scores
            try:
                image = library.image_by_sha(sha256_hex(path.read_bytes()))
            except (KeyError, OSError):
                continue
        pool.append((path, image))
    if not pool:
        from ipprompt.errors import IppromptError

        raise IppromptError(
            f"--method reference searches the theme folder's own top-level .jpg, .jpeg and .png files, as the reference does, "
            f"and {library.path} has none the theme index could read (images added with `ipprompt theme add` live in its images/ folder).",
            "Put the reference images directly in the theme folder, or use --method dvp (it searches the whole theme).",
        )
    if not elements:
        return []
    sim_all = library._similarities(list(elements))
    columns = [library._position[image.sha256] for _, image in pool]
    sim = np.asarray(sim_all)[:, columns]
    present = getattr(library, "_present", None)
    blocked = None
    if library.encoder is not None and present is not None and len(present):
        blocked = ~np.asarray(present)[columns]
    ranked = rank_matches(sim, np.arange(len(pool), dtype=np.int64), k=k, exclude_top=exclude_top, blocked=blocked)
    return [
        [RefImage(pool[i][1].sha256, pool[i][0], pool[i][1].caption, round(float(score), 6)) for i, score in refs]
        for refs in ranked
    ]
