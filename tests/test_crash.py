"""Crash test, as storage engines do it: kill a run at random moments, resume, check the folder.

A run is forked (modules already imported, so each start is quick), killed with SIGKILL after a
random delay, and the folder is checked: the manifest is valid, every panel it calls done has all
its files, and no panel that was done before the kill was made again. The next start must leave
no temporary file behind. The same loop with SIGINT checks the message and the exit code.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork and POSIX signals")

ARGS = ["--backend", "preview", "--tile", "256", "--candidates", "2", "--rounds", "0", "--panels", "1-6"]


def _start(story: Path, out: Path, log: Path) -> int:
    """Fork a child that runs the CLI exactly as the console script does; returns its pid."""
    from ipprompt.cli import app
    from ipprompt.cli.console import run_cli_errors

    pid = os.fork()
    if pid == 0:  # the child: stdout/stderr into the log, exit with the CLI's code
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - pytest replaced them
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            signal.signal(signal.SIGINT, signal.default_int_handler)
            code = run_cli_errors(app, ["story", "run", str(story), "--out", str(out), *ARGS])
        except BaseException:  # noqa: BLE001 - a child must never return into pytest
            code = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return pid


def _wait(pid: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the run did not end in time")


def _done_panels(out: Path) -> dict[int, tuple[int, int]]:
    """Panels the manifest calls done, with (inode, mtime) of their image; checks the manifest."""
    path = out / "manifest.json"
    if not path.exists():
        return {}
    json.loads(path.read_text(encoding="utf-8"))  # valid JSON after every kill
    from ipprompt.runfolder.manifest import read_manifest

    manifest = read_manifest(out).model_dump(mode="json")  # the index with every done panel's record
    done = {}
    for p in manifest["panels"]:
        if p["status"] != "done":
            continue
        files = [p["image"], p["mask"], *[c["grid"] for c in p["candidates"]], *[c["image"] for c in p["candidates"] if c["image"]]]
        missing = [f for f in files if not (out / f).is_file()]
        assert not missing, f"panel {p['number']} is done but lacks {missing}"
        st = (out / p["image"]).stat()
        done[p["number"]] = (st.st_ino, st.st_mtime_ns)
    return done


def _temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*.tmp")]


def _finish_and_check(story: Path, out: Path, log: Path) -> None:
    """A run to the end: it cleans what the kills left, keeps every done panel, makes the rest."""
    before = _done_panels(out)
    assert _wait(_start(story, out, log)) == 0, log.read_text()
    after = _done_panels(out)
    assert sorted(after) == [1, 2, 3, 4, 5, 6]
    assert all(after[n] == stamp for n, stamp in before.items()), "no finished panel is generated twice"
    assert _temporaries(out) == []


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_or_remakes_a_panel(example_copy: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    # How long a whole run takes on this machine: kills land anywhere in its first third.
    started = time.monotonic()
    assert _wait(_start(example_copy, tmp_path / "timing", log)) == 0, log.read_text()
    window = max(0.2, (time.monotonic() - started) / 3)
    rng = random.Random(20261127)
    folders = [tmp_path / "run-1"]
    kills = attempts = 0
    while kills < 24 and attempts < 100:
        out = folders[-1]
        attempts += 1
        before = _done_panels(out)
        pid = _start(example_copy, out, log)
        time.sleep(rng.uniform(0.0, window))
        os.kill(pid, signal.SIGKILL)
        kills += _wait(pid) == -signal.SIGKILL
        after = _done_panels(out)  # valid JSON; every done panel has all its files
        for number, stamp in before.items():
            assert after.get(number) == stamp, f"panel {number} was done before the kill and was made again"
        if len(after) == 6:  # this story is made: check it, then go on killing a fresh run
            _finish_and_check(example_copy, out, log)
            folders.append(tmp_path / f"run-{len(folders) + 1}")
    assert kills >= 20, f"only {kills} of {attempts} runs were killed mid-way"
    _finish_and_check(example_copy, folders[-1], log)


@pytest.mark.slow  # subprocesses: the whole suite runs it, the quick tier does not
def test_sigint_at_random_moments_says_how_to_resume(example_copy: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "log.txt"
    rng = random.Random(7)
    interrupted = 0
    for _ in range(8):
        before = _done_panels(out)
        pid = _start(example_copy, out, log)
        time.sleep(rng.uniform(0.3, 1.5))
        os.kill(pid, signal.SIGINT)
        code = _wait(pid)
        assert code in (0, 130), log.read_text()
        if code == 130:
            interrupted += 1
            assert "run the same command again to resume" in log.read_text(), log.read_text()
            assert "Traceback" not in log.read_text()
        after = _done_panels(out)
        assert all(after.get(n) == s for n, s in before.items())
    assert interrupted >= 1
    assert _wait(_start(example_copy, out, log)) == 0, log.read_text()
    assert sorted(_done_panels(out)) == [1, 2, 3, 4, 5, 6]


def _start_reroll(story: Path, out: Path, report: Path) -> int:
    """Fork a child that rerolls panel 2 with a backend that paints its seed into the panel; on
    success it writes the seed of the take it made to ``report``."""
    from test_runfolder import QUICK, SeedPreview

    from ipprompt.pipeline.run import run_story

    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            backend = SeedPreview()
            result = run_story(story, out=out, panels="2", reroll=True, backend_instance=backend, **QUICK)
            if result.generated != [2] or len(set(backend.seeds)) != 1:
                code = 3
            else:
                report.write_text(str(backend.seeds[0]))
        except BaseException:  # noqa: BLE001 - a child must never return into pytest
            code = 99
        os._exit(code)
    return pid


@pytest.mark.slow
def test_concurrent_rerolls_killed_at_random_keep_every_take(example_copy: Path, tmp_path: Path) -> None:
    """Rerolls of one panel in separate processes, three at a time, some killed at random points:
    every take a process reported made is in panels/ or history/, and no two made the same seed."""
    from test_runfolder import QUICK, SeedPreview, seed_colour, take_colours

    from ipprompt.pipeline.run import run_story

    out = tmp_path / "run"
    run_story(example_copy, out=out, panels="2", backend_instance=SeedPreview(), **QUICK)
    started = time.monotonic()
    pid = _start_reroll(example_copy, out, tmp_path / "timing.txt")
    assert _wait(pid) == 0
    window = max(0.3, time.monotonic() - started)
    rng = random.Random(20261201)
    reports: list[Path] = []
    killed = 0
    for round_no in range(5):
        children = []
        for i in range(3):
            report = tmp_path / f"take-{round_no}-{i}.txt"
            children.append((_start_reroll(example_copy, out, report), report))
        victims = rng.sample(range(3), rng.choice([1, 2]))
        time.sleep(rng.uniform(0.0, window))
        for i in victims:
            os.kill(children[i][0], signal.SIGKILL)
        for i, (pid, report) in enumerate(children):
            code = _wait(pid)
            killed += code == -signal.SIGKILL
            assert code in (0, -signal.SIGKILL), f"child exited {code}"
            if code == 0:
                reports.append(report)
        _done_panels(out)  # valid manifest; a done panel has all its files
    seeds = [int(r.read_text()) for r in [tmp_path / "timing.txt", *reports]]
    assert killed >= 3 and len(seeds) >= 4
    assert len(set(seeds)) == len(seeds), "concurrent rerolls make different takes"
    colours = set(take_colours(out, 2))
    lost = [s for s in seeds if seed_colour(s) not in colours]
    assert not lost, f"takes {lost} were made and reported but are neither in panels/ nor in history/"
