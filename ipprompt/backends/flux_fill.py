"""The FLUX.1-Fill-dev backend: loading with memory and speed options, and the step-wise protocol.

Loading is where users with 16-24 GB cards succeed or fail, so every lever lives here: LoRAs
(fused), model or sequential CPU offload, fp8 (torchao float8 compute on GPUs with fp8 matmul,
else layerwise fp8 storage with bf16 compute, which works on any GPU and on CPU), nf4 through
bitsandbytes (CUDA only), VAE tiling, the attention kernel, and ``torch.compile`` of the repeated
transformer blocks. ``cache = "fbcache[:T]"`` adds diffusers' First Block Cache (a hook on the
transformer that skips the remaining blocks when the first block's output barely changed).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ipprompt.backends.base import FillJob, StepCallback
from ipprompt.backends.flux_sampler import FluxFillSampler, PromptEncoding, SamplerState
from ipprompt.backends.factory import MachineOptions, check_inputs, fp8_kind, resolve_device
from ipprompt.backends.lora import apply_loras
from ipprompt.errors import ModelUnavailable

def _quantization_config(quantize: str, fp8: str, loras: bool) -> Any:
    """bitsandbytes nf4, or torchao float8 applied while loading (when no LoRA must be fused first)."""
    from diffusers.quantizers import PipelineQuantizationConfig

    if quantize == "nf4":
        return PipelineQuantizationConfig(
            quant_backend="bitsandbytes_4bit",
            quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": torch.bfloat16},
            components_to_quantize=["transformer", "text_encoder_2"],
        )
    if quantize == "fp8" and fp8 == "torchao" and not loras:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig

        return PipelineQuantizationConfig(
            quant_backend="torchao",
            quant_kwargs={"quant_type": Float8DynamicActivationFloat8WeightConfig()},
            components_to_quantize=["transformer"],
        )
    return None


def _has_hooks(module: Any) -> bool:
    """True when diffusers or accelerate hooks wrap layers inside the transformer's blocks."""
    return any(getattr(m, "_diffusers_hook", None) is not None or hasattr(m, "_hf_hook") for m in module.modules())


def _blocks(transformer: Any, class_name: str) -> list[Any]:
    return [m for m in transformer.modules() if m.__class__.__name__ == class_name]


# What torch.compile compiles with; tests set "aot_eager" (same graph capture, no C++ build).
COMPILE_BACKEND = "inductor"


def _compile(transformer: Any, options: MachineOptions) -> str:
    """Regional compile: each repeated block once. ``fullgraph`` only where no hook sits inside
    the blocks (model offload hooks sit on the whole transformer, outside them)."""
    fullgraph = not any(_has_hooks(block) for name in transformer._repeated_blocks for block in _blocks(transformer, name))
    transformer.compile_repeated_blocks(fullgraph=fullgraph, backend=COMPILE_BACKEND)
    return "regional, fullgraph" if fullgraph else "regional"


def _enable_cache(transformer: Any, cache: str) -> str | None:
    """Put the cache hook on the transformer before compiling it (compile sees the hooks and
    compiles without ``fullgraph``). Returns what the manifest records."""
    from ipprompt.story.schema import parse_cache

    name, threshold = parse_cache(cache)
    if name == "none":
        return None
    from diffusers.hooks import FirstBlockCacheConfig

    transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    return f"fbcache threshold {threshold}"


