"""The FLUX.1-Fill-dev backend: loading with memory options, and the step-wise protocol.

Loading is where users with 16-24 GB cards succeed or fail, so every memory lever lives here:
model or sequential CPU offload, fp8 weight storage (layerwise casting: fp8 in memory, bf16
compute, works on any GPU and on CPU), nf4 through bitsandbytes (CUDA only), VAE tiling, and
``torch.compile`` of the repeated transformer blocks.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ipprompt.backends.base import FillJob
from ipprompt.backends.flux_sampler import FluxFillSampler, PromptEncoding, SamplerState
from ipprompt.backends.factory import MachineOptions, check_inputs, resolve_device
from ipprompt.errors import ModelUnavailable

def _quantization_config(quantize: str) -> Any:
    if quantize != "nf4":
        return None
    from diffusers.quantizers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": torch.bfloat16},
        components_to_quantize=["transformer", "text_encoder_2"],
    )


def load_flux_fill(model_id: str, options: MachineOptions) -> tuple[Any, torch.device, torch.dtype]:
    """Load FluxFillPipeline from a hub id or a folder, placed on the device as the options say.

    The options were checked by ``check_inputs`` (called again here, so direct library callers
    get the same refusals).
    """
    from diffusers import FluxFillPipeline

    check_inputs("flux-fill", options)
    device = resolve_device(options.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    quant = _quantization_config(options.quantize)
    local = Path(model_id).expanduser()
    source = str(local) if local.is_dir() else model_id
    kwargs: dict[str, Any] = {"torch_dtype": dtype}
    if quant is not None:
        kwargs["quantization_config"] = quant
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # our own progress bars say what is happening
    from ipprompt.clip import no_transformers_progress_bars

    try:
        with warnings.catch_warnings(), no_transformers_progress_bars():
            warnings.simplefilter("ignore")
            pipe = FluxFillPipeline.from_pretrained(source, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ModelUnavailable(model_id, "FLUX Fill generator", "--model", exc) from None
    except Exception as exc:  # hub errors (gated, offline) come as several classes across versions
        name = type(exc).__name__
        if "Http" in name or "Repository" in name or "Gated" in name or "Offline" in name or "Connection" in name:
            raise ModelUnavailable(model_id, "FLUX Fill generator", "--model", exc) from None
        raise
    pipe.set_progress_bar_config(disable=True)
    if options.quantize == "fp8":
        # fp8 storage, bf16/fp32 compute: halves the transformer's memory on any device.
        pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    if options.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif options.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)  # bitsandbytes-quantized parts are already placed; diffusers leaves them
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    if options.compile:
        pipe.transformer.compile_repeated_blocks(fullgraph=True)
    return pipe, device, dtype


@dataclass
class FluxHandle:
    job: FillJob
    state: SamplerState

    @property
    def step(self) -> int:
        return self.state.step


class FluxFillBackend:
    """FLUX.1-Fill-dev through the step-wise sampler; text encoded once per distinct prompt."""

    name = "flux-fill"

    def __init__(self, pipe: Any, model_id: str, options: MachineOptions, device: torch.device, dtype: torch.dtype) -> None:
        self.pipe = pipe
        self.model_id = model_id
        self.options = options
        self.device = device
        self.dtype = dtype
        self.sampler = FluxFillSampler(pipe)
        self._encodings: dict[str, PromptEncoding] = {}
        self.on_step: Any = None  # progress callback, set by the run

    @classmethod
    def load(cls, model_id: str, options: MachineOptions | None = None) -> "FluxFillBackend":
        options = options or MachineOptions()
        pipe, device, dtype = load_flux_fill(model_id, options)
        return cls(pipe, model_id, options, device, dtype)

    @property
    def nfe(self) -> int:
        return self.sampler.transformer_calls

    @property
    def text_encoder_calls(self) -> int:
        return self.sampler.text_encoder_calls

    def encode_texts(self, prompts: list[str]) -> None:
        for prompt in dict.fromkeys(prompts):
            if prompt not in self._encodings:
                self._encodings[prompt] = self.sampler.encode_prompt(prompt)

    def release_text_encoders(self) -> None:
        """Move T5 and CLIP-L off the GPU (about 9.7 GB in bf16) once their work is done."""
        if self.options.offload != "none" or self.device.type != "cuda":
            return  # offload hooks already manage them; on the CPU there is nothing to free
        for name in ("text_encoder", "text_encoder_2"):
            module = getattr(self.pipe, name, None)
            if module is not None:
                module.to("cpu")
        torch.cuda.empty_cache()

    def _encoding(self, prompt: str) -> PromptEncoding:
        if prompt not in self._encodings:
            self.encode_texts([prompt])
        return self._encodings[prompt]

    def start(self, job: FillJob) -> FluxHandle:
        state = self.sampler.start(
            job.canvas, job.mask, self._encoding(job.prompt), job.seed, job.steps, job.guidance, job.spec
        )
        return FluxHandle(job, state)

    def advance(self, handle: FluxHandle, steps: int) -> None:
        self.sampler.advance(handle.state, steps, on_step=self.on_step)

    def preview(self, handle: FluxHandle) -> Image.Image:
        return self.sampler.preview(handle.state)

    def finish(self, handle: FluxHandle) -> Image.Image:
        return self.sampler.finish(handle.state, on_step=self.on_step)

    def stats(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "offload": self.options.offload,
            "quantize": self.options.quantize,
            "vae_tiling": self.options.vae_tiling,
            "compile": self.options.compile,
        }
