"""The calibration report: a table and a plot of agreement against σ, as HTML and as JSON.

The plot is an inline SVG drawn here (no script, no library): one line each for Spearman, top-1
and top-2 against σ, high noise on the left, with the 0.9 trust line and the default rungs marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jinja2 import Environment

from ipprompt.dvp.rungs import BUDGETS, TRUST

if TYPE_CHECKING:
    from ipprompt.dvp.profiles import AgreementRow
    from ipprompt.pipeline.calibrate import CalibrationResult

WIDTH, HEIGHT, PAD = 640, 300, 44
SERIES = (("spearman", "#1f5fbf"), ("top1", "#c0392b"), ("top2", "#27ae60"))


def report_json(result: "CalibrationResult") -> dict[str, Any]:
    """Everything the report shows, per canvas: the key, the profile file and each σ's agreement."""
    return {
        "story": result.story,
        "seconds": result.seconds,
        "nfe": result.nfe,
        "settings": result.settings,
        "notes": result.notes,
        "profiles": [
            {"path": str(p.path), "key": p.key, "rows": [r.to_json() for r in p.rows]} for p in result.profiles
        ],
        "panels": [
            {"number": t.number, "canvas": list(t.canvas), "final": t.finals, "previews": {str(k): v for k, v in t.previews.items()}}
            for t in result.traces
        ],
    }


def _x(sigma: float, lo: float, hi: float) -> float:
    return PAD + (hi - sigma) / max(hi - lo, 1e-9) * (WIDTH - 2 * PAD)


def _y(value: float) -> float:
    return HEIGHT - PAD - (value + 1) / 2 * (HEIGHT - 2 * PAD)  # -1 .. 1 on the axis


def agreement_svg(rows: Sequence["AgreementRow"]) -> str:
    """An SVG line plot of agreement against σ (values are numbers we computed: no user text)."""
    if not rows:
        return ""
    lo, hi = min(r.sigma for r in rows), max(r.sigma for r in rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="agreement against noise level">']
    parts.append(f'<rect x="{PAD}" y="{PAD}" width="{WIDTH - 2 * PAD}" height="{HEIGHT - 2 * PAD}" fill="#fafafa" stroke="#999"/>')
    for v in (-1.0, 0.0, 0.5, 1.0):
        parts.append(f'<text x="{PAD - 6}" y="{_y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:g}</text>')
    parts.append(f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{_y(TRUST):.1f}" y2="{_y(TRUST):.1f}" stroke="#888" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{WIDTH - PAD + 4}" y="{_y(TRUST) + 4:.1f}" font-size="11">{TRUST:g}</text>')
    for sigma in sorted(set(BUDGETS["balanced"].rungs)):
        if lo <= sigma <= hi:
            x = _x(sigma, lo, hi)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD}" y2="{HEIGHT - PAD}" stroke="#bbb" stroke-dasharray="2 3"/>')
    for r in rows:
        parts.append(f'<text x="{_x(r.sigma, lo, hi):.1f}" y="{HEIGHT - PAD + 16}" font-size="10" text-anchor="middle">{r.sigma:.2f}</text>')
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" font-size="12" text-anchor="middle">σ of the judged preview (noisier on the left)</text>')
    for i, (name, colour) in enumerate(SERIES):
        points = [(r.sigma, getattr(r, name)) for r in rows if getattr(r, name) is not None]
        if points:
            path = " ".join(f"{_x(s, lo, hi):.1f},{_y(v):.1f}" for s, v in points)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
            for s, v in points:
                parts.append(f'<circle cx="{_x(s, lo, hi):.1f}" cy="{_y(v):.1f}" r="3" fill="{colour}"/>')
        parts.append(f'<text x="{PAD + 10 + i * 90}" y="{PAD - 12}" font-size="12" fill="{colour}">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Calibration: {{ story }}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#eee}.trusted{background:#e8f6e8}</style></head>
<body><h1>Calibration: {{ story }}</h1>
<p>Every first-round arrangement of {{ panels }} panel(s) run to the last step ({{ nfe }} NFE, {{ seconds }} s).
For each σ: <b>spearman</b>, the rank correlation between preview and final scores (mean over panels); <b>top1</b>, the
share of panels whose best preview is the best finished candidate; <b>top2</b>, the share whose best finished
candidate is among the two best previews; <b>regret</b>, the final score lost by finishing the best preview.
Rows with Spearman &ge; {{ trust }} are shaded: a run may judge there.</p>
{% for p in profiles %}
<h2>Canvas {{ p.key.canvas[0] }}x{{ p.key.canvas[1] }}, {{ p.key.steps }} steps</h2>
<p>Model {{ p.key.model }}{% if p.key.loras %}, LoRAs {{ p.key.loras | map(attribute="source") | join(", ") }}{% endif %}.
Profile: <code>{{ p.path }}</code></p>
{{ p.svg | safe }}
<table><tr><th>σ</th><th>step</th><th>spearman</th><th>top1</th><th>top2</th><th>regret</th><th>panels</th></tr>
{% for r in p.rows %}<tr{% if r.spearman is not none and r.spearman >= trust %} class="trusted"{% endif %}>
<td>{{ "%.3f" | format(r.sigma) }}</td><td>{{ r.step }}</td>
<td>{{ "-" if r.spearman is none else "%.3f" | format(r.spearman) }}</td><td>{{ "-" if r.top1 is none else "%.2f" | format(r.top1) }}</td>
<td>{{ "-" if r.top2 is none else "%.2f" | format(r.top2) }}</td><td>{{ "-" if r.regret is none else "%.4f" | format(r.regret) }}</td>
<td>{{ r.panels }}</td></tr>{% endfor %}</table>
{% endfor %}
</body></html>
"""


def report_html(result: "CalibrationResult") -> str:
    env = Environment(autoescape=True)
    profiles = [{"key": p.key, "path": str(p.path), "rows": p.rows, "svg": agreement_svg(p.rows)} for p in result.profiles]
    return env.from_string(_TEMPLATE).render(
        story=result.story, panels=len(result.traces), nfe=result.nfe, seconds=result.seconds, trust=TRUST, profiles=profiles,
    )
