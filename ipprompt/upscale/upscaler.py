"""Super-resolution models (ESRGAN, Real-ESRGAN Compact, SwinIR, SPAN, ...) loaded through spandrel.

spandrel is the library ComfyUI and chaiNNer use to recognise such a model from its state dict
alone and build the matching PyTorch module. Weights are read only as tensors: ``.safetensors``
with safetensors, ``.pth``/``.ckpt`` with ``torch.load(weights_only=True)``; a pickled ``.pt``
(TorchScript or arbitrary objects) is refused, because loading it can run code.

An upscaler enlarges by its own fixed scale (often 4x). The pass wants exactly N times the panel,
so the model's output is resized to that size with Lanczos when the scales differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ipprompt.errors import IppromptError

SUFFIXES = (".safetensors", ".pth", ".ckpt")
INSTALL_HINT = 'Install the extra: pip install "ipprompt[upscale]"'


def file_sha256(path: Path) -> str:
    """The model file's hash: it names the model in the pass's key and the manifest."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_upscaler_path(path: str) -> Path:
    """The upscaler file, or an IppromptError naming what is wrong (before any model loads)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise IppromptError(f"--upscaler {path}: no such file.", "Give an ESRGAN/SwinIR-class model file (.safetensors or .pth).")
    if p.suffix.lower() not in SUFFIXES:
        raise IppromptError(
            f"--upscaler {path}: {p.suffix or 'no extension'} is not a weights file ipprompt loads.",
            f"Use {', '.join(SUFFIXES)}; pickled .pt files are refused because loading them can run code.",
        )
    return p


def _state_dict(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise IppromptError(
            f"--upscaler {path} cannot be read as plain weights: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            "Only tensors are loaded (weights_only); convert the model to .safetensors.",
        ) from None
    if not isinstance(data, dict):
        raise IppromptError(f"--upscaler {path} holds a {type(data).__name__}, not a state dict.", "Give a model's state dict (.safetensors or .pth).")
    return data


@dataclass
class Upscaler:
    """A loaded super-resolution model and what it is."""

    path: Path
    sha256: str
    architecture: str
    scale: int
    model: Any = field(repr=False)
    device: Any = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.architecture}, {self.scale}x)"

    def enlarge(self, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        """The model's enlargement of ``image``, resized to exactly ``size`` (Lanczos) when its scale differs."""
        import numpy as np
        import torch

        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
        model = self.model
        with torch.inference_mode():
            x = x.to(self.device or "cpu")
            y = model(x).clamp(0, 1)
        out = (y[0].permute(1, 2, 0).float().cpu().numpy() * 255.0).round().astype(np.uint8)
        result = Image.fromarray(out)
        return result if result.size == size else result.resize(size, Image.Resampling.LANCZOS)


_LOADED: dict[tuple[str, str], Upscaler] = {}


def load_upscaler(path: str, device: Any = None) -> Upscaler:
    """Load (once per file and device) an image-to-image super-resolution model through spandrel."""
    p = check_upscaler_path(path)
    sha = file_sha256(p)
    cached = _LOADED.get((sha, str(device)))
    if cached is not None:
        return cached
    try:
        from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError
    except ImportError:
        raise IppromptError("--upscaler needs spandrel, which is not installed.", INSTALL_HINT) from None
    from spandrel import canonicalize_state_dict

    try:
        descriptor = ModelLoader().load_from_state_dict(canonicalize_state_dict(_state_dict(p)))
    except UnsupportedModelError:
        raise IppromptError(
            f"--upscaler {path}: spandrel does not recognise this model's architecture.",
            "Use an ESRGAN, Real-ESRGAN (Compact), SwinIR, SPAN, HAT or other spandrel-supported model.",
        ) from None
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise IppromptError(f"--upscaler {path} is not an RGB image-to-image model.", "Use a super-resolution model (3 channels in and out).")
    if descriptor.scale < 1:
        raise IppromptError(f"--upscaler {path} makes images smaller (scale {descriptor.scale}).", "Use a super-resolution model.")
    descriptor.model.eval()
    if device is not None:
        descriptor.model.to(device)
    up = Upscaler(p, sha, str(descriptor.architecture.name), int(descriptor.scale), descriptor.model, device)
    _LOADED[(sha, str(device))] = up
    return up
