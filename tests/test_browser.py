"""The storyboard in a real browser: headless Chromium loads it from disk without a single error.

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe`` (JSON messages
separated by NUL bytes on file descriptors 3 and 4), so the test needs no Selenium, Playwright
or websocket client. What counts as a failure:

* console errors: ``Runtime.exceptionThrown`` (uncaught exceptions), ``Runtime.consoleAPICalled``
  of type error/assert, and ``Log.entryAdded`` at level error (where Chromium reports
  "Failed to load resource", blocked content and the like);
* failed loads: ``Network.loadingFailed`` events, and a probe evaluated in the page after load
  that loads every ``<img>`` source again with ``new Image()`` and reports those that fire
  ``onerror``. The probe is needed because the inspector's images are ``loading="lazy"`` inside
  closed ``<details>`` and are never fetched on their own; it lives in the test, not the page.

The test skips with a reason where no Chromium is installed (Debian: ``apt-get install chromium``;
or set IPPROMPT_CHROMIUM to a Chrome/Chromium binary).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from test_render import example_run_dir
from ipprompt.storyboard.render import render_storyboard

pytestmark = pytest.mark.slow  # a browser: the whole suite runs these, the quick tier does not

VIEWPORT = (1280, 900)
PHONE = (390, 844)
PROBE_IMAGES = """
(async () => {
  const images = Array.from(document.images);
  const failed = await Promise.all(images.map((img) => new Promise((resolve) => {
    const probe = new Image();
    probe.onload = () => resolve(probe.naturalWidth > 0 ? null : img.getAttribute("src"));
    probe.onerror = () => resolve(img.getAttribute("src"));
    probe.src = img.src;
  })));
  return JSON.stringify({count: images.length, failed: failed.filter(Boolean)});
})()
"""


def find_chromium() -> str | None:
    configured = os.environ.get("IPPROMPT_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """A headless Chromium and one page, over the DevTools protocol on a pair of pipes."""

    def __init__(self, executable: str, bash: str, profile: Path) -> None:
        # Chromium reads commands from fd 3 and writes replies to fd 4. The pipe ends are moved
        # above fd 10 and bash puts them at 3 and 4 for the browser (no preexec_fn, which is
        # unsafe with threads; dash cannot name fds above 9).
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        args = [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-extensions", "--no-first-run", "--no-default-browser-check",
            "--mute-audio", "--hide-scrollbars", f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank",
        ]
        self.proc = subprocess.Popen(
            [bash, "-c", f'exec "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-', "bash", *args],
            pass_fds=(child_r, child_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(child_r)
        os.close(child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    # -- protocol ---------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False, timeout: float = 15) -> dict[str, Any]:
        """Call a method (on the page unless ``browser``) and return its result; events are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 15) -> dict[str, Any]:
        for seen in self.events:
            if seen["method"] == event:
                return seen
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if "method" in message:
                self.events.append(message)
                if message["method"] == event:
                    return message

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive in the next ``seconds`` (late console messages)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                message = self._read_message(deadline)
                if "method" in message:
                    self.events.append(message)
        except TimeoutError:
            pass

    # -- the page ---------------------------------------------------------------------------
    def open_page(self, url: str, size: tuple[int, int]) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.resize(size)
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired", timeout=20)

    def resize(self, size: tuple[int, int]) -> None:
        width, height = size
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}, timeout=30)
        if "exceptionDetails" in result:
            raise AssertionError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, *, full_page: bool = False) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params |= {"captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}
        data = self.send("Page.captureScreenshot", params, timeout=30)["data"]
        path.write_bytes(base64.b64decode(data))

    def errors(self) -> list[str]:
        """Console errors and failed loads among the events seen so far."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append("uncaught: " + str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                found.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                found.append(f"load failed: {params.get('errorText')} ({params.get('type')})")
        return found

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True, timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this test started, by its id
            self.proc.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture()
def browser(tmp_path: Path) -> Any:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (Debian: `apt-get install chromium`, or set IPPROMPT_CHROMIUM)")
    bash = shutil.which("bash")
    if os.name != "posix" or bash is None:
        pytest.skip("the DevTools pipe is set up with POSIX file descriptors and bash")
    b = Browser(executable, bash, tmp_path / "chromium-profile")
    try:
        yield b
    finally:
        b.close()


def test_storyboard_loads_cleanly_in_chromium(browser: Browser, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = tmp_path / "run"
    shutil.copytree(example_run_dir(tmp_path_factory), run)
    page = render_storyboard(run)
    browser.open_page(page.resolve().as_uri(), VIEWPORT)

    probe = json.loads(browser.evaluate(PROBE_IMAGES))
    assert probe["count"] > 100
    assert probe["failed"] == [], "images that did not load"
    # The panels above the fold are real (eager) image loads: they must have decoded.
    art = browser.evaluate("Array.from(document.querySelectorAll('.frame img')).filter(i => i.complete && i.naturalWidth > 0).length")
    assert art == browser.evaluate("document.querySelectorAll('.frame img').length") > 0

    # The layout: three panels a row on a wide screen, one on a phone; the inspector is not printed.
    columns = "getComputedStyle(document.querySelector('.comic')).gridTemplateColumns.split(' ').length"
    assert browser.evaluate(columns) == 3
    browser.screenshot(tmp_path / "storyboard.png")
    browser.resize(PHONE)
    assert browser.evaluate(columns) == 1
    browser.resize(VIEWPORT)
    browser.send("Emulation.setEmulatedMedia", {"media": "print"})
    assert browser.evaluate("getComputedStyle(document.querySelector('.inspector')).display") == "none"
    assert browser.evaluate(columns) == 2
    browser.send("Emulation.setEmulatedMedia", {"media": ""})

    # The inspector: a "how it was made" link opens its panel's section; a click zooms an image.
    opened = browser.evaluate(
        "(async () => { const changed = new Promise((r) => addEventListener('hashchange', r, {once: true}));"
        " document.querySelector('.inspect-link').click(); await changed;"
        " return document.getElementById('inspect-1').open; })()"
    )
    assert opened is True
    zoomed = browser.evaluate(
        "(async () => { document.querySelector('#inspect-1 .candidate.chosen a.zoom').click();"
        " const img = document.querySelector('dialog.lightbox img'); await img.decode();"
        " return [document.querySelector('dialog.lightbox').open, img.naturalWidth]; })()"
    )
    assert zoomed[0] is True and zoomed[1] > 0
    browser.evaluate("document.querySelector('dialog.lightbox').close(); true")

    browser.drain(0.3)
    assert browser.errors() == []
    shot = tmp_path / "storyboard.png"
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_detector_sees_broken_images_and_script_errors(browser: Browser, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The checks above can fail: a lost file and a failing script (via a --templates override) are caught."""
    run = tmp_path / "run"
    shutil.copytree(example_run_dir(tmp_path_factory), run)
    mine = tmp_path / "templates"
    mine.mkdir()
    (mine / "storyboard.js").write_text("console.error('boom'); null.crash();", encoding="utf-8")
    page = render_storyboard(run, templates=mine)
    (run / "panels" / "01.png").unlink()  # after rendering, as if the folder lost a file
    browser.open_page(page.resolve().as_uri(), VIEWPORT)
    probe = json.loads(browser.evaluate(PROBE_IMAGES))
    assert probe["failed"] == ["panels/01.png"]
    browser.drain(0.3)
    errors = browser.errors()
    assert any("ERR_FILE_NOT_FOUND" in e or "01.png" in e for e in errors), errors
    assert any(e.startswith("console.error: boom") for e in errors), errors
    assert any(e.startswith("uncaught:") and "crash" in e for e in errors), errors


def test_single_file_page_works_on_its_own(browser: Browser, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The single-file page, moved away from its run folder, shows every image and zooms them."""
    run = tmp_path / "run"
    shutil.copytree(example_run_dir(tmp_path_factory), run)
    alone = tmp_path / "alone.html"
    shutil.move(render_storyboard(run, single_file=True), alone)
    shutil.rmtree(run)
    browser.open_page(alone.as_uri(), VIEWPORT)
    probe = json.loads(browser.evaluate(PROBE_IMAGES))
    assert probe["count"] > 100 and probe["failed"] == []
    zoomed = browser.evaluate(
        "(async () => { document.querySelector('.frame a.zoom').click();"
        " const img = document.querySelector('dialog.lightbox img'); await img.decode();"
        " return [document.querySelector('dialog.lightbox').open, img.naturalWidth]; })()"
    )
    assert zoomed[0] is True and zoomed[1] > 0
    browser.drain(0.3)
    assert browser.errors() == []
