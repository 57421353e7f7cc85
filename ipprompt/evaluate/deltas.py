"""How a difference between two evaluated runs is written, in the terminal and on the eval page.

A raw float ("+492.736") hides its unit and claims a precision no measurement has. Costs get their
unit and, against a non-zero baseline, a percentage (what a reader compares); quality scores are
cosine similarities whose differences read best as plain numbers to three decimals.
"""

from __future__ import annotations

from typing import Any

GiB = 2**30
MINUS = "−"  # a real minus sign, as wide as the plus


def _sign(value: float) -> str:
    return "+" if value > 0 else MINUS if value < 0 else "±"


def _percent(delta: float, base: Any) -> str:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or base == 0:
        return ""
    pct = 100.0 * delta / abs(float(base))
    digits = 0 if abs(pct) >= 10 else 1
    return f" ({_sign(pct)}{abs(pct):.{digits}f}%)"


def format_delta(delta: Any, base: Any, metric: str) -> str:
    """``delta`` against the baseline value ``base`` for ``metric``; "—" when there is none.

    seconds: ``+492.7 s (+38%)``; NFE: ``+12 (+11%)``; peak GPU memory: ``+1.2 GiB (+5.0%)``;
    scores: ``+0.012``.
    """
    if delta is None or isinstance(delta, bool) or not isinstance(delta, (int, float)):
        return "—"
    d = float(delta)
    sign = _sign(d)
    if metric == "seconds":
        return f"{sign}{abs(d):.1f} s{_percent(d, base)}"
    if metric == "nfe":
        return f"{sign}{abs(round(d))}{_percent(d, base)}"
    if metric == "peak_gpu_bytes":
        return f"{sign}{abs(d) / GiB:.1f} GiB{_percent(d, base)}"
    return f"{sign}{abs(d):.3f}"
