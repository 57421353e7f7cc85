"""A `story run` from the command line and a studio reroll on one run folder at the same time lose nothing.

The CLI runs in its own process (as an author would start it in a terminal); the studio runs here.
Every panel image the studio commits is recorded, and afterwards each must still exist, shown or in
``history/``, as must every image the folder held before. Two ways: the studio waiting for the CLI
(what it does: a run on the folder goes first), and both truly at once (the wait switched off),
where the run folder's lock and history must keep both processes' images.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the studio extra is not installed (pip install 'ipprompt[studio]')")

from ipprompt.images import open_image  # noqa: E402
from ipprompt.runfolder.folder import RunFolder  # noqa: E402
from ipprompt.studio import jobs as jobs_module  # noqa: E402
from ipprompt.studio.actions import Studio  # noqa: E402
from studio_helpers import OPTIONS, make_run, manifest, panel  # noqa: E402


def pixels(path: Path) -> np.ndarray:
    return np.asarray(open_image(path).convert("RGB"))


def cli_run(story: Path, run_dir: Path) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "ipprompt", "story", "run", str(story), "--out", str(run_dir)]
    for key, value in OPTIONS.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("wait", [True, False], ids=["studio-waits", "both-at-once"])
def test_cli_run_and_studio_reroll_lose_nothing(example_copy: Path, monkeypatch: pytest.MonkeyPatch, wait: bool) -> None:
    run_dir = make_run(example_copy, panels="1-3")
    before = {n: pixels(run_dir / "panels" / f"{n:02d}.png") for n in (1, 2, 3)}
    committed: list[tuple[int, np.ndarray]] = []
    original = RunFolder.commit

    def recording(self: RunFolder, result):  # type: ignore[no-untyped-def]
        # Every panel the studio makes is committed here (the CLI is another process).
        committed.append((result.job.number, np.asarray(result.search.image.convert("RGB")).copy()))
        return original(self, result)

    monkeypatch.setattr(RunFolder, "commit", recording)
    if not wait:
        monkeypatch.setattr(jobs_module, "folder_busy", lambda root: False)
    studio = Studio(run_dir, example_copy, run_options=OPTIONS)
    proc = cli_run(example_copy, run_dir)
    try:
        deadline = time.monotonic() + 60
        while not jobs_module.folder_busy(run_dir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # Panel 2 was made before; panel 5 is one the CLI is making now.
        r2, r5 = studio.reroll(2).job, studio.reroll(5).job
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        assert studio.queue.wait_idle(300)
        assert r2 is not None and r5 is not None and r2.state == r5.state == "done", (r2.message, r5.message)
    finally:
        studio.close()
        if proc.poll() is None:
            proc.kill()
    m = manifest(run_dir)
    assert [p["status"] for p in m["panels"]] == ["done"] * 10
    kept = {n: [pixels(run_dir / "panels" / f"{n:02d}.png"), *map(pixels, sorted((run_dir / "history").glob(f"{n:02d}-*.png")))] for n in range(1, 11)}

    def present(number: int, image: np.ndarray) -> bool:
        return any(k.shape == image.shape and np.array_equal(k, image) for k in kept[number])

    for n, image in before.items():
        assert present(n, image), f"panel {n}'s image from before is gone"
    assert committed, "the studio committed nothing"
    for n, image in committed:
        assert present(n, image), f"an image the studio made for panel {n} is gone"
    # Panel 5 had no image before. Asked while the CLI had not made it yet, the studio makes it
    # (no reroll) and keeps what the CLI made; asked after, it rerolls it: the CLI's image goes to history.
    if r5.kind == "reroll":
        assert len(list((run_dir / "history").glob("05-*.png"))) >= 1
    if wait:  # the studio went after the CLI: what it was asked stands
        assert panel(run_dir, 2)["reroll"] == 1 and panel(run_dir, 5)["reroll"] == (1 if r5.kind == "reroll" else 0)
