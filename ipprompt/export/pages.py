"""Comic pages from a run: a title page, then the panels laid out, framed and lettered.

Pages are built from the manifest and the panel PNGs alone, never a model, so a run can be
exported on any machine, finished or not: a pending panel (or one whose image is gone) is an
empty frame showing its prompt, as in the storyboard. Panel images are opened only inside the run
folder: the manifest is a file anyone can edit, and an export must not become a way to read
files elsewhere on the machine, directly or through a symlink.

Geometry is in inches and points, turned into pixels by ``--dpi``: the default 150 dpi reads well
on screens and tablets and keeps a PDF small; use 300 for print.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from ipprompt.runfolder.safepath import inside_or_none
from ipprompt.errors import IppromptError
from ipprompt.export.lettering import MUTED, Line, letter_panel, letters_bottom
from ipprompt.export.sizes import DEFAULT_DPI, DEFAULT_PAGE_SIZE, MAX_DPI, MIN_DPI, PAGE_SIZES
from ipprompt.export.text import INK, Box, draw_paragraph, font, line_height
from ipprompt.runfolder.manifest import RunManifest
from ipprompt.storyboard.pagelayout import DEFAULT_COLUMNS, DEFAULT_ROWS, Placement, layout_panels, page_count

PAPER = (255, 255, 255)
PLACEHOLDER = (236, 230, 218)


@dataclass(frozen=True)
class PageSpec:
    """A page's size in pixels and the spacing derived from it."""

    name: str
    dpi: int
    width: int
    height: int
    columns: int = DEFAULT_COLUMNS
    rows: int = DEFAULT_ROWS

    @property
    def px_per_pt(self) -> float:
        return self.dpi / 72

    def pt(self, points: float) -> int:
        return max(1, round(points * self.px_per_pt))

    @property
    def margin(self) -> int:
        return self.pt(28)  # ~0.4 in: inside the trim and bleed of print shops

    @property
    def gutter(self) -> int:
        return self.pt(9)

    @property
    def border(self) -> int:
        return self.pt(1.5)


def page_spec(page_size: str = DEFAULT_PAGE_SIZE, dpi: int = DEFAULT_DPI) -> PageSpec:
    """The page for ``--page-size`` and ``--dpi``, or an IppromptError naming the choices."""
    name = (page_size or "").strip().lower()
    if name not in PAGE_SIZES:
        raise IppromptError(
            f"Unknown page size {page_size!r}.",
            f"Use one of: {', '.join(PAGE_SIZES)} (comic is 6.625 x 10.25 in, the US comic book).",
        )
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not MIN_DPI <= dpi <= MAX_DPI:
        raise IppromptError(f"--dpi {dpi!r} is out of range.", f"Use {MIN_DPI} to {MAX_DPI}: 150 for screens, 300 for print.")
    width, height = PAGE_SIZES[name]
    return PageSpec(name, dpi, round(width * dpi), round(height * dpi))


@dataclass(frozen=True)
class PanelArt:
    """What one panel brings to a page: its image (when there is a safe one) and its words."""

    number: int
    shape: str
    prompt: str
    caption: str | None
    dialogue: tuple[Line, ...]
    image: Path | None
    status: str


def safe_panel_path(run_dir: Path, rel: object) -> Path | None:
    """The file a manifest path names, or None unless it is a plain relative path inside the run.

    Absolute paths, ``..``, drive letters and symlinks that lead out of the folder are refused
    (the one check: ``RunFolder.resolve``).
    """
    path = inside_or_none(run_dir, rel)
    return path if path is not None and path.is_file() else None


