"""The comic page in headless Chromium: wide and tall panels span cells, print keeps them, copy works.

The example run (preview backend, panels 1-6) has panel 1 wide and panel 5 tall.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from test_browser import PHONE, VIEWPORT, Browser, browser  # noqa: F401  (the fixture)
from test_render import example_run_dir
from ipprompt.storyboard.render import render_storyboard

pytestmark = pytest.mark.slow  # a browser: the whole suite runs these, the quick tier does not

BOX = "(s => { const r = document.querySelector(s).getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })"


def boxes(browser: Browser) -> dict[int, list[float]]:
    return {n: browser.evaluate(f"{BOX}('#panel-{n} .frame')") for n in range(1, 8)}


def test_wide_and_tall_panels_span_cells_on_screen_and_paper(browser: Browser, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = tmp_path / "run"
    shutil.copytree(example_run_dir(tmp_path_factory), run)
    with Image.open(run / "panels" / "01.png") as wide, Image.open(run / "panels" / "05.png") as tall:
        assert wide.width == 2 * wide.height and tall.height == 2 * tall.width
    page = render_storyboard(run)
    browser.open_page(page.resolve().as_uri(), VIEWPORT)
    columns = "getComputedStyle(document.querySelector('.comic')).gridTemplateColumns.split(' ').length"

    for media, cols in (("", 3), ("print", 2)):
        browser.send("Emulation.setEmulatedMedia", {"media": media})
        assert browser.evaluate(columns) == cols
        b = boxes(browser)
        square = b[2]
        assert abs(square[2] - square[3]) < 2, "a square panel is square"
        # The wide panel: as high as a square one, about twice as wide (two cells and a gutter).
        assert 1.9 < b[1][2] / square[2] < 2.25 and abs(b[1][3] - square[3]) < 2
        if cols == 3:
            assert abs(b[1][1] - square[1]) < 2, "side by side in the first row"
        # The tall panel: as wide as a square one, about twice as high.
        assert abs(b[5][2] - square[2]) < 2 and 1.9 < b[5][3] / square[3] < 2.4
        # No holes: panels fill the rows in reading order (1 wide, 5 tall: see the story).
        tops = sorted({round(v[1]) for v in b.values()})
        assert len(tops) == {3: 3, 2: 5}[cols], (media, b)
        assert [b[n][1] for n in range(1, 8)] == sorted(b[n][1] for n in range(1, 8))
    browser.send("Emulation.setEmulatedMedia", {"media": ""})
    # It still prints: the browser's own PDF of the page holds the comic on A4 pages.
    pdf = base64.b64decode(browser.send("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69}, timeout=60)["data"])
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) >= 2
    (tmp_path / "storyboard.pdf").write_bytes(pdf)

    # A phone: one column, each panel at its own aspect ratio, in story order.
    browser.resize(PHONE)
    assert browser.evaluate(columns) == 1
    b = boxes(browser)
    assert abs(b[1][2] / b[1][3] - 2) < 0.05 and abs(b[5][3] / b[5][2] - 2) < 0.05
    assert [b[n][1] for n in range(1, 8)] == sorted(b[n][1] for n in range(1, 8))
    browser.resize(VIEWPORT)
    browser.screenshot(tmp_path / "comic.png")
    browser.drain(0.3)
    assert browser.errors() == []


def test_copy_button_copies_the_pick_command(browser: Browser, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = tmp_path / "run"
    shutil.copytree(example_run_dir(tmp_path_factory), run)
    page = render_storyboard(run)
    browser.open_page(page.resolve().as_uri(), VIEWPORT)
    shown = browser.evaluate("Array.from(document.querySelectorAll('button.copy')).filter(b => !b.hidden).length")
    assert shown == browser.evaluate("document.querySelectorAll('.candidate').length") > 0
    result = browser.evaluate(
        "(async () => { document.getElementById('inspect-2').open = true;"
        " const b = document.querySelector('#inspect-2 .candidate button.copy');"
        " let copied = null;"
        " document.addEventListener('copy', (e) => { copied = document.getSelection().toString() || (document.activeElement && document.activeElement.value); }, {once: true});"
        " b.click(); await new Promise((r) => setTimeout(r, 200));"
        " return [b.textContent, b.getAttribute('data-copy'), copied]; })()"
    )
    label, command, copied = result
    assert command.startswith("ipprompt story pick ") and command.endswith(" 2 0")
    assert label in ("Copied", "Press Ctrl+C")
    if label == "Copied" and copied is not None:
        assert copied == command
    browser.drain(0.3)
    assert browser.errors() == []
