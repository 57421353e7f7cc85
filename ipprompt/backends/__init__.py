"""Generators behind one interface: ``flux-fill`` (FLUX.1-Fill-dev) and ``preview`` (no model)."""

from ipprompt.backends.base import Backend, FillJob, fill

__all__ = ["Backend", "FillJob", "fill"]
