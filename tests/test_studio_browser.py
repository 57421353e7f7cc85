"""The studio in a real browser: Playwright for Python driving the system's Chromium.

``playwright install`` cannot download browsers here, so the test launches the Chromium the system
has (``chromium`` on PATH, or IPPROMPT_CHROMIUM) through ``executable_path``, and skips with the
reason where it or Playwright is missing. The studio is served by uvicorn from a thread on a free
port, over a preview run of the example story (no model). Each test also fails on any error the
page logs. With IPPROMPT_SCREENSHOT=1 the reroll test saves the studio as docs/studio.png (the
README's picture).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the studio extra is not installed (pip install 'ipprompt[studio]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")

from ipprompt.studio.server import Running, prepare  # noqa: E402
from studio_helpers import OPTIONS, changed_lines, comments, make_run, panel  # noqa: E402

pytestmark = pytest.mark.slow  # a browser: the whole suite runs these, the quick tier does not

REPO = Path(__file__).resolve().parent.parent
RUN_OPTIONS = {**OPTIONS, "search": "exhaustive"}  # every candidate finished: a pick shows at once
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
DONE = "(id) => window.studioEvents.some((e) => e.kind === 'job' && e.data.id === id && ['done', 'failed', 'cancelled'].includes(e.data.state))"


def chromium() -> str | None:
    configured = os.environ.get("IPPROMPT_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium; or set IPPROMPT_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def served(example_copy: Path) -> Iterator[tuple[Running, Path, Path]]:
    run_dir = make_run(example_copy, panels="1-4", search="exhaustive")
    running = prepare(run_dir, example_copy, host="127.0.0.1", port=0, run_options=RUN_OPTIONS)
    running.start_background()
    with socket.create_connection(("127.0.0.1", running.port), timeout=30):
        pass
    yield running, run_dir, example_copy
    running.stop()


@pytest.fixture()
def page(browser: Any, served: tuple[Running, Path, Path]) -> Iterator[Any]:
    running = served[0]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    pg.set_default_timeout(60_000)
    pg.goto(running.url)
    pg.wait_for_selector(".studio-bar")
    yield pg
    context.close()
    assert errors == [], errors


def job_of(pg: Any, button: str) -> int:
    """Click a button that queues a job; the job's id, from the page's event log."""
    known = pg.evaluate("window.studioEvents.length")
    pg.click(button)
    pg.wait_for_function("(n) => window.studioEvents.slice(n).some((e) => e.kind === 'job')", arg=known)
    return pg.evaluate("(n) => window.studioEvents.slice(n).find((e) => e.kind === 'job').data.id", known)


def test_pick_in_the_page_is_recorded_and_shown(page: Any, served: tuple[Running, Path, Path]) -> None:
    run_dir = served[1]
    k = next(c["index"] for c in panel(run_dir, 2)["candidates"] if not c["chosen"])
    page.click("#inspect-2 > summary")
    page.click(f"#panel-2-candidate-{k} button.studio-pick")
    page.wait_for_selector(f"#panel-2-candidate-{k}.chosen")
    p = panel(run_dir, 2)
    assert p["chosen"] == k and p["picked_by"] == "author"
    assert page.is_visible("#panel-2 .pick-mark")  # the comic marks the panel picked
    assert page.text_content(f"#panel-2-candidate-{k} button.studio-pick") == "shown"
    assert page.is_visible("#inspect-2 .studio-panel")  # the inspector stayed open through the refresh


def test_caption_edit_shows_in_page_export_and_toml(page: Any, served: tuple[Running, Path, Path], tmp_path: Path) -> None:
    _, run_dir, story = served
    original = story.read_text(encoding="utf-8")

    def export(name: str) -> list[bytes]:
        pages = tmp_path / name
        cmd = [sys.executable, "-m", "ipprompt", "story", "export", str(run_dir), "--pdf", str(tmp_path / f"{name}.pdf"), "--pages", str(pages), "--dpi", "72"]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        assert (tmp_path / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        return [p.read_bytes() for p in sorted(pages.glob("*.png"))]

    before = export("before")
    new = "The lamp was dark, and the sea was darker."
    page.click("#inspect-2 > summary")
    page.fill("#inspect-2 form.studio-edit input[name=caption]", new)
    page.click("#inspect-2 form.studio-edit button[type=submit]")
    page.wait_for_function("(t) => document.querySelector('#panel-2 .narration')?.textContent === t", arg=new)
    # The story file: one line changed, every comment and the layout kept, a backup beside it.
    edited = story.read_text(encoding="utf-8")
    assert changed_lines(original, edited) == (['caption = "The old lighthouse stood dark. Its lamp had gone out."'], [f'caption = "{new}"'])
    assert comments(edited) == comments(original)
    assert [b.read_text(encoding="utf-8") for b in story.parent.glob("lighthouse.toml.bak-*")] == [original]
    # The export letters the new words: the page holding panel 2 changed, and only that page.
    after = export("after")
    assert len(after) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed == [1], changed
    from ipprompt.export.pages import make_book, page_spec
    from ipprompt.runfolder.manifest import read_manifest

    assert make_book(run_dir, read_manifest(run_dir), page_spec(dpi=72)).arts[1].caption == new


def test_reroll_keeps_the_old_image_in_history(page: Any, served: tuple[Running, Path, Path]) -> None:
    run_dir = served[1]
    old = (run_dir / "panels" / "01.png").read_bytes()
    src = page.get_attribute("#panel-1 .frame img", "src")
    page.click("#inspect-1 > summary")
    job = job_of(page, "#inspect-1 button[data-action=reroll]")
    page.wait_for_function(DONE, arg=job)
    assert page.evaluate(f"window.studioEvents.filter((e) => e.kind === 'job' && e.data.id === {job}).pop().data.state") == "done"
    assert any(h.read_bytes() == old for h in (run_dir / "history").glob("01-*.png"))
    assert panel(run_dir, 1)["reroll"] == 1
    page.wait_for_function("(old) => { const img = document.querySelector('#panel-1 .frame img'); return img !== null && img.getAttribute('src') !== old; }", arg=src)
    # The inspector lists it among the earlier images (the preview backend may draw a reroll with
    # the very same pixels: then it is marked "shown now" instead of offered to restore).
    page.wait_for_selector("#inspect-1 .studio-history li")
    if os.environ.get("IPPROMPT_SCREENSHOT"):
        page.click("#inspect-2 > summary")
        page.evaluate("document.querySelector('#inspect-1').scrollIntoView()")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(REPO / "docs" / "studio.png"))


def test_progress_events_arrive_while_a_run_goes_on(page: Any, served: tuple[Running, Path, Path]) -> None:
    run_dir = served[1]
    job = job_of(page, "button.studio-run")
    page.wait_for_function(DONE, arg=job)
    events = page.evaluate(f"window.studioEvents.filter((e) => e.data.job === {job} || (e.kind === 'job' && e.data.id === {job}))")
    states = [(i, e["data"]["state"]) for i, e in enumerate(events) if e["kind"] == "job"]
    running = next(i for i, s in states if s == "running")
    done = next(i for i, s in states if s == "done")
    during = [e for e in events[running:done] if e["kind"] != "job"]
    made = sorted({e["data"]["panel"] for e in during if e["kind"] == "panel_done" and not e["data"]["reused"]})
    assert made == [5, 6, 7, 8, 9, 10], [e["kind"] for e in during]
    assert any(e["kind"] == "progress" and e["data"]["candidates_done"] > 0 for e in during)
    assert all(p["status"] == "done" for p in [panel(run_dir, n) for n in range(1, 11)])
    assert "done" in page.text_content(".studio-progress")
    page.wait_for_function("() => document.querySelectorAll('article.panel').length === 10 && !document.querySelector('article.panel.pending')")
