"""Export: a run as PDF, CBZ and PNG pages, lettered, laid out by the shared page-layout rule.

Run folders are made here from the pydantic manifest model and tiny solid-colour PNGs (one wide,
one tall, one pending panel), so every test is fast; one test exports a real preview run.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import zipfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import typer
from PIL import Image

from conftest import REPO
from ipprompt.errors import IppromptError
from ipprompt.export import export_run
from ipprompt.export.lettering import BUBBLE, NARRATION, Line, letter_panel
from ipprompt.export.pages import PLACEHOLDER, cell_box, make_book, page_spec, safe_panel_path
from ipprompt.export.text import Box, clean_text, fit_paragraph
from ipprompt.runfolder.manifest import DialogueEntry, PanelEntry, RunManifest, StoryInfo, read_manifest, write_manifest
from ipprompt.storyboard.pagelayout import layout_panels, page_count

RED, GREEN, BLUE, GREY = (200, 30, 30), (30, 160, 60), (40, 60, 200), (120, 120, 120)
HOSTILE = {
    "markup": "<b>[/]{{x}}</b> ]]> & <script>alert(1)</script> [bold red]x[/]",
    "long": "word " * 600 + "x" * 2000,  # 5000 characters
    "rtl": "مرحبا بالعالم، هذه فقاعة طويلة جدا שלום עולם זו בועה",
    "emoji": "😀🎉👩‍👩‍👧 🇫🇷 zero\u200bwidth \u202eevil\u202c text",
    "controls": "tab\there\x00nul\x1besc\r\nnew line\u2028sep",
}


# --------------------------------------------------------------------------- run folders


def _png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path.parent.name + "/" + path.name


def make_run(root: Path, *, title: str = "Export Test", caption: str = "It begins.", line: str = "Hello there!") -> Path:
    """Five panels: square, tall (128x256), pending, wide (256x128) fill page 1; a square starts page 2."""
    root.mkdir(parents=True, exist_ok=True)
    panels = [
        PanelEntry(number=1, status="done", prompt="a red room", caption=caption,
                   dialogue=[DialogueEntry(speaker="mira", text=line)], image=_png(root / "panels/01.png", (128, 128), RED)),
        PanelEntry(number=2, status="done", prompt="a blue tower", shape="tall", image=_png(root / "panels/02.png", (128, 256), BLUE)),
        PanelEntry(number=3, status="pending", prompt="the storm breaks", caption="Later."),
        PanelEntry(number=4, status="done", prompt="a green field", shape="wide", image=_png(root / "panels/04.png", (256, 128), GREEN),
                   dialogue=[DialogueEntry(speaker="bob", name="Bob <&>", text=line)]),
        PanelEntry(number=5, status="done", prompt="grey dawn", image=_png(root / "panels/05.png", (128, 128), GREY)),
    ]
    story = StoryInfo(title=title, characters={"mira": {"name": "Mira"}, "bob": {"name": "Bob <&>"}})
    write_manifest(root, RunManifest(story=story, panels=panels))
    return root


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


def pdf_pages(path: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", path.read_bytes()))


# --------------------------------------------------------------------------- page layout


def test_wide_spans_two_columns_and_tall_two_rows() -> None:
    wide, tall = layout_panels(["wide", "tall"])
    assert (wide.row, wide.col, wide.rowspan, wide.colspan) == (0, 0, 1, 2)
    assert (tall.row, tall.col, tall.rowspan, tall.colspan) == (1, 0, 2, 1)


def test_holes_beside_a_tall_panel_are_filled_in_reading_order() -> None:
    got = [(p.page, p.row, p.col) for p in layout_panels(["tall", "square", "square", "square", "square"])]
    assert got == [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 2, 0), (0, 2, 1)]
    got = [(p.page, p.row, p.col) for p in layout_panels(["square", "square", "tall", "square", "square"])]
    assert got == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 2, 1)]


def test_a_later_panel_never_jumps_before_an_earlier_one() -> None:
    """A square then a wide panel leave a hole: filling it would read panel 3 before panel 2."""
    got = [(p.page, p.row, p.col) for p in layout_panels(["square", "wide", "square"])]
    assert got == [(0, 0, 0), (0, 1, 0), (0, 2, 0)]


def test_pages_fill_up_and_overflow() -> None:
    squares = layout_panels(["square"] * 13)
    assert page_count(squares) == 3 and [p.page for p in squares].count(0) == 6
    # A tall panel that does not fit the last row starts the next page.
    placed = layout_panels(["square"] * 4 + ["square", "tall"])
    assert (placed[-1].page, placed[-1].row, placed[-1].col) == (1, 0, 0)
    three = layout_panels(["wide", "square", "tall", "square", "square"], columns=3)
    assert [(p.row, p.col) for p in three] == [(0, 0), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert layout_panels([]) == [] and page_count([]) == 0
    assert layout_panels(["panorama"])[0].colspan == 1  # unknown shapes lay out as squares


@pytest.mark.parametrize("columns", [1, 2, 3])
def test_layout_never_overlaps_and_keeps_reading_order(columns: int) -> None:
    rng = random.Random(columns)
    shapes = [rng.choice(["square", "square", "wide", "tall"]) for _ in range(200)]
    placements = layout_panels(shapes, columns=columns, rows=3)
    cells: set[tuple[int, int, int]] = set()
    for p in placements:
        assert p.row + p.rowspan <= 3 and p.col + p.colspan <= columns
        mine = {(p.page, r, c) for r in range(p.row, p.row + p.rowspan) for c in range(p.col, p.col + p.colspan)}
        assert not mine & cells
        cells |= mine
    anchors = [(p.page, p.row, p.col) for p in placements]
    assert anchors == sorted(anchors)
    # No hole the order allows: for every empty cell before the last panel, the first panel
    # after it in reading order could not have been put there (out of the grid, or on a cell
    # an earlier panel took).
    last = anchors[-1]
    for page in range(page_count(placements)):
        for row in range(3):
            for col in range(columns):
                if (page, row, col) in cells or (page, row, col) > last:
                    continue
                k = next(i for i, a in enumerate(anchors) if a > (page, row, col))
                p = placements[k]
                earlier = {(q.page, r, c) for q in placements[:k] for r in range(q.row, q.row + q.rowspan) for c in range(q.col, q.col + q.colspan)}
                want = {(page, r, c) for r in range(row, row + p.rowspan) for c in range(col, col + p.colspan)}
                fits = row + p.rowspan <= 3 and col + p.colspan <= columns and not want & earlier
                assert not fits, f"panel {k} fits the hole at {(page, row, col)}"


# --------------------------------------------------------------------------- formats


def test_pdf_has_title_page_plus_comic_pages(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "comic.pdf"
    result = export_run(run_dir, pdf=out, page_size="a4", dpi=72)
    spec = page_spec("a4", 72)
    expected = 1 + page_count(make_book(run_dir, read_manifest(run_dir), spec).placements)
    assert result.pages == expected == pdf_pages(out) == 3
    assert result.pending == 1
    media = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)", out.read_bytes())
    assert media and abs(float(media.group(1)) - 595) < 2 and abs(float(media.group(2)) - 842) < 2
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_cbz_pages_in_reading_order_with_comic_info(run_dir: Path, tmp_path: Path) -> None:
    cbz, pages = tmp_path / "comic.cbz", tmp_path / "pages"
    result = export_run(run_dir, cbz=cbz, pages_dir=pages, dpi=72)
    with zipfile.ZipFile(cbz) as zf:
        names = zf.namelist()
        images = [n for n in names if n.endswith(".png")]
        assert images == sorted(images) == [f"{i:03d}.png" for i in range(result.pages)]
        info = ET.fromstring(zf.read("ComicInfo.xml"))
        assert zf.read("001.png") == (pages / "page-001.png").read_bytes()
        with Image.open(zf.open("000.png")) as cover:
            assert cover.size == (page_spec("comic", 72).width, page_spec("comic", 72).height)
    assert info.tag == "ComicInfo"
    assert info.findtext("Title") == "Export Test"
    assert info.findtext("PageCount") == str(result.pages)
    assert info.findtext("Characters") == "Mira, Bob <&>"
    page_elems = info.findall("Pages/Page")
    assert [p.get("Image") for p in page_elems] == [str(i) for i in range(result.pages)]
    assert page_elems[0].get("Type") == "FrontCover" and {p.get("Type") for p in page_elems[1:]} == {"Story"}
    assert sorted(p.name for p in pages.iterdir()) == [f"page-{i:03d}.png" for i in range(result.pages)]


def test_page_is_lettered_and_laid_out(run_dir: Path, tmp_path: Path) -> None:
    """On page 1, panel 1 shows its narration box and bubble, the pending panel an empty frame."""
    export_run(run_dir, pages_dir=tmp_path / "pages", dpi=100)
    spec = page_spec("comic", 100)
    book = make_book(run_dir, read_manifest(run_dir), spec)
    with Image.open(tmp_path / "pages" / "page-001.png") as im:
        page = im.convert("RGB")
    assert [(p.page, p.row, p.col) for p in book.placements] == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 2, 0), (1, 0, 0)]
    first, tall, pending, wide = (cell_box(spec, p) for p in book.placements[:4])
    assert wide.width > 2 * first.width and tall.height > 2 * first.height

    def colours(box: Box) -> set[tuple[int, int, int]]:
        return set(page.crop((box.left, box.top, box.right, box.bottom)).getdata())

    top = Box(first.left, first.top, first.right, first.top + first.height // 2)
    assert NARRATION in colours(top) and BUBBLE in colours(top)
    assert page.getpixel((first.right - first.width // 4, first.bottom - first.height // 4)) == RED
    assert page.getpixel((wide.left + wide.width // 2, wide.bottom - wide.height // 4)) == GREEN
    assert PLACEHOLDER in colours(pending)


def test_lettering_differs_from_bare_panel_only_inside_its_boxes() -> None:
    bare = Image.new("RGB", (400, 400), BLUE)
    panel = bare.copy()
    drawn = letter_panel(panel, "A caption.", [Line("First line!", "Mira"), Line("Second.", "Bob")], px_per_pt=2)
    assert [d.kind for d in drawn] == ["narration", "bubble", "bubble"]
    inside = Image.new("L", panel.size, 0)
    for d in drawn:
        for box in (d.box, d.tail):
            if box:
                inside.paste(255, (box.left, box.top, box.right, box.bottom))
                region = (box.left, box.top, box.right, box.bottom)
                assert panel.crop(region).tobytes() != bare.crop(region).tobytes()
    changed = Image.frombytes("L", panel.size, bytes(
        0 if a == b else 255 for a, b in zip(panel.convert("L").tobytes(), bare.convert("L").tobytes())
    ))
    outside = Image.composite(Image.new("L", panel.size, 0), changed, inside)
    assert outside.getbbox() is None  # nothing changed outside the boxes and tails
    assert drawn[1].box.left < drawn[2].box.left  # bubbles alternate sides


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_text_stays_inside_its_bubble(kind: str) -> None:
    text = HOSTILE[kind]
    panel = Image.new("RGB", (300, 300), GREY)
    drawn = letter_panel(panel, text, [Line(text, text), Line(text, "Mira")], px_per_pt=150 / 72, reserve_bottom=20)
    assert drawn, "some lettering is drawn"
    whole = Box(0, 0, 300, 280)
    for d in drawn:
        assert whole.contains(d.box) and d.box.contains(d.text_box)
        assert d.tail is None or whole.contains(d.tail)
    if kind == "long":
        assert any(d.truncated for d in drawn)


def test_hostile_text_exports_and_stays_valid_xml(tmp_path: Path) -> None:
    title = HOSTILE["markup"] + HOSTILE["controls"] + HOSTILE["rtl"]
    run = make_run(tmp_path / "run", title=title, caption=HOSTILE["long"], line=HOSTILE["emoji"] + HOSTILE["rtl"])
    cbz, pdf = tmp_path / "x.cbz", tmp_path / "x.pdf"
    result = export_run(run, cbz=cbz, pdf=pdf, dpi=72)
    with zipfile.ZipFile(cbz) as zf:
        info = ET.fromstring(zf.read("ComicInfo.xml"))
    assert info.findtext("Title") == " ".join(re.sub("[\x00\x1b]", "", title).split())
    assert pdf_pages(pdf) == result.pages


def test_clean_text_and_fit_paragraph_tame_anything() -> None:
    assert clean_text("a\ud800b\x00c\u202e  d\n\n e") == "a?b c d\ne"
    fitted = fit_paragraph("x" * 5000, 100, 40, 20, 8)
    assert fitted.truncated and fitted.lines[-1].endswith("…") and len(fitted.lines) * fitted.step <= 40


# --------------------------------------------------------------------------- safety and errors


def test_manifest_paths_outside_the_run_are_never_opened(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), RED).save(secret)
    (run / "panels" / "link.png").symlink_to(secret)
    for rel in ("../secret.png", str(secret), "panels/link.png", "panels/../../secret.png", "C:/x.png", "", None, 7):
        assert safe_panel_path(run, rel) is None
    assert safe_panel_path(run, "panels/01.png") == (run / "panels" / "01.png").resolve()


def test_pages_folder_with_user_files_is_refused(run_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(IppromptError, match="notes.txt"):
        export_run(run_dir, pages_dir=folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    # A folder of earlier pages is ours: rewritten, and pages beyond the new count removed.
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "page-007.png").write_bytes(b"old")
    result = export_run(run_dir, pages_dir=ours, dpi=72)
    assert sorted(p.name for p in ours.iterdir()) == [f"page-{i:03d}.png" for i in range(result.pages)]


def test_user_errors_are_ippromptErrors(run_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IppromptError, match="no manifest.json"):
        export_run(empty, pdf=tmp_path / "x.pdf")
    with pytest.raises(IppromptError, match="page size"):
        export_run(run_dir, pdf=tmp_path / "x.pdf", page_size="tabloid")
    with pytest.raises(IppromptError, match="dpi"):
        export_run(run_dir, pdf=tmp_path / "x.pdf", dpi=5000)
    with pytest.raises(IppromptError, match="Nothing to export"):
        export_run(run_dir)
    with pytest.raises(IppromptError, match="is a folder"):
        export_run(run_dir, pdf=tmp_path)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(IppromptError, match="Could not write"):
        export_run(run_dir, pdf=blocker / "x.pdf", dpi=72)


def test_missing_or_damaged_panel_image_exports_as_empty_frame(run_dir: Path, tmp_path: Path) -> None:
    (run_dir / "panels" / "01.png").write_bytes(b"not a png")
    (run_dir / "panels" / "02.png").unlink()
    result = export_run(run_dir, pdf=tmp_path / "x.pdf", dpi=72)
    assert pdf_pages(tmp_path / "x.pdf") == result.pages


# --------------------------------------------------------------------------- CLI and a real run


def _app() -> typer.Typer:
    from ipprompt.cli.export import export

    app = typer.Typer()
    app.command("export")(export)
    app.command("other")(lambda: None)  # two commands, so `export` is a subcommand as under `story`
    return app


def test_cli_exports_and_reports_errors_without_traceback(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipprompt.cli.console import run_cli_errors

    app = _app()
    pdf = tmp_path / "c.pdf"
    assert run_cli_errors(app, ["export", str(run_dir), "--pdf", str(pdf), "--dpi", "72", "--page-size", "letter"]) == 0
    out = capsys.readouterr()
    assert pdf_pages(pdf) == 3 and "3 pages" in out.out and "1 panel not drawn" in out.out
    assert run_cli_errors(app, ["export", str(tmp_path / "nope"), "--cbz", str(tmp_path / "c.cbz")]) == 2
    assert run_cli_errors(app, ["export", str(run_dir), "--pdf", str(pdf), "--page-size", "huge"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Unknown page size" in err and "Traceback" not in err


def test_cli_command_loads_without_pillow() -> None:
    """Registering the command must not slow every ipprompt command down with Pillow."""
    code = "import sys, ipprompt.cli.export; assert 'PIL' not in sys.modules, 'PIL imported'"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_cli_help_shows_examples() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(_app(), ["export", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--pdf" in result.output and "--page-size" in result.output and "story export runs/lighthouse" in result.output


def test_export_a_real_preview_run(example_copy: Path, tmp_path: Path) -> None:
    from ipprompt.pipeline.run import run_story

    out = tmp_path / "run"
    run_story(example_copy, out=out, backend="preview", tile=256, panels="1-3")
    manifest = read_manifest(out)
    before = (out / "manifest.json").read_bytes()
    result = export_run(out, pdf=tmp_path / "s.pdf", cbz=tmp_path / "s.cbz", dpi=72)
    squares = layout_panels([p.shape for p in manifest.panels])
    assert result.pages == 1 + page_count(squares) == pdf_pages(tmp_path / "s.pdf")
    assert result.pending == len(manifest.panels) - 3
    with zipfile.ZipFile(tmp_path / "s.cbz") as zf:
        info = ET.fromstring(zf.read("ComicInfo.xml"))
    assert info.findtext("Title") == manifest.story.title
    assert "Mira" in (info.findtext("Characters") or "")
    assert (out / "manifest.json").read_bytes() == before  # export only reads the run
