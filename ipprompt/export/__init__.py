"""Export a run as a comic to share: a PDF, a CBZ for comic readers, or a folder of PNG pages.

Modules: ``exporter`` (``export_run``, what the CLI calls), ``pages`` (title and comic pages),
``lettering`` (bubbles and narration boxes), ``text`` (the font, wrapping and fitting),
``formats`` (PDF, CBZ, PNG writers) and ``sizes``; the page-layout rule is
``ipprompt.storyboard.pagelayout``, shared with the storyboard.

``export_run`` is imported on first use, so ``ipprompt --help`` does not pay for Pillow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExportResult", "export_run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ipprompt.export import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'ipprompt.export' has no attribute {name!r}")
