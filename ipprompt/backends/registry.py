"""The one place that knows which generators exist and what each one is.

Everything that used to ask ``backend == "preview"`` asks the backend's ``BackendSpec`` instead:
does it run a diffusion model (NFE, steps, previews, a model to load and download), does it need a
GPU to be worth running. Adding a backend is its own module plus one ``register_backend`` call;
a third-party package adds one through the ``ipprompt.backends`` entry point group, as ``llm``
plugins add models: the entry point names a function that takes ``register_backend`` and calls it.

    [project.entry-points."ipprompt.backends"]
    mybackend = "my_package.ipprompt_plugin:register"

    def register(register_backend):
        register_backend(BackendSpec(name="mine", load=load_mine, denoises=True, summary="..."))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ipprompt.errors import IppromptError

if TYPE_CHECKING:
    from ipprompt.backends.base import Backend
    from ipprompt.pipeline.settings import RunSettings

Note = Callable[[str], None]
ENTRY_POINT_GROUP = "ipprompt.backends"


@dataclass(frozen=True)
class BackendSpec:
    """What the rest of ipprompt needs to know about a generator, without loading it."""

    name: str
    load: Callable[["RunSettings", Note], "Backend"]  # called after check_inputs passed
    denoises: bool  # a diffusion model: counts NFE, has steps and previews, needs its weights
    summary: str = ""
    dtype_on_gpu: str | None = "bfloat16"  # the compute dtype it uses on a CUDA GPU (None: no model)


_REGISTRY: dict[str, BackendSpec] = {}
_plugins_loaded = False


def register_backend(spec: BackendSpec) -> None:
    """Make a backend available under ``spec.name`` (a later registration of a name replaces it)."""
    _REGISTRY[spec.name] = spec


def _load_flux_fill(settings: "RunSettings", note: Note) -> "Backend":
    from pathlib import Path

    from ipprompt.backends.factory import resolve_device
    from ipprompt.backends.flux_fill import FluxFillBackend

    if resolve_device(settings.device).type == "cpu" and not Path(settings.model).expanduser().is_dir():
        note(
            "warning: no CUDA GPU: FLUX Fill runs on the CPU, which takes hours per panel for the "
            "full-size model. Use --backend preview to plan, or --device to choose."
        )
    return FluxFillBackend.load(settings.model, settings.machine, loras=settings.lora_specs)


def _load_preview(settings: "RunSettings", note: Note) -> "Backend":
    from ipprompt.backends.preview import PreviewBackend

    return PreviewBackend()


register_backend(BackendSpec("flux-fill", _load_flux_fill, denoises=True, summary="FLUX.1-Fill-dev (diffusers)"))
register_backend(BackendSpec("preview", _load_preview, denoises=False, summary="no model: composites of the references", dtype_on_gpu=None))


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()(register_backend)
        except Exception as exc:  # a broken plugin must not break the tool: say which one
            import warnings

            warnings.warn(f"ipprompt backend plugin {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)


def backend_names() -> list[str]:
    """Every registered backend's name, built-in ones first."""
    _load_plugins()
    return list(_REGISTRY)


def backend_spec(name: str) -> BackendSpec:
    """The registered backend called ``name``; an unknown name is a user error listing the known ones."""
    _load_plugins()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise IppromptError(f"Unknown backend {name!r}.", f"Known backends: {', '.join(_REGISTRY)}.")
    return spec


def runs_no_model(name: str | None) -> bool:
    """True for a registered backend that makes no images of its own (the preview backend's
    composites); False for a generator, and for a name no installed backend has (an old run)."""
    if name is None:
        return False
    _load_plugins()
    spec = _REGISTRY.get(name)
    return spec is not None and not spec.denoises
