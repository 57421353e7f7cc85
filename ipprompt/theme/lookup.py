"""Finding one image of a theme by what a user types: a file name or a sha256 prefix."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ipprompt.errors import IppromptError
from ipprompt.theme.records import ThemeImage

MIN_SHA_PREFIX = 4
_HEX = re.compile(r"[0-9a-fA-F]+")


def find_image(images: Sequence[ThemeImage], ref: str, theme: str) -> ThemeImage:
    """An image by file name (as stored, or its original name) or by a unique sha prefix (4+).

    Raises ``IppromptError`` naming the candidates when the reference is ambiguous, so a user
    never removes or pins the wrong image.
    """
    ref = ref.strip()
    by_name = [
        image
        for image in images
        if ref in (image.file_name, Path(image.file_name).name, Path(image.original_path).name)
    ]
    if len(by_name) == 1:
        return by_name[0]
    if not by_name and _HEX.fullmatch(ref):
        if len(ref) < MIN_SHA_PREFIX:
            raise IppromptError(
                f"'{ref}' is too short to identify an image.",
                f"Give at least {MIN_SHA_PREFIX} characters of the sha256 (see `ipprompt theme show`).",
            )
        by_name = [image for image in images if image.sha256.startswith(ref.lower())]
        if len(by_name) == 1:
            return by_name[0]
    if not by_name:
        raise IppromptError(
            f"No image '{ref}' in theme '{theme}'.",
            "Use a file name or a sha256 prefix shown by `ipprompt theme show " + theme + "`.",
        )
    listed = ", ".join(f"{i.short_sha} ({i.file_name})" for i in by_name[:6])
    raise IppromptError(
        f"'{ref}' matches {len(by_name)} images in theme '{theme}': {listed}.",
        "Give a longer sha256 prefix.",
    )