def load_flux_fill(
    model_id: str, options: MachineOptions, loras: list[str] | None = None, cache: str = "none"
) -> tuple[Any, torch.device, torch.dtype, dict[str, Any]]:
    """Load FluxFillPipeline from a hub id or a folder, placed on the device as the options say.

    Order matters: LoRAs are fused into full-precision weights first, then fp8 (torchao or
    layerwise storage), then placement (offload hooks), attention kernel and compile last, so that
    each step sees the weights the next one expects. The options were checked by
    ``check_inputs`` (called again here, so direct library callers get the same refusals).
    Returns the pipeline, device, dtype and what was applied (for the manifest).
    """
    from diffusers import FluxFillPipeline

    loras = list(loras or [])
    check_inputs("flux-fill", options, loras, cache)
    device = resolve_device(options.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    fp8 = fp8_kind(device)[0] if options.quantize == "fp8" else None
    quant = _quantization_config(options.quantize, fp8 or "", bool(loras))
    local = Path(model_id).expanduser()
    source = str(local) if local.is_dir() else model_id
    kwargs: dict[str, Any] = {"torch_dtype": dtype}
    if quant is not None:
        kwargs["quantization_config"] = quant
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # our own progress bars say what is happening
    from ipprompt.encoders.clip import no_transformers_progress_bars

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
    applied: dict[str, Any] = {"loras": apply_loras(pipe, loras)}
    if options.quantize == "fp8":
        if fp8 == "torchao":
            if loras:  # fused LoRAs first, then quantize the fused weights
                from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

                quantize_(pipe.transformer, Float8DynamicActivationFloat8WeightConfig(), device=device)
            applied["fp8"] = "torchao float8 dynamic activation + weight"
        else:
            # fp8 storage, bf16/fp32 compute: halves the transformer's memory on any device.
            pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
            applied["fp8"] = "layerwise fp8 storage"
    if options.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif options.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)  # bitsandbytes-quantized parts are already placed; diffusers leaves them
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    if options.attention != "native":
        pipe.transformer.set_attention_backend(options.attention)
    applied["cache"] = _enable_cache(pipe.transformer, cache)
    if options.compile:
        applied["compiled"] = _compile(pipe.transformer, options)
    return pipe, device, dtype, applied


@dataclass
class FluxHandle:
    job: FillJob
    state: SamplerState
    on_step: StepCallback | None = None  # the caller's progress callback for this candidate

    @property
    def step(self) -> int:
        return self.state.step


class FluxFillBackend:
    """FLUX.1-Fill-dev through the step-wise sampler; text encoded once per distinct prompt."""

    name = "flux-fill"

    def __init__(
        self, pipe: Any, model_id: str, options: MachineOptions, device: torch.device, dtype: torch.dtype, applied: dict[str, Any] | None = None
    ) -> None:
        self.pipe = pipe
        self.applied = applied or {}
        self.model_id = model_id
        self.options = options
        self.device = device
        self.dtype = dtype
        self.sampler = FluxFillSampler(pipe, cached=bool(self.applied.get("cache")))
        self._encodings: dict[str, PromptEncoding] = {}

    @classmethod
    def load(cls, model_id: str, options: MachineOptions | None = None, loras: list[str] | None = None, cache: str = "none") -> "FluxFillBackend":
        options = options or MachineOptions()
        pipe, device, dtype, applied = load_flux_fill(model_id, options, loras, cache)
        return cls(pipe, model_id, options, device, dtype, applied)

    @property
    def scheduler(self) -> Any:
        """The model's own scheduler: the search reads its rungs' σ from it."""
        return self.pipe.scheduler

    def release(self, handle: FluxHandle) -> None:
        """Forget a candidate that will not be advanced again (its cache state)."""
        self.sampler.release(handle.state)

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

    def start(self, job: FillJob, on_step: StepCallback | None = None) -> FluxHandle:
        state = self.sampler.start(
            job.canvas, job.mask, self._encoding(job.prompt), job.seed, job.steps, job.guidance, job.spec
        )
        return FluxHandle(job, state, on_step)

    def advance(self, handle: FluxHandle, steps: int) -> None:
        self.sampler.advance(handle.state, steps, on_step=handle.on_step)

    def preview(self, handle: FluxHandle) -> Image.Image:
        return self.sampler.preview(handle.state)

    def finish(self, handle: FluxHandle) -> Image.Image:
        return self.sampler.finish(handle.state, on_step=handle.on_step)

    def refine(
        self, image: Image.Image, prompt: str, strength: float, seed: int, steps: int, guidance: float, on_step: StepCallback | None = None
    ) -> Image.Image:
        """Re-detail ``image`` with FLUX Fill image-to-image: all-white mask, ``strength`` of the schedule.

        Goes through this backend's pipeline, so offload, fp8, VAE tiling, the attention kernel
        and compile apply as they do to panels. Each denoising step is one transformer
        evaluation, counted in ``nfe``.
        """
        return self.sampler.refine(image, self._encoding(prompt), strength, seed, steps, guidance, on_step=on_step)

    def stats(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "offload": self.options.offload,
            "quantize": self.options.quantize,
            "vae_tiling": self.options.vae_tiling,
            "compile": self.options.compile,
            "compiled": self.applied.get("compiled"),
            "fp8": self.applied.get("fp8"),
            "attention": self.options.attention,
            "loras": self.applied.get("loras", []),
            "cache": self.applied.get("cache"),
        }
