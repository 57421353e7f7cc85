"""LoRAs for the generator: ``ID_OR_PATH[:SCALE]`` specs, checked early, loaded and fused once.

Two uses: ``--fast`` loads a few-step LoRA distilled from FLUX.1-dev (FLUX.1-Turbo-Alpha by
default) into FLUX.1-Fill-dev, the recipe diffusers documents for Fill since its PR #10259 (which
widens the LoRA's ``x_embedder`` to Fill's wider input); ``--lora`` loads users' own style LoRAs.
Both go through diffusers' real ``load_lora_weights``. The LoRAs are fused into the transformer's
weights and the adapters unloaded, so a step costs what it costs without LoRAs, and quantization,
offload and compile see plain weights.

A spec's scale defaults to 1.0. A LoRA changes pixels, so each spec (and, for a local file, its
content hash) joins the panel key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ipprompt.errors import IppromptError


@dataclass(frozen=True)
class LoraSpec:
    source: str  # hub id, local folder or local .safetensors file
    scale: float = 1.0

    @property
    def local(self) -> Path | None:
        """The local file or folder, when the source looks like a path (else a hub id)."""
        path = Path(self.source).expanduser()
        looks_local = path.is_absolute() or self.source.startswith((".", "~")) or path.suffix == ".safetensors" or path.exists()
        return path if looks_local else None


def parse_lora(text: str) -> LoraSpec:
    """``owner/name``, ``path/to/lora.safetensors`` or either with ``:SCALE`` (e.g. ``:0.8``)."""
    text = text.strip()
    if not text:
        raise ValueError("a LoRA spec is empty; write ID_OR_PATH or ID_OR_PATH:SCALE")
    source, scale = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head and "/" not in tail and "\\" not in tail:
        try:
            scale = float(tail)
        except ValueError:
            raise ValueError(f"LoRA {text!r}: the scale after ':' must be a number, e.g. {head}:0.8") from None
        source = head
    if not source.strip() or source.startswith(":"):
        raise ValueError(f"LoRA {text!r} names no LoRA before the scale; write ID_OR_PATH:SCALE, e.g. owner/name:0.8")
    if not -10.0 <= scale <= 10.0:
        raise ValueError(f"LoRA {text!r}: scale {scale} is outside -10..10")
    return LoraSpec(source, scale)


@lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def lora_fingerprint(text: str) -> dict[str, Any]:
    """What of a LoRA decides pixels: its source and scale, and a local file's content."""
    spec = parse_lora(text)
    out: dict[str, Any] = {"source": spec.source, "scale": spec.scale}
    local = spec.local
    if local is not None:
        files = [local] if local.is_file() else sorted(local.glob("*.safetensors")) if local.is_dir() else []
        out["sha256"] = [_file_sha256(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return out


def lora_problems(specs: list[str]) -> list[str]:
    """Reasons the LoRAs cannot load, found without loading anything (missing local files)."""
    problems = []
    for text in specs:
        try:
            spec = parse_lora(text)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        local = spec.local
        if local is None:
            continue  # a hub id: found (or not) when it loads
        if not local.exists():
            problems.append(f"LoRA not found: {local} (give a .safetensors file, a folder holding one, or a hub id)")
        elif local.is_dir() and not any(local.glob("*.safetensors")):
            problems.append(f"LoRA folder {local} holds no .safetensors file")
    return problems


def _load_one(pipe: Any, spec: LoraSpec, name: str) -> None:
    local = spec.local
    kwargs: dict[str, Any] = {"adapter_name": name}
    if local is not None and local.is_file():
        source = str(local.parent)
        kwargs["weight_name"] = local.name
    elif local is not None:
        source = str(local)
        files = sorted(local.glob("*.safetensors"))
        if len(files) == 1:
            kwargs["weight_name"] = files[0].name
    else:
        source = spec.source
    try:
        pipe.load_lora_weights(source, **kwargs)
    except ImportError as exc:
        raise IppromptError(f"Loading LoRA {spec.source!r} needs the peft package ({exc}).", "pip install peft") from None
    except Exception as exc:  # hub, file and shape errors come as many classes
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise IppromptError(
            f"Cannot load LoRA {spec.source!r}: {first}",
            "Check the id or path (a .safetensors LoRA for FLUX); hub LoRAs must be downloaded first "
            "(`hf download ID`) when this machine is offline.",
        ) from None


def apply_loras(pipe: Any, specs: list[str]) -> list[dict[str, Any]]:
    """Load every LoRA, fuse them at their scales into the transformer, unload the adapters.

    Returns what was applied, for the backend's stats (the manifest records it).
    """
    if not specs:
        return []
    parsed = [parse_lora(s) for s in specs]
    names = [f"lora{i}" for i in range(len(parsed))]
    for spec, name in zip(parsed, names):
        _load_one(pipe, spec, name)
    pipe.set_adapters(names, adapter_weights=[s.scale for s in parsed])
    pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
    pipe.unload_lora_weights()  # keeps the fused weights, drops the adapter layers
    return [{"source": s.source, "scale": s.scale} for s in parsed]
