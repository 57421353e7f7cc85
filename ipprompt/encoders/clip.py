"""The CLIP encoder shared by retrieval (theme search) and scoring (CLIP-T / CLIP-I).

Retrieval and scoring must embed text and images with the *same* model, otherwise similarities
from the two stages are not comparable; so there is one small wrapper, loaded once and passed
around. It is deliberately thin: ``from_pretrained`` on a Hub id or a local folder (which is how
tests load a tiny random-weight model), one batched forward per call, float32 L2-normalised numpy
rows out. ``calls`` counts forward batches so tests can prove that cached embeddings are reused.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ipprompt.errors import ModelUnavailable

DEFAULT_ENCODER = "openai/clip-vit-base-patch32"
# CLIP's text tower has 77 positions; longer prompts must be cut, not rejected.
MAX_TEXT_TOKENS = 77
_TEXT_BATCH = 256
_TORCHVISION_FALLBACK = "requires torchvision (not installed)"


class _DropTorchvisionFallback(logging.Filter):
    """Hide transformers' 'falling back to the PIL image processor' warning.

    Without torchvision, transformers uses its PIL image processor, which is exactly what we want;
    the warning would only alarm users on every run.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return _TORCHVISION_FALLBACK not in record.getMessage()


def _silence_expected_transformers_noise() -> None:
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _DropTorchvisionFallback) for f in logger.filters):
        logger.addFilter(_DropTorchvisionFallback())


# Installed at import: the warning fires when transformers first resolves CLIPImageProcessor,
# which may happen before any encoder is loaded (e.g. when a test builds a tiny model).
_silence_expected_transformers_noise()


@contextlib.contextmanager
def no_transformers_progress_bars() -> Iterator[None]:
    """Loading a 600 MB checkpoint prints a 'Loading weights' bar; ours draws its own progress."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _projected(output: Any) -> Any:
    """The projected embedding from ``get_*_features``.

    transformers 4.x returns a plain tensor; 5.x returns a model output whose ``pooler_output`` is
    the projected embedding.
    """
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"Unexpected encoder output {type(output).__name__}: no pooler_output")
    return pooled


def _normalised(features: Any) -> np.ndarray:
    rows = features.detach().float().cpu().numpy().astype(np.float32, copy=False)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def model_key(model_id: str) -> str:
    """A stable id for caching embeddings: local folders by absolute path, Hub ids as given.

    Two different folders called ``./clip`` must not share cached embeddings, and the same folder
    reached from another working directory must.
    """
    local = Path(model_id).expanduser()
    if local.is_dir():
        return str(local.resolve())
    return model_id


class LoadedEncoder:
    """A transformers model and its processor, loaded on a device; ``calls`` counts forward batches
    (tests use it to prove that cached embeddings are reused). Shared by CLIP and DINOv2."""

    model_id: str
    device: str
    calls: int

    def __init__(self, model: Any, processor: Any, model_id: str, device: str) -> None:
        """Wrap an already loaded model; use the subclass's ``load`` to get one from a Hub id or folder."""
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.device = device
        self.calls = 0
        self.dtype = next(model.parameters()).dtype


class ClipEncoder(LoadedEncoder):
    """A loaded CLIP-style model (text + image towers) that returns unit-length embeddings."""

    dim: int

    def __init__(self, model: Any, processor: Any, model_id: str, device: str) -> None:
        super().__init__(model, processor, model_id, device)
        self.dim = int(self._probe_dim())

    def _probe_dim(self) -> int:
        dim = getattr(self.model.config, "projection_dim", None)
        if dim:
            return int(dim)
        # Models without a projection_dim: embed one empty text once (not counted in ``calls``).
        features = self._text_features([""])
        return int(features.shape[1])

    @classmethod
    def load(cls, model_id: str, device: str | None = None) -> ClipEncoder:
        """Load ``model_id`` (Hub id or local folder) on CUDA in fp16 when available, else CPU fp32.

        Any failure (missing files, no cache while offline, gated repo, not a CLIP-style model)
        becomes ``ModelUnavailable`` so the CLI can say what to do instead of printing a traceback.
        """
        import torch

        _silence_expected_transformers_noise()
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        try:
            from transformers import AutoModel, AutoProcessor

            with no_transformers_progress_bars():
                model = AutoModel.from_pretrained(model_id, dtype=dtype)
                processor = AutoProcessor.from_pretrained(model_id)
            for needed in ("get_text_features", "get_image_features"):
                if not hasattr(model, needed):
                    raise ValueError(f"{type(model).__name__} is not a CLIP-style model (no {needed})")
            if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
                raise ValueError(f"{type(processor).__name__} lacks an image processor or a tokenizer")
            model = model.to(device).eval()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as cause:  # OSError, ValueError, HF hub errors, gated repos, ...
            raise ModelUnavailable(model_id, "CLIP encoder", "--encoder", cause) from cause
        return cls(model, processor, model_key(model_id), device)

    def _text_features(self, texts: list[str]) -> Any:
        import torch

        tokens = self.processor.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=MAX_TEXT_TOKENS,
            return_tensors="pt",
        )
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            return _projected(self.model.get_text_features(**tokens))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as (n, dim) float32 unit rows; prompts longer than 77 tokens are cut."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = []
        for start in range(0, len(texts), _TEXT_BATCH):
            batch = [str(t) for t in texts[start : start + _TEXT_BATCH]]
            rows.append(_normalised(self._text_features(batch)))
            self.calls += 1
        return np.concatenate(rows, axis=0)

    def embed_images(
        self,
        images: Sequence[Image.Image],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``images`` as (n, dim) float32 unit rows, ``batch_size`` per forward pass.

        ``progress`` is called after every batch with the number of images that batch finished, so
        a caller can drive a progress bar over many calls.
        """
        import torch

        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        rows = []
        for start in range(0, len(images), batch_size):
            batch = [im if im.mode == "RGB" else im.convert("RGB") for im in images[start : start + batch_size]]
            pixels = self.processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, dtype=self.dtype)
            with torch.inference_mode():
                features = _projected(self.model.get_image_features(pixel_values=pixels))
            rows.append(_normalised(features))
            self.calls += 1
            if progress is not None:
                progress(len(batch))
        return np.concatenate(rows, axis=0)


def load_encoder_or_none(
    model_id: str,
    device: str | None = None,
    *,
    warn: Callable[[str], None],
) -> ClipEncoder | None:
    """Load the encoder, or return None after one ``warn`` so the caller can match lexically.

    Retrieval can degrade gracefully (captions and tags still find the right references), so a
    missing CLIP model must not stop a preview run or a theme import; it must only be said, once.
    """
    try:
        return ClipEncoder.load(model_id, device)
    except ModelUnavailable as error:
        cause = error.__cause__
        first_line = (str(cause).splitlines() or [""])[0][:160] if cause else ""
        reason = f": {type(cause).__name__}: {first_line}" if cause else ""
        warn(
            f"No CLIP model available ('{model_id}' could not be loaded{reason}): matching on "
            f"captions and tags. Download it, or point --encoder at a local CLIP folder, for image "
            f"search."
        )
        return None
