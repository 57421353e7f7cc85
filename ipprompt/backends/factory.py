"""The one place backends and the scoring encoder are created: checked first, loaded second.

Loading FLUX Fill takes minutes and tens of GB; an option combination that cannot work must be
refused before that, with every problem named at once. ``check_inputs`` holds every such rule, so
the CLI, ``run_story``, each process of a shared run folder and each Ray worker refuse the same
things in the same words. ``create_backend`` then only loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pydantic import BaseModel, ConfigDict

from ipprompt.errors import IppromptError

if TYPE_CHECKING:
    from ipprompt.backends.base import Backend
    from ipprompt.pipeline.settings import RunSettings
    from ipprompt.encoders.clip import ClipEncoder

OFFLOAD_MODES = ("none", "model", "sequential")
QUANTIZE_MODES = ("none", "fp8", "nf4")
ATTENTION_BACKENDS = ("native", "flash", "_flash_3", "sage")
# fp8 matrix units (Ada, Hopper, Blackwell): compute capability 8.9 and up.
FP8_COMPUTE_CAPABILITY = (8, 9)

Note = Callable[[str], None]


class MachineOptions(BaseModel):
    """How to run, not what to make: these never change a panel's pixels (except quantize and
    VAE tiling, which join the panel key). ``RunSettings`` inherits these fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = "auto"
    offload: str = "none"
    quantize: str = "none"
    vae_tiling: bool = False
    compile: bool = False
    attention: str = "native"


