"""Import a whole dataset, and ``vistorybench run``: import, run every story, export.

The run calls the library (``run_story``) story after story, never a subprocess: each story is an
ordinary resumable run folder (``WORK/runs/<id>``), so running the command again keeps every
finished panel and makes only what is left (English and Chinese have separate work folders); with ``ray`` each story's panels are spread over the
workers. Each story loads the generator again when it has panels left (a run frees its text
encoders once its prompts are encoded), which costs a minute or so per story next to hours of
panels. The export timestamp is recorded in the work folder, so a resumed run writes into the
same outputs folder instead of adding a second run for the benchmark to score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ipprompt.atomic import atomic_write_text
from ipprompt.errors import IppromptError
from ipprompt.vistorybench.convert import Imported, convert_story
from ipprompt.vistorybench.dataset import load_story, select_stories
from ipprompt.vistorybench.outputs import ExportReport, check_names, export_runs, now_timestamp

Note = Callable[[str], None]


@dataclass
class ImportReport:
    imported: list[Imported] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (story id, reason)

    @property
    def shots_skipped(self) -> int:
        return sum(len(s.skipped) for s in self.imported)


def import_dataset(dataset: Path, out: Path, *, stories: str | None = None, language: str = "en") -> ImportReport:
    """Convert the selected stories; a story that cannot be read is skipped with its reason.

    Raises only when nothing could be imported (or the dataset folder itself is unusable), so one
    damaged story never stops the other seventy-nine.
    """
    report = ImportReport()
    for sid in select_stories(Path(dataset), stories):
        try:
            report.imported.append(convert_story(load_story(Path(dataset), sid, language), Path(out)))
        except IppromptError as error:
            report.failed.append((sid, error.message))
    if not report.imported:
        reasons = "\n".join(f"  story {sid}: {why}" for sid, why in report.failed)
        raise IppromptError(f"No story could be imported from {dataset}:\n{reasons}", "Fix or download the files named above again.")
    return report


@dataclass
class BenchmarkResult:
    imports: ImportReport
    runs: dict[str, Path] = field(default_factory=dict)  # story id -> finished run folder
    failed: list[tuple[str, str]] = field(default_factory=list)  # (story id, why its run stopped)
    export: ExportReport | None = None


def _timestamp(work: Path, method: str, mode: str, language: str, given: str | None) -> str:
    """The export timestamp for this (method, mode, language): given, else the one recorded, else now."""
    record = work / "exports.json"
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    slot = f"{method}/{mode}/{language}"
    timestamp = given or known.get(slot) or now_timestamp()
    if known.get(slot) != timestamp:
        known[slot] = timestamp
        atomic_write_text(record, json.dumps(known, indent=2) + "\n")
    return timestamp


def run_benchmark(
    dataset: Path,
    work: Path,
    outputs: Path,
    *,
    stories: str | None = "lite",
    language: str = "en",
    method_name: str = "ipprompt",
    mode_name: str = "base",
    timestamp: str | None = None,
    progress_factory: Callable[[], Any] | None = None,
    note: Note = lambda text: None,
    on_import: Callable[[ImportReport], None] | None = None,
    **run_options: Any,
) -> BenchmarkResult:
    """Import into ``WORK/<language>/stories``, run each story into ``WORK/<language>/runs/<id>``
    (one folder per language: the two imports' prompts differ), export to ``outputs``.

    ``run_options`` go to ``run_story`` unchanged (backend, model, steps, method, ray, workers, ...);
    ``method_name`` and ``mode_name`` are the outputs' folder names (``method`` is the generation
    method, dvp or reference). A story whose run stops with a user error is reported and left out
    of the export; the others go on.
    """
    from ipprompt.pipeline.run import run_story

    check_names(method_name, mode_name, language, timestamp or now_timestamp())  # before hours of work, not after
    work = Path(work)
    imports = import_dataset(dataset, work / language / "stories", stories=stories, language=language)
    result = BenchmarkResult(imports)
    if on_import is not None:
        on_import(imports)  # what was imported and skipped, before hours of runs
    total = len(imports.imported)
    shots = sum(s.panels for s in imports.imported)
    note(f"{total} stories, {shots} shots to draw; runs in {work / language / 'runs'} (run the same command again to resume)")
    for n, story in enumerate(imports.imported, start=1):
        run_dir = work / language / "runs" / story.story_id
        note(f"[{n}/{total}] story {story.story_id}: {story.panels} shots")
        progress = progress_factory() if progress_factory is not None else None
        try:
            run_story(story.path, out=run_dir, progress=progress, **run_options)
        except IppromptError as error:
            result.failed.append((story.story_id, error.message))
            note(f"[{n}/{total}] story {story.story_id} stopped: {error.message}")
            continue
        result.runs[story.story_id] = run_dir
    if result.runs:
        stamp = _timestamp(work, method_name, mode_name, language, timestamp)
        result.export = export_runs(list(result.runs.values()), outputs, method=method_name, mode=mode_name, language=language, timestamp=stamp)
    return result
