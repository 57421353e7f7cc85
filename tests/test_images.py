"""The one image opener: size limits before decoding, and every colour mode a user's files come in."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ipprompt.errors import IppromptError
from ipprompt.images import IMAGE_LIMITS, ImageRejected, open_image, size_problem


def test_sixteen_bit_greyscale_keeps_its_grey_levels(tmp_path: Path) -> None:
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    path = tmp_path / "scan16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode in ("I;16", "I")  # really stored as 16 bits
    image = open_image(path)
    assert image.mode == "RGB"
    assert [image.getpixel((x, 0))[0] for x in range(4)] == [0, 64, 128, 255]


def test_thirty_two_bit_integer_greyscale_is_scaled_too(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.int32).repeat(3, axis=0)
    path = tmp_path / "scan32.tif"
    Image.fromarray(values, "I").save(path)
    image = open_image(path)
    assert [image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_la_is_flattened_on_white(tmp_path: Path) -> None:
    path = tmp_path / "grey_alpha.png"
    picture = Image.new("LA", (4, 4), (0, 0))  # black under fully transparent pixels
    picture.putpixel((0, 0), (0, 255))  # one opaque black pixel
    picture.putpixel((1, 0), (0, 128))  # one half-transparent black pixel
    picture.save(path)
    image = open_image(path)
    assert image.getpixel((3, 3)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (0, 0, 0)
    assert 120 <= image.getpixel((1, 0))[0] <= 135


def test_rgba_is_flattened_on_white(tmp_path: Path) -> None:
    path = tmp_path / "cutout.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    assert open_image(path).getpixel((1, 1)) == (255, 255, 255)


def test_palette_with_transparency_is_flattened_on_white(tmp_path: Path) -> None:
    path = tmp_path / "palette.gif"
    picture = Image.new("P", (4, 4), 0)
    picture.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    picture.putpixel((0, 0), 1)
    picture.info["transparency"] = 0
    picture.save(path, transparency=0)
    image = open_image(path)
    assert image.getpixel((3, 3)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (200, 30, 30)


def test_cmyk_jpeg_becomes_the_right_rgb(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    picture = Image.new("CMYK", (16, 16), (255, 0, 0, 0))  # pure cyan
    picture.paste((0, 0, 0, 255), (0, 0, 8, 16))  # left half pure black
    picture.save(path, quality=95)
    image = open_image(path)
    r, g, b = image.getpixel((12, 8))
    assert r < 30 and g > 225 and b > 225
    assert max(image.getpixel((3, 8))) < 30


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    picture = Image.new("RGB", (40, 20), (255, 255, 255))
    picture.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    picture.save(path, exif=exif.tobytes(), quality=95)
    image = open_image(path)
    assert image.size == (20, 40)
    r, g, b = image.getpixel((10, 3))  # the stored left edge is now at the top
    assert r > 200 and g < 60 and b < 60


def test_a_60000_by_1_png_is_refused_by_name_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "strip.png"
    Image.new("L", (60000, 1)).save(path)
    assert path.stat().st_size < 1024
    started = time.perf_counter()
    with pytest.raises(ImageRejected) as caught:
        open_image(path)
    assert time.perf_counter() - started < 1.0
    assert isinstance(caught.value, IppromptError)
    assert "strip.png" in caught.value.message and "too large" in caught.value.reason
    assert "60000x1" in caught.value.reason


@pytest.mark.parametrize(
    ("size", "word"),
    [((9000, 100), "too large"), ((8000, 7000), "megapixels"), ((2100, 100), "too thin"), ((100, 2100), "too thin")],
)
def test_size_limits(size: tuple[int, int], word: str) -> None:
    problem = size_problem(*size)
    assert problem is not None and word in problem
    assert size_problem(4000, 3000) is None and size_problem(IMAGE_LIMITS.max_side, 420) is None
    assert "8192 px" in IMAGE_LIMITS.describe()


def test_decompression_bomb_warning_is_a_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.png"
    Image.new("L", (300, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # 90000 px: warning zone, not error zone
    with pytest.raises(ImageRejected, match="too large to decode safely"):
        open_image(path)


def test_bad_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    whole = tmp_path / "whole.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(whole)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[:60])
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    reasons = {}
    for path in (empty, text, truncated, fifo, tmp_path / "gone.png"):
        with pytest.raises(ImageRejected) as caught:
            open_image(path)
        assert path.name in caught.value.message
        reasons[path.name] = caught.value.reason
    assert "empty" in reasons["empty.png"] and "not an image" in reasons["notes.png"]
    assert "truncated" in reasons["truncated.png"] and "regular file" in reasons["pipe.png"]
    assert "cannot read" in reasons["gone.png"]
    assert open_image(whole.read_bytes()).getpixel((0, 0)) == (10, 200, 30)