def resolve_device(requested: str) -> Any:
    """``auto`` means the first CUDA GPU when there is one, else the CPU."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise IppromptError(f"--device {requested!r} is not a device.", "Use auto, cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda"):
        raise IppromptError(f"--device {requested!r}: only cpu and cuda devices are supported.", "Use auto, cpu, cuda or cuda:N.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise IppromptError(f"--device {requested!r} asked for, but PyTorch sees no CUDA GPU.", "Run `ipprompt doctor`, or use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise IppromptError(
                f"--device {requested!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s).",
                f"Use cuda:0 to cuda:{torch.cuda.device_count() - 1}.",
            )
    return device


def fp8_kind(device: Any) -> tuple[str, str]:
    """Which fp8 ``--quantize fp8`` gives on ``device``: ``("torchao", why)`` or ``("layerwise", why)``.

    torchao's float8 dynamic activation + weight quantization multiplies in fp8 on the matrix
    units of compute capability >= 8.9 (a real speed-up with --compile). Elsewhere fp8 is only a
    storage format: weights are kept in fp8 and cast to bf16 layer by layer (half the memory, no
    speed-up), which works on any GPU and on the CPU.
    """
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return "layerwise", "no CUDA GPU: fp8 weight storage, computing in the model's dtype"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < FP8_COMPUTE_CAPABILITY:
        return "layerwise", f"compute capability {major}.{minor} < 8.9 has no fp8 matmul: fp8 weight storage, bf16 compute"
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "layerwise", f"compute capability {major}.{minor} has fp8 matmul, but torchao is not installed (pip install torchao): fp8 storage, bf16 compute"
    return "torchao", f"compute capability {major}.{minor}: torchao float8 dynamic activation + weight (fp8 matmul)"


def _attention_problem(attention: str, cuda: bool) -> str | None:
    """Why an attention kernel cannot be used here (None when it can)."""
    if attention == "native":
        return None
    if not cuda:
        return f"--attention {attention} needs a CUDA GPU; on the CPU use --attention native"
    try:
        from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

        _check_attention_backend_requirements(AttentionBackendName(attention))
    except (RuntimeError, ValueError, ImportError) as exc:
        return f"--attention {attention} cannot be used: {str(exc).splitlines()[0]}"
    return None


def _cache_problems(cache: str, machine: MachineOptions) -> list[str]:
    """What ``cache`` cannot combine with (it combines with --compile, fp8 and --offload model)."""
    from ipprompt.story.schema import parse_cache

    try:
        name, _ = parse_cache(cache)
    except ValueError as exc:
        return [f"--cache: {exc}"]
    if name != "none" and machine.offload == "sequential":
        # Both wrap the transformer's blocks in hooks; the pair was never run, so it is refused
        # rather than left to fail (or to run slower than without the cache) an hour into a run.
        return [f"--cache {cache} with --offload sequential is not supported (the cache's block hooks and the per-layer "
                "offload hooks would wrap the same blocks); use --offload model, or drop --cache"]
    return []


def _problems(backend: str, machine: MachineOptions, loras: Sequence[str] = (), cache: str = "none") -> list[str]:
    """Every reason the combination cannot run on this machine (empty when it can)."""
    problems: list[str] = _cache_problems(cache, machine)
    for name, value, allowed in (
        ("offload", machine.offload, OFFLOAD_MODES),
        ("quantize", machine.quantize, QUANTIZE_MODES),
        ("attention", machine.attention, ATTENTION_BACKENDS),
    ):
        if value not in allowed:
            problems.append(f"--{name} {value!r} is not one of: {', '.join(allowed)}")
    from ipprompt.backends.registry import backend_spec

    if not backend_spec(backend).denoises or problems:
        return problems  # no model runs: no device, memory or LoRA option applies
    try:
        device = resolve_device(machine.device)
    except IppromptError as exc:
        return [f"{exc.message} {exc.hint}" if exc.hint else exc.message]
    cuda = device.type == "cuda"
    if machine.offload == "sequential" and not cuda:
        problems.append("--offload sequential needs a CUDA GPU (it streams each layer to the GPU); on the CPU use --offload none")
    if machine.compile and machine.offload == "sequential":
        problems.append(
            "--compile with --offload sequential: every layer is streamed from the CPU at every step, so compiling "
            "cannot speed it up (and breaks on the offload hooks); use --offload model with --compile, or drop --compile"
        )
    if machine.compile and machine.quantize == "fp8" and fp8_kind(device)[0] == "layerwise":
        problems.append(
            "--compile with --quantize fp8 needs fp8 matmul (a GPU of compute capability 8.9 or newer, with torchao): "
            f"here fp8 is layerwise weight storage ({fp8_kind(device)[1]}), whose per-layer casts cannot be compiled; "
            "drop --compile, or use --quantize none with --compile"
        )
    if machine.compile and machine.quantize == "nf4":
        problems.append("--compile with --quantize nf4: bitsandbytes 4-bit layers do not compile; drop --compile"
                        + (" or use --quantize fp8 (torchao float8 compiles on this GPU)" if fp8_kind(device)[0] == "torchao" else ""))
    attention = _attention_problem(machine.attention, cuda)
    if attention:
        problems.append(attention)
    from ipprompt.backends.lora import lora_problems

    problems.extend(lora_problems(list(loras)))
    if machine.quantize == "nf4":
        if not cuda:
            problems.append("--quantize nf4 needs a CUDA GPU (bitsandbytes 4-bit kernels); use --quantize fp8 on this machine")
        else:
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                problems.append("--quantize nf4 needs the bitsandbytes package: pip install bitsandbytes")
    return problems


def check_inputs(backend: str, machine: MachineOptions, loras: Sequence[str] = (), cache: str = "none") -> None:
    """Refuse impossible option combinations before any model loads (all problems at once)."""
    problems = _problems(backend, machine, loras, cache)
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} problems with the options:\n" + "\n".join(f"  - {p}" for p in problems)
        raise IppromptError(head, "`ipprompt doctor` shows what this machine supports and suggests a memory mode.")


def planned_dtype(backend: str, machine: MachineOptions) -> str | None:
    """The dtype the generator will compute in, known before it loads (it decides pixels)."""
    from ipprompt.backends.registry import backend_spec

    spec = backend_spec(backend)
    if not spec.denoises:
        return None
    return spec.dtype_on_gpu if resolve_device(machine.device).type == "cuda" else "float32"


def create_backend(settings: "RunSettings", note: Note | None = None) -> "Backend":
    """Load the generator the settings name, placed and configured as the machine options say."""
    from ipprompt.backends.registry import backend_spec

    check_inputs(settings.backend, settings.machine, settings.lora_specs, settings.cache)
    return backend_spec(settings.backend).load(settings, note or (lambda _text: None))


def model_available_locally(model_id: str) -> bool:
    """True when a model is a local folder or already in the Hugging Face cache (no network)."""
    if Path(model_id).expanduser().is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        # A diffusers pipeline has model_index.json at its root, a transformers model config.json.
        return any(isinstance(try_to_load_from_cache(model_id, name), str) for name in ("model_index.json", "config.json"))
    except Exception:
        return False


def create_encoder(settings: "RunSettings", note: Note, device: str | None = None) -> "ClipEncoder | None":
    """The CLIP encoder for retrieval and scoring, or None (lexical retrieval), saying why.

    It runs on the run's ``--device`` (``cuda:1`` puts CLIP beside the generator, not on GPU 0).
    The preview backend never downloads: it uses CLIP only when the model is already local.
    """
    from ipprompt.backends.registry import backend_spec
    from ipprompt.encoders.clip import load_encoder_or_none

    device = device or settings.device
    denoises = backend_spec(settings.backend).denoises
    if not denoises and not model_available_locally(settings.encoder):
        note(
            f"Preview backend: CLIP model '{settings.encoder}' is not on this machine; "
            "matching references on captions and tags instead (no download)."
        )
        return None
    encoder = load_encoder_or_none(settings.encoder, device=None if device == "auto" else device, warn=note)
    if encoder is None and denoises:
        note(
            "Without CLIP, candidates are ranked by their references' retrieval scores, not by "
            "what was generated; pruned search then cannot judge previews."
        )
    return encoder
