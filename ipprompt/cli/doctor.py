"""`ipprompt doctor`: what this machine can run, in one table."""

from __future__ import annotations

import os
import platform

import typer
from rich.markup import escape
from rich.table import Table

from ipprompt.cli.console import console
from ipprompt.story.loading import DEFAULT_ENCODER, DEFAULT_MODEL

GiB = 2**30


def suggest_memory_mode(free_bytes: int | None) -> str:
    """The lightest memory options that fit FLUX.1-Fill-dev at a 1536 px canvas.

    bf16 sizes: transformer 23.8 GB (peaks at ~24.1 GiB with activations), T5-XXL 9.5 GB, CLIP-L and
    VAE under 0.5 GB. fp8 storage halves the transformer, nf4 quarters it.
    """
    if free_bytes is None:
        return "no CUDA GPU: use --backend preview to plan (FLUX on a CPU takes hours per panel)"
    gib = free_bytes / GiB
    if gib >= 40:
        return "no options needed (everything fits on the GPU)"
    if gib >= 28:
        return "--offload model"
    if gib >= 16:
        return "--offload model --quantize fp8"
    if gib >= 10:
        return "--offload model --quantize nf4"
    return "--offload sequential (slow; the GPU is small for FLUX)"


def _in_cache(model_id: str) -> str:
    from ipprompt.errors import hf_cache_dir
    from ipprompt.backends.factory import model_available_locally

    if os.path.isdir(os.path.expanduser(model_id)):
        return "local folder"
    return f"yes ({hf_cache_dir()})" if model_available_locally(model_id) else f"no (cache: {hf_cache_dir()})"


def _token() -> str:
    if os.environ.get("HF_TOKEN"):
        return "yes (HF_TOKEN)"
    try:
        from huggingface_hub import get_token

        return "yes (hf auth login)" if get_token() else "no: run `hf auth login` for gated models (FLUX.1-Fill-dev)"
    except Exception:
        return "unknown"


def doctor(
    model: str = typer.Option(DEFAULT_MODEL, help="FLUX Fill model to look for."),
    encoder: str = typer.Option(DEFAULT_ENCODER, help="CLIP model to look for."),
) -> None:
    """Show torch and CUDA versions, GPUs and free memory, cached models, and a memory mode to use.

    Example: ipprompt doctor
    """
    import diffusers
    import torch
    import transformers

    import ipprompt

    table = Table(title="ipprompt doctor", show_header=True, title_justify="left")
    table.add_column("check", style="bold")
    table.add_column("result")
    table.add_row("ipprompt", ipprompt.__version__)
    table.add_row("python", platform.python_version())
    table.add_row("torch", escape(str(torch.__version__)))
    table.add_row("diffusers / transformers", escape(f"{diffusers.__version__} / {transformers.__version__}"))
    cuda = torch.cuda.is_available()
    if cuda:
        cuda_text = f"{torch.version.cuda} (available)"
    elif torch.version.cuda:
        cuda_text = f"torch built for CUDA {torch.version.cuda}, but no GPU is visible (driver? CUDA_VISIBLE_DEVICES?)"
    else:
        cuda_text = "CPU-only build of torch"
    table.add_row("CUDA", escape(cuda_text))
    best_free: int | None = None
    if cuda:
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            best_free = max(best_free or 0, free)
            name = torch.cuda.get_device_name(i)
            table.add_row(f"GPU {i}", escape(f"{name}: {free / GiB:.1f} GiB free of {total / GiB:.1f} GiB"))
    else:
        table.add_row("GPU", "none found")
    table.add_row("suggested memory mode", suggest_memory_mode(best_free))
    from ipprompt.backends.factory import ATTENTION_BACKENDS, _attention_problem, fp8_kind

    kind, why = fp8_kind(torch.device("cuda") if cuda else torch.device("cpu"))
    # the model's compute dtype is bf16 on a GPU and float32 on the CPU (backends/flux_fill.py)
    compute = "bf16" if cuda else "float32"
    if kind == "torchao":
        text = f"torchao float8 (fp8 matmul; fastest with --compile): {why}"
    elif cuda:
        text = f"layerwise fp8 storage, {compute} compute: {why}"
    else:
        text = f"layerwise fp8 storage, {compute} compute (no CUDA GPU; the CPU computes in float32)"
    table.add_row("--quantize fp8 here", escape(text))
    usable = [a for a in ATTENTION_BACKENDS if _attention_problem(a, cuda) is None]
    table.add_row("--attention here", escape(", ".join(usable)))
    # Model ids, paths and environment values are the user's text: escaped, so "[/]" prints as is.
    table.add_row(escape(f"model {model}"), escape(_in_cache(model)))
    table.add_row(escape(f"encoder {encoder}"), escape(_in_cache(encoder)))
    table.add_row("Hugging Face token", escape(_token()))
    table.add_row("HF_HUB_OFFLINE", escape(os.environ.get("HF_HUB_OFFLINE", "not set")))
    console.print(table)
