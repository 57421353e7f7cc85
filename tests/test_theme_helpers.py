"""Image files for theme tests: varied, valid pictures and the broken files users really have.

(Helpers only; the ``test_theme`` prefix keeps the theme tests' files together.)
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from conftest import EXAMPLE_THEME

WORDS = ["red", "blue", "green", "yellow", "white", "navy"]


def make_picture(seed: int, size: tuple[int, int] | None = None) -> Image.Image:
    """A distinct little picture: a seeded background, noise and a few shapes."""
    rng = np.random.default_rng(seed)
    width, height = size or (int(rng.integers(40, 97)), int(rng.integers(40, 97)))
    base = rng.integers(0, 256, size=3)
    pixels = np.clip(base + rng.normal(0, 25, size=(height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        x1, y1 = x0 + int(rng.integers(8, width // 2 + 8)), y0 + int(rng.integers(8, height // 2 + 8))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return image


def make_images(folder: Path, count: int, *, start: int = 0, captions: bool = True) -> list[Path]:
    """``count`` distinct images (PNG, JPEG, WebP mixed) with sidecar captions in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        fmt, suffix = [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp")][i % 3]
        path = folder / f"picture_{i:03d}{suffix}"
        make_picture(i).save(path, format=fmt)
        if captions:
            path.with_suffix(".txt").write_text(f"a {WORDS[i % len(WORDS)]} picture number {i}\n")
        paths.append(path)
    return paths


def png_bytes(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    make_picture(seed, size).save(buffer, format="PNG")
    return buffer.getvalue()


def make_bad_files(folder: Path) -> dict[str, Path]:
    """A zero-byte file, a text file named .png, a truncated PNG, and a (valid) CMYK JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    text = folder / "notes.png"
    text.write_text("this is not an image, just notes\n" * 4)
    truncated = folder / "truncated.png"
    data = png_bytes(77, (128, 128))
    truncated.write_bytes(data[: len(data) // 2])
    cmyk = folder / "print.jpg"
    make_picture(78, (60, 40)).convert("CMYK").save(cmyk, format="JPEG")
    return {"empty": empty, "text": text, "truncated": truncated, "cmyk": cmyk}


def copy_example_theme(tmp_path: Path) -> Path:
    """A writable copy of the example theme (never index the repository's own folder)."""
    dest = tmp_path / "lighthouse"
    shutil.copytree(EXAMPLE_THEME, dest, ignore=shutil.ignore_patterns("index.sqlite*"))
    return dest
