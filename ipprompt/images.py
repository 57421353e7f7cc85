"""The one way ipprompt opens an image file: checked, decoded, upright, RGB.

Every picture ipprompt reads comes from a user's disk (theme images, pinned character references)
and may be anything: a zero-byte download, a text file renamed ``.png``, a half-copied file, a
60000x1 PNG of 256 bytes that would decode into a strip no model can use, a "decompression bomb"
whose few kilobytes expand to gigabytes, a 16-bit scan, a CMYK JPEG from a print workflow, a
phone photo stored sideways with an EXIF rotation. Handling each of these once, here, means a
theme import, a contact sheet, an encoder batch and a story check all agree on what an image is.

Rules (see :data:`IMAGE_LIMITS`):

- the size is checked from the header, *before* any pixel is decoded, so an absurd file costs
  nothing;
- every pixel is then decoded (``load``), so a truncated file is refused now, not in the middle of
  a run;
- 16-bit greyscale keeps its grey levels (0..65535 scaled to 0..255, not clipped to white);
  transparency is flattened on white (not the black that often hides under transparent pixels);
  CMYK goes through its embedded ICC profile when there is one; EXIF orientation is applied.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ipprompt.errors import IppromptError


@dataclass(frozen=True)
class ImageLimits:
    """What ipprompt accepts as a reference image; anything beyond is refused by name."""

    max_side: int = 8192
    max_pixels: int = 50_000_000
    max_aspect: float = 20.0
    max_file_bytes: int = 512 * 2**20

    def describe(self) -> str:
        """One sentence for help texts and the README."""
        return (
            f"at most {self.max_side} px on a side, {self.max_pixels / 1e6:g} megapixels in all, "
            f"a side ratio of {self.max_aspect:g}:1 and {self.max_file_bytes // 2**20} MiB per file"
        )


IMAGE_LIMITS = ImageLimits()

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class ImageRejected(IppromptError):
    """A file that cannot be used as an image; ``reason`` says why in words a user can act on."""

    def __init__(self, reason: str, name: str | None = None) -> None:
        message = f"{name}: {reason}" if name else reason
        super().__init__(message, f"Images must be readable PNG, JPEG, WebP, ... files with {IMAGE_LIMITS.describe()}.")
        self.reason = reason
        self.name = name


class ImageTooLarge(ImageRejected):
    """An image refused for its size alone (read from its header, nothing decoded).

    Kept apart from other refusals so that callers which treat an unreadable file as simply
    missing (a storyboard, an export) still stop with a message for a file that is a decompression
    bomb: that is someone's doing, not damage.
    """


def size_problem(width: int, height: int, limits: ImageLimits = IMAGE_LIMITS) -> str | None:
    """Why an image of this size is refused, or None when it is acceptable."""
    if width < 1 or height < 1:
        return f"image has no pixels ({width}x{height})"
    if max(width, height) > limits.max_side:
        return f"image too large ({width}x{height} px; at most {limits.max_side} px on a side)"
    if width * height > limits.max_pixels:
        megapixels = width * height / 1e6
        return f"image too large ({width}x{height} px = {megapixels:.0f} megapixels; at most {limits.max_pixels / 1e6:g})"
    if max(width, height) / min(width, height) > limits.max_aspect:
        return f"image too thin ({width}x{height} px; sides may differ by at most {limits.max_aspect:g}:1)"
    return None


def read_image_bytes(path: Path, limits: ImageLimits = IMAGE_LIMITS) -> bytes:
    """The bytes of an image file, refusing what is not a regular file or is too big to read.

    A FIFO named ``x.png`` would block forever and a 20 GB file would fill memory, so both are
    refused from ``stat`` before any read.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ImageRejected(f"cannot read file ({exc.strerror or exc})", str(path)) from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageRejected("not a regular file", str(path))
    if info.st_size > limits.max_file_bytes:
        raise ImageTooLarge(
            f"file too large ({info.st_size / 2**20:.0f} MiB; at most {limits.max_file_bytes // 2**20} MiB)", str(path)
        )
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageRejected(f"cannot read file ({exc.strerror or exc})", str(path)) from None


IMAGE_MODES = ("upright", "plain")