def panels_of(run_dir: Path, manifest: RunManifest) -> list[PanelArt]:
    """Every panel of the manifest, in story order, with speakers named as the storyboard names them."""
    characters = manifest.story.characters
    arts = []
    for p in sorted(manifest.panels, key=lambda p: p.number):
        dialogue = []
        for d in p.dialogue:
            known = characters.get(d.speaker)
            name = d.name or (known.get("name") if isinstance(known, dict) else None) or d.speaker
            dialogue.append(Line(d.text, str(name or "")))
        image = safe_panel_path(run_dir, p.image) if p.done else None
        # The print pass's large panel when there is one (it was made from this very image).
        if image is not None and p.upscale is not None:
            image = safe_panel_path(run_dir, p.upscale.image) or image
        arts.append(PanelArt(p.number, p.shape, p.prompt, p.caption, tuple(dialogue), image, p.status))
    return arts


def open_panel(path: Path | None) -> Image.Image | None:
    """The panel as RGB, or None for a missing, damaged or absurdly large file (drawn as pending)."""
    from ipprompt.images import ImageRejected, open_image

    if path is None:
        return None
    try:
        return open_image(path)  # the one opening function: size limits before any decode
    except ImageRejected:
        return None


# --------------------------------------------------------------------------- pages


def cell_box(spec: PageSpec, placement: Placement) -> Box:
    """The pixel rectangle of a placement on its page."""
    inner_w = spec.width - 2 * spec.margin
    inner_h = spec.height - 2 * spec.margin
    col_w = (inner_w - (spec.columns - 1) * spec.gutter) / spec.columns
    row_h = (inner_h - (spec.rows - 1) * spec.gutter) / spec.rows
    left = spec.margin + placement.col * (col_w + spec.gutter)
    top = spec.margin + placement.row * (row_h + spec.gutter)
    width = placement.colspan * col_w + (placement.colspan - 1) * spec.gutter
    height = placement.rowspan * row_h + (placement.rowspan - 1) * spec.gutter
    return Box(round(left), round(top), round(left + width), round(top + height))


def draw_panel(art: PanelArt, size: tuple[int, int], spec: PageSpec) -> Image.Image:
    """One framed panel: the art cropped to fill its cell (or an empty frame), then the lettering."""
    image = open_panel(art.image)
    if image is not None:
        panel = ImageOps.fit(image, size, method=Image.Resampling.LANCZOS)
    else:
        panel = Image.new("RGB", size, PLACEHOLDER)
    badge = _badge_height(spec)
    drawn = letter_panel(panel, art.caption, art.dialogue, px_per_pt=spec.px_per_pt, reserve_bottom=badge)
    if image is None:
        status = "image missing" if art.status == "done" else "not drawn yet"
        pad = spec.pt(6)
        top = max(letters_bottom(drawn), 0) + pad
        box = Box(pad, top, size[0] - pad, size[1] - badge - pad)
        draw_paragraph(panel, f"{status.upper()}\n{art.prompt}", box, max_px=spec.pt(8), min_px=spec.pt(4), fill=MUTED)
    _draw_badge(panel, art.number, spec)
    ImageDraw.Draw(panel).rectangle((0, 0, size[0] - 1, size[1] - 1), outline=INK, width=spec.border)
    return panel


def _badge_height(spec: PageSpec) -> int:
    return line_height(font(spec.pt(7))) + 2 * spec.pt(2)


def _draw_badge(panel: Image.Image, number: int, spec: PageSpec) -> None:
    """The panel number, white on ink in the bottom-right corner, as in the storyboard."""
    f = font(spec.pt(7))
    text = str(number)
    pad = spec.pt(2)
    h = _badge_height(spec)
    w = max(h, int(f.getlength(text)) + 2 * pad)
    x0, y0 = panel.width - w, panel.height - h
    draw = ImageDraw.Draw(panel)
    draw.rectangle((x0, y0, panel.width, panel.height), fill=INK)
    draw.text((x0 + (w - f.getlength(text)) / 2, y0 + pad), text, font=f, fill=PAPER)


