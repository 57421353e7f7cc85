"""Generators behind one interface (``base.Backend``), registered in ``registry``: ``flux-fill``
(FLUX.1-Fill-dev) and ``preview`` (no model). Nothing is imported here, so that asking the
registry about a backend (the storyboard does) costs no Pillow or torch import."""