def open_image(
    source: Path | str | bytes, *, name: str | None = None, limits: ImageLimits = IMAGE_LIMITS, mode: str = "upright"
) -> Image.Image:
    """Decode a file (path) or file bytes into an upright RGB image, or raise ``ImageRejected``.

    ``name`` is how the file is named in the refusal (the path itself by default; give the name
    the user wrote, e.g. a symlink's own name, when it differs). ``mode="plain"`` converts as
    IP-Prompter's code does, ``Image.open(p).convert("RGB")``: no EXIF rotation, transparency
    dropped (not flattened on white), so ``--method reference`` gets the reference's pixels; the
    checks and limits stay.
    """
    if mode not in IMAGE_MODES:
        raise ValueError(f"unknown image mode {mode!r}: one of {IMAGE_MODES}")
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        name = name or str(source)
        data = read_image_bytes(Path(source), limits)
    if not data:
        raise ImageRejected("empty file (0 bytes)", name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
            problem = size_problem(image.width, image.height, limits)
            if problem is not None:
                raise ImageTooLarge(problem, name)
            image.load()
            if mode == "plain":
                return image.convert("RGB")
            return _to_rgb(_upright(image))
    except ImageRejected as rejected:
        raise type(rejected)(rejected.reason, rejected.name or name) from None
    except UnidentifiedImageError:
        raise ImageRejected("not an image (format not recognised)", name) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"image too large to decode safely (limits: {limits.describe()})", name) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ImageRejected(f"corrupt or truncated image data ({detail})", name) from None


def probe_image(data: bytes, *, name: str | None = None, limits: ImageLimits = IMAGE_LIMITS) -> tuple[str, int, int]:
    """An image's format and size from its header alone, nothing decoded.

    For code that passes image bytes on as they are (a storyboard inlining a panel): the same size
    rules as ``open_image`` apply, so a decompression bomb is refused here as ``ImageTooLarge``
    rather than blowing up later in a browser or in Pillow.
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)", name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt, width, height = image.format or "", image.width, image.height
    except UnidentifiedImageError:
        raise ImageRejected("not an image (format not recognised)", name) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"image too large to decode safely (limits: {limits.describe()})", name) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ImageRejected(f"corrupt image header ({detail})", name) from None
    problem = size_problem(width, height, limits)
    if problem is not None:
        raise ImageTooLarge(problem, name)
    return fmt, width, height


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a damaged EXIF block leaves the picture as stored."""
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:  # noqa: BLE001 - Pillow raises many types for malformed EXIF
        return image


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    """Greyscale 16-bit (or 32-bit integer) pixels scaled to 8 bits.

    ``convert("L")`` clips every value above 255 to white, so a 16-bit scan came out almost blank;
    scaling 0..65535 to 0..255 keeps the grey levels.
    """
    values = np.asarray(image).astype(np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L")


def _float_to_l(image: Image.Image) -> Image.Image:
    """32-bit float greyscale: 0..1 data (common in scientific TIFFs) or 0..255 data, to 8 bits."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if values.size and values.max() <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """CMYK through its embedded ICC profile when it has one; Pillow's formula otherwise."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted
        except Exception:  # noqa: BLE001 - a broken profile falls back to the plain conversion
            pass
    return image.convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for the encoder and the canvas; transparent areas become white, not black."""
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        image = _sixteen_bit_to_l(image)
    elif mode == "F":
        image = _float_to_l(image)
    elif mode == "CMYK":
        return _cmyk_to_rgb(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError:
        raise ImageRejected(f"unsupported colour mode {mode}") from None


def image_file_problem(path: Path, limits: ImageLimits = IMAGE_LIMITS) -> str | None:
    """Why the image file at ``path`` is unusable, or None; a cheap check that decodes no pixel.

    For files ipprompt wrote itself (a run's panel images), where a full decode per kept panel
    per run would cost seconds: the header and size limits as ``open_image`` checks them, then
    Pillow's ``verify`` (for PNG, every chunk's checksum up to the end marker), so a file cut
    short or overwritten with garbage is found. Use ``open_image`` to get pixels.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size == 0:
        return "empty file (0 bytes)"
    if info.st_size > limits.max_file_bytes:
        return f"file too large ({info.st_size / 2**20:.0f} MiB)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                problem = size_problem(image.width, image.height, limits)
                if problem is not None:
                    return problem
                image.verify()
    except UnidentifiedImageError:
        return "not an image (format not recognised)"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "image too large to decode safely"
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return f"corrupt or truncated image data ({detail})"
    return None
