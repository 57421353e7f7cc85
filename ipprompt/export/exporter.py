"""``export_run``: what ``ipprompt story export`` calls.

It reads the manifest (never a model), so it works on any finished or partly finished run. Every
target is checked before any page is drawn, so a typo fails in a moment rather than after the
pages are made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ipprompt.errors import IppromptError
from ipprompt.export.formats import check_output_file, check_pages_folder, write_cbz, write_page_files, write_pdf
from ipprompt.export.pages import character_names, make_book, page_spec
from ipprompt.export.resolution import shortfall_warning, under_resolved
from ipprompt.export.sizes import DEFAULT_DPI, DEFAULT_PAGE_SIZE
from ipprompt.runfolder.manifest import RunManifest, read_manifest


def damaged_panels(root: Path, manifest: RunManifest) -> dict[int, str]:
    """Done panels whose image cannot be drawn, with the reason ("missing", "corrupt: ..."), so an
    export never draws "IMAGE MISSING" without saying so."""
    from ipprompt.runfolder.folder import RunFolder

    folder = RunFolder(root)
    problems = {p.number: folder.panel_problem(p) for p in manifest.panels if p.done}
    return {n: why for n, why in problems.items() if why is not None}


@dataclass
class ExportResult:
    """What was written: the page count (title page included) and each file or folder."""

    pages: int
    written: list[Path] = field(default_factory=list)
    pending: int = 0
    # Done panels drawn as "IMAGE MISSING": their image file is missing, corrupt or outside the run.
    damaged: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. panels the page enlarges (under-resolved)

    def warnings(self) -> list[str]:
        """One line per done panel whose image could not be drawn, naming it and why, then the notes."""
        return [f"Panel {n}: its image is {why}; drawn as IMAGE MISSING." for n, why in sorted(self.damaged.items())] + (
            ["Remake them: `ipprompt story run STORY --out RUN` (a corrupt or missing panel is made again)."] if self.damaged else []
        ) + self.notes


def export_run(
    run_dir: str | Path,
    *,
    pdf: str | Path | None = None,
    cbz: str | Path | None = None,
    pages_dir: str | Path | None = None,
    page_size: str = DEFAULT_PAGE_SIZE,
    dpi: int = DEFAULT_DPI,
) -> ExportResult:
    """Draw the run's pages once and write each requested format; user errors are IppromptError."""
    if pdf is None and cbz is None and pages_dir is None:
        raise IppromptError("Nothing to export: no output was given.", "Add --pdf FILE, --cbz FILE and/or --pages FOLDER.")
    spec = page_spec(page_size, dpi)
    root = Path(run_dir)
    manifest = read_manifest(root)
    if pdf is not None:
        check_output_file(Path(pdf), "--pdf", ".pdf")
    if cbz is not None:
        check_output_file(Path(cbz), "--cbz", ".cbz")
    if pages_dir is not None:
        check_pages_folder(Path(pages_dir))
    book = make_book(root, manifest, spec)
    # Pillow's PDF writer wants every page at once, so pages are kept in memory (about 5 MB
    # each at the default size and dpi) and shared by all formats instead of drawn per format.
    pages = list(book.pages())
    result = ExportResult(len(pages), pending=sum(1 for a in book.arts if a.status != "done"), damaged=damaged_panels(root, manifest))
    warning = shortfall_warning(under_resolved(book), spec.dpi)
    if warning:
        result.notes.append(warning)
    title = manifest.story.title
    if pdf is not None:
        write_pdf(Path(pdf), pages, dpi=spec.dpi, title=title)
        result.written.append(Path(pdf))
    if cbz is not None:
        write_cbz(Path(cbz), pages, title=title, characters=character_names(manifest))
        result.written.append(Path(cbz))
    if pages_dir is not None:
        write_page_files(Path(pages_dir), pages)
        result.written.append(Path(pages_dir))
    return result
