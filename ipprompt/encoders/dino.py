"""The DINOv2 image encoder that measures character consistency.

CLIP embeddings are built to match captions, so two panels of different people in the same
style score alike; DINO features are self-supervised on images alone and are what the story
papers (and DreamBooth before them) use for subject identity. Loading mirrors ``ipprompt.encoders.clip``:
``from_pretrained`` on a Hub id or a local folder, one batched forward per call, float32
L2-normalised numpy rows out, and any load failure becomes ``ModelUnavailable`` naming ``--dino``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ipprompt.encoders.clip import LoadedEncoder, _normalised, _silence_expected_transformers_noise, model_key, no_transformers_progress_bars
from ipprompt.errors import ModelUnavailable

from ipprompt.evaluate.results import DEFAULT_DINO  # noqa: E402,F401  (defined where no numpy is needed)


class DinoEncoder(LoadedEncoder):
    """A loaded DINOv2-style image model returning one unit-length vector per image."""

    @classmethod
    def load(cls, model_id: str = DEFAULT_DINO, device: str | None = None) -> DinoEncoder:
        """Load ``model_id`` on CUDA in fp16 when available, else CPU fp32; failures name ``--dino``."""
        import torch

        _silence_expected_transformers_noise()
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        try:
            from transformers import AutoImageProcessor, AutoModel

            with no_transformers_progress_bars():
                model = AutoModel.from_pretrained(model_id, dtype=dtype)
                processor = AutoImageProcessor.from_pretrained(model_id)
            if getattr(model.config, "model_type", "") not in ("dinov2", "dinov2_with_registers", "dinov3_vit"):
                raise ValueError(f"{type(model).__name__} is not a DINOv2 model")
            model = model.to(device).eval()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as cause:
            raise ModelUnavailable(model_id, "DINOv2 (character consistency)", "--dino", cause) from cause
        return cls(model, processor, model_key(model_id), device)

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 16) -> np.ndarray:
        """Embed images as (n, hidden) float32 unit rows: the (layer-normed) CLS token.

        The CLS token is the global image descriptor the DINO metric in the literature uses.
        """
        import torch

        if not images:
            return np.zeros((0, int(self.model.config.hidden_size)), dtype=np.float32)
        rows = []
        for start in range(0, len(images), batch_size):
            batch = [im if im.mode == "RGB" else im.convert("RGB") for im in images[start : start + batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, dtype=self.dtype)
            with torch.inference_mode():
                output = self.model(pixel_values=pixels)
            pooled = getattr(output, "pooler_output", None)
            if pooled is None:
                pooled = output.last_hidden_state[:, 0]
            rows.append(_normalised(pooled))
            self.calls += 1
        return np.concatenate(rows, axis=0)