def comic_page(arts: Sequence[PanelArt], placements: Sequence[Placement], spec: PageSpec, page_number: int) -> Image.Image:
    """One page: the given panels at their placements, and the page number in the bottom margin."""
    page = Image.new("RGB", (spec.width, spec.height), PAPER)
    for art, placement in zip(arts, placements):
        box = cell_box(spec, placement)
        if box.width > 0 and box.height > 0:
            page.paste(draw_panel(art, (box.width, box.height), spec), (box.left, box.top))
    footer = Box(spec.margin, spec.height - spec.margin + spec.pt(4), spec.width - spec.margin, spec.height - spec.pt(4))
    draw_paragraph(page, str(page_number), footer, max_px=spec.pt(8), min_px=spec.pt(5), fill=MUTED)
    return page


def title_page(manifest: RunManifest, arts: Sequence[PanelArt], spec: PageSpec) -> Image.Image:
    """The cover: title, who is in it, the first finished panel as cover art, and the panel count."""
    page = Image.new("RGB", (spec.width, spec.height), PAPER)
    m, inner_w = spec.margin, spec.width - 2 * spec.margin
    title_box = Box(m, m, m + inner_w, m + round(spec.height * 0.2))
    draw_paragraph(page, manifest.story.title.upper(), title_box, max_px=spec.pt(40), min_px=spec.pt(10), valign="bottom")
    names = character_names(manifest)
    cast_box = Box(m, title_box.bottom + spec.pt(6), m + inner_w, title_box.bottom + spec.pt(30))
    if names:
        draw_paragraph(page, "with " + ", ".join(names), cast_box, max_px=spec.pt(12), min_px=spec.pt(6), fill=MUTED)
    done = sum(1 for a in arts if a.status == "done")
    foot_box = Box(m, spec.height - m - spec.pt(16), m + inner_w, spec.height - m)
    count = f"{len(arts)} panel{'s' if len(arts) != 1 else ''}" + ("" if done == len(arts) else f", {done} drawn")
    draw_paragraph(page, count, foot_box, max_px=spec.pt(9), min_px=spec.pt(5), fill=MUTED)
    cover = next((im for im in (open_panel(a.image) for a in arts) if im is not None), None)
    art_box = Box(m, cast_box.bottom + spec.pt(12), m + inner_w, foot_box.top - spec.pt(12))
    if cover is not None and art_box.width > 0 and art_box.height > 0:
        cover = ImageOps.contain(cover, (art_box.width, art_box.height), method=Image.Resampling.LANCZOS)
        x = art_box.left + (art_box.width - cover.width) // 2
        y = art_box.top + (art_box.height - cover.height) // 2
        page.paste(cover, (x, y))
        ImageDraw.Draw(page).rectangle((x, y, x + cover.width - 1, y + cover.height - 1), outline=INK, width=spec.border)
    return page


def character_names(manifest: RunManifest) -> list[str]:
    """The story's characters by name (their id when unnamed), in story order."""
    names = []
    for cid, info in manifest.story.characters.items():
        name = info.get("name") if isinstance(info, dict) else None
        names.append(str(name or cid))
    return names


@dataclass(frozen=True)
class Book:
    """A run as pages: how many there are, and a way to draw them one at a time."""

    manifest: RunManifest
    arts: tuple[PanelArt, ...]
    placements: tuple[Placement, ...]
    spec: PageSpec

    @property
    def page_total(self) -> int:
        """Title page plus comic pages."""
        return 1 + page_count(self.placements)

    def pages(self) -> Iterator[Image.Image]:
        """The title page, then each comic page, drawn when asked for (pages are big)."""
        yield title_page(self.manifest, self.arts, self.spec)
        for number in range(page_count(self.placements)):
            on_page = [(a, p) for a, p in zip(self.arts, self.placements) if p.page == number]
            yield comic_page([a for a, _ in on_page], [p for _, p in on_page], self.spec, number + 1)


def make_book(run_dir: Path, manifest: RunManifest, spec: PageSpec) -> Book:
    """Lay out the run's panels on pages of ``spec`` (see ``ipprompt.storyboard.pagelayout`` for the rule)."""
    arts = tuple(panels_of(run_dir, manifest))
    placements = tuple(layout_panels([a.shape for a in arts], spec.columns, spec.rows))
    return Book(manifest, arts, placements, spec)
