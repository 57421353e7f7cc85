"""What the print pass refuses before anything runs (called by the run's preflight, ``--dry-run`` too).

A missing upscaler file (or spandrel) must fail in the first second, not after the search has
spent an hour of GPU time on the panels. (Any strength above 0 runs at least one step: diffusers
truncates the steps it skips, so there is no strength to refuse here.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipprompt.errors import IppromptError
from ipprompt.upscale.pass_result import PassSettings

if TYPE_CHECKING:
    from ipprompt.story.schema import Generation


def check_pass(settings: "Generation") -> None:
    """Refuse pass settings that cannot run here (the schema already checked each value)."""
    p = PassSettings.of(settings)
    if not p.enabled:
        return
    if p.upscaler is not None:
        from ipprompt.upscale.upscaler import INSTALL_HINT, check_upscaler_path

        check_upscaler_path(p.upscaler)
        try:
            import spandrel  # noqa: F401
        except ImportError:
            raise IppromptError("--upscaler needs spandrel, which is not installed.", INSTALL_HINT) from None
