"""`ipprompt eval RUN [RUN ...]`: measure finished runs and compare settings side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ipprompt.cli.helptext import default
from ipprompt.cli.console import console, err_console, fail
from ipprompt.errors import IppromptError
from ipprompt.evaluate.results import DEFAULT_DINO, THEME_TOP_K

EVAL_HELP = f"""Measure finished run folders: text alignment, theme fidelity, consistency and cost.

Per panel: CLIP-T (image vs its description), theme fidelity (CLIP-I to the {THEME_TOP_K} most
similar theme images), character consistency (DINOv2 similarity to panels sharing a character)
and style consistency (CLIP-I to the other panels). No generator is loaded. Results are saved
as eval.json in each run folder and shown on its storyboard. With two or more runs of one
story, the first is the baseline and the others get deltas. See docs/eval.md.

Examples:

  ipprompt eval runs/lighthouse

  ipprompt eval runs/default runs/reference          # default vs --method reference

  ipprompt eval runs/default runs/fast --json > cmp.json

  ipprompt eval runs/a runs/b --html compare.html --encoder ./models/clip --dino ./models/dinov2
"""


def _fmt(value: Any, metric: str = "") -> str:
    if value is None or isinstance(value, bool):
        return "—"
    if metric == "peak_gpu_bytes":
        return f"{value / 2**30:.1f} GiB" if value else "—"
    if metric == "nfe":
        return str(int(value))
    if metric == "seconds":
        return f"{value:.1f}"
    return f"{value:.3f}"


def _fmt_delta(delta: Any, metric: str, higher_is_better: bool, base: Any = None) -> str:
    """A delta with its unit and, for costs, its share of the baseline (``evaluate.deltas``)."""
    from ipprompt.evaluate.deltas import format_delta

    text = format_delta(delta, base, metric)
    if delta is None or delta == 0:
        return text
    good = (delta > 0) == higher_is_better
    return f"[{'green' if good else 'red'}]{text}[/]"


def _labels(runs: list[dict[str, Any]]) -> list[str]:
    names = [Path(r["run"]).name or r["run"] for r in runs]
    if len(set(names)) < len(names):
        names = [r["run"] for r in runs]
    return [f"{chr(65 + i) if i < 26 else i + 1}: {n}" for i, n in enumerate(names)]


def _run_tables(run: dict[str, Any]) -> None:
    preview = " [yellow](preview: composites of references, not generated images)[/]" if run["preview"] else ""
    console.print(f"\n[bold]{escape(run['title'])}[/] — {escape(run['run'])}{preview}")
    s, cost = run["summary"], run["cost"]
    table = Table(show_header=True, title_justify="left")
    for column in ("panel", "characters", "CLIP-T", f"theme (top {run['theme_top_k']})", "character", "style", "NFE", "s"):
        table.add_column(column, justify="left" if column in ("panel", "characters") else "right")
    names = run["character_names"]
    for p in run["panels"]:
        table.add_row(
            str(p["number"]),
            escape(", ".join(names.get(c, c) for c in p["characters"])) or "—",
            _fmt(p["clip_t"]),
            _fmt(p["theme_fidelity"]),
            _fmt(p["character_consistency"]),
            _fmt(p["style_consistency"]),
            _fmt(p["nfe"], "nfe"),
            _fmt(p["seconds"], "seconds"),
        )
    table.add_row(
        "[bold]run[/]", "", _fmt(s["clip_t"]), _fmt(s["theme_fidelity"]), _fmt(s["character_consistency"]),
        _fmt(s["style_consistency"]), _fmt(cost["nfe"], "nfe"), _fmt(cost["seconds"], "seconds"),
    )
    console.print(table)
    if s["characters"]:
        per = ", ".join(f"{escape(names.get(c, c))} {v:.3f}" for c, v in s["characters"].items())
        console.print(f"character consistency (DINO): {per}")
    methods = ", ".join(cost["methods"]) or "—"
    console.print(
        f"cost: {cost['panels']} panels · {cost['nfe']} NFE · {cost['seconds']:.1f} s · peak "
        f"{_fmt(cost['peak_gpu_bytes'], 'peak_gpu_bytes')} · backend {escape(str(cost['backend']))} · "
        f"method {escape(methods)} · search {escape(str(cost['search']))} · fast {_fmt_flag(cost['fast'])}"
    )
    for note in run["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}")


def _fmt_flag(value: Any) -> str:
    return "—" if value is None else ("yes" if value else "no")


def _comparison_tables(doc: dict[str, Any]) -> None:
    comparison, labels = doc["comparison"], _labels(doc["runs"])
    if not comparison["same_story"]:
        console.print("[yellow]note:[/] these runs come from different stories; per-panel rows compare panels by number.")
    table = Table(title="Comparison (deltas against A)", title_justify="left")
    table.add_column("metric")
    for i, label in enumerate(labels):
        table.add_column(escape(label), justify="right")
        if i:
            table.add_column(f"Δ {label.split(':')[0]}", justify="right")
    for section in ("summary", "characters", "cost"):
        for row in comparison[section]:
            cells = []
            for i, value in enumerate(row["values"]):
                cells.append(_fmt(value, row["metric"] if section == "cost" else ""))
                if i:
                    metric = row["metric"] if section == "cost" else ""
                    cells.append(_fmt_delta(row["deltas"][i], metric, row["higher_is_better"], row["values"][0]))
            table.add_row(escape(row["label"]), *cells)
        table.add_section()
    for label, setting in zip(labels, comparison["settings"]):
        table.caption = (table.caption or "") + (
            f"{escape(label)}: {escape(str(setting['backend']))}, method {escape(', '.join(setting['methods']) or '—')}, "
            f"search {escape(str(setting['search']))}, fast {_fmt_flag(setting['fast'])}"
            f"{' (preview)' if setting['preview'] else ''}\n"
        )
    console.print(table)
    panels = Table(title="Per panel (value in each run, Δ against A)", title_justify="left")
    panels.add_column("panel")
    panels.add_column("metric")
    for i, label in enumerate(labels):
        panels.add_column(label.split(":")[0], justify="right")
        if i:
            panels.add_column(f"Δ {label.split(':')[0]}", justify="right")
    for panel in comparison["panels"]:
        for j, row in enumerate(r for r in panel["metrics"] if r["metric"] not in ("peak_gpu_bytes",)):
            cells = []
            for i, value in enumerate(row["values"]):
                cells.append(_fmt(value, row["metric"]))
                if i:
                    cells.append(_fmt_delta(row["deltas"][i], row["metric"], row["higher_is_better"], row["values"][0]))
            panels.add_row(str(panel["number"]) if j == 0 else "", escape(row["label"]), *cells)
        panels.add_section()
    console.print(panels)


def _write_html(path: Path, doc: dict[str, Any]) -> None:
    from ipprompt.atomic import atomic_write_text
    from ipprompt.storyboard.render import make_environment

    env = make_environment()
    html = env.get_template("eval.html.j2").render({"doc": doc, "labels": _labels(doc["runs"])})
    atomic_write_text(path, html)


def eval_command(
    runs: list[Path] = typer.Argument(..., metavar="RUN...", help="Finished run folders (each holds manifest.json)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", metavar="ID", help="CLIP model for CLIP-T and CLIP-I: hub id or local folder. " + default("the run's own")),
    dino: Optional[str] = typer.Option(None, "--dino", metavar="ID", help="DINOv2 model for character consistency: hub id or local folder. " + default(f"{DEFAULT_DINO} if on this machine, else none")),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (all runs, every metric, deltas) to stdout."),
    html: Optional[Path] = typer.Option(None, "--html", metavar="FILE", help="Also write the report as an HTML page. " + default("no page")),
    save: bool = typer.Option(True, "--save/--no-save", help="Store results in each run's eval.json and refresh its storyboard."),
) -> None:
    from ipprompt.evaluate.compare import report_document
    from ipprompt.evaluate.report import evaluate_runs
    from ipprompt.storyboard.render import STORYBOARD, render_storyboard

    def on_run(root: Path) -> None:
        err_console.print(f"evaluating {escape(str(root))} …", highlight=False)

    try:
        results = evaluate_runs(runs, encoder=encoder, dino=dino, save=save, on_run=on_run)
    except IppromptError as error:
        raise fail(error)
    for result in results:
        root = Path(result.run)
        if save and (root / STORYBOARD).is_file():
            try:
                render_storyboard(root)
            except IppromptError as error:
                err_console.print(f"[yellow]warning:[/] storyboard of {escape(str(root))} not refreshed: {escape(error.message)}")
    doc = report_document(results)
    if html is not None:
        try:
            _write_html(html, doc)
        except IppromptError as error:
            raise fail(error)
        err_console.print(f"wrote {escape(str(html))}", highlight=False)
    if as_json:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    for run in doc["runs"]:
        _run_tables(run)
    if doc["comparison"] is not None:
        console.print()
        _comparison_tables(doc)


eval_command.__doc__ = EVAL_HELP
