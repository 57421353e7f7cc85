"""Never lose a panel: interrupted first panels, damaged manifests, shared folders, failed writes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from ipprompt.errors import IppromptError
from ipprompt.pipeline.run import run_story
from ipprompt.runfolder.manifest import read_manifest

QUICK = {"backend": "preview", "tile": 256, "candidates": 2, "rounds": 0}


def test_interrupted_first_panel_resumes(example_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import ipprompt.backends.factory
    import ipprompt.pipeline.execute
    import ipprompt.pipeline.runners.local

    out = tmp_path / "run"

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ipprompt.pipeline.execute, "execute", interrupted)
        r = run_cli(capsys, "story", "run", str(example_copy), "--out", str(out), "--panels", "1-2", "--backend", "preview", "--tile", "256")
    assert r.exit_code == 130
    manifest = json.loads((out / "manifest.json").read_text())  # the run said what it is before panel 1
    assert {p["status"] for p in manifest["panels"]} == {"pending"}
    r = run_cli(capsys, "story", "run", str(example_copy), "--out", str(out), "--panels", "1-2", "--backend", "preview", "--tile", "256")
    assert r.exit_code == 0, r.output
    assert [p["status"] for p in json.loads((out / "manifest.json").read_text())["panels"][:2]] == ["done", "done"]


@pytest.mark.parametrize("damage", ["truncated", "wrong shape", "not an object"])
def test_damaged_manifest_is_rebuilt_from_the_panels(example_copy: Path, tmp_path: Path, damage: str) -> None:
    out = tmp_path / "run"
    first = run_story(example_copy, out=out, panels="1-3", **QUICK)
    text = (out / "manifest.json").read_text()
    broken = {"truncated": text[: len(text) // 2], "wrong shape": json.dumps({"format": 2, "panels": {"1": "x"}}), "not an object": "[1, 2]"}[damage]
    (out / "manifest.json").write_text(broken)
    images = {n: (out / "panels" / f"{n:02d}.png").stat().st_mtime_ns for n in (1, 2, 3)}

    again = run_story(example_copy, out=out, panels="1-4", **QUICK)
    assert again.reused == [1, 2, 3] and again.generated == [4]
    assert {n: (out / "panels" / f"{n:02d}.png").stat().st_mtime_ns for n in (1, 2, 3)} == images
    kept = list(out.glob("manifest.json.damaged-*"))
    assert len(kept) == 1 and kept[0].read_text() == broken, "the damaged file is kept, never deleted"
    assert first.manifest.panel(1).key == again.manifest.panel(1).key


def test_damaged_manifest_message_never_suggests_deleting(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    run_story(example_copy, out=out, panels="1", **QUICK)
    (out / "manifest.json").write_text('{"format": 2, "panels": [')
    r = run_cli(capsys, "story", "render", str(out))
    assert r.exit_code == 2 and "damaged" in r.stderr and "Traceback" not in r.output
    assert "empty" not in r.stderr.lower() and "delete" not in r.stderr.lower()


def test_manifest_of_another_version_is_refused_not_rewritten(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": 99, "tool": "ipprompt 9.0", "panels": []}))
    r = run_cli(capsys, "story", "run", str(example_copy), "--out", str(out), "--backend", "preview")
    assert r.exit_code == 2 and "format 99" in r.stderr and "ipprompt 9.0" in r.stderr
    assert json.loads((out / "manifest.json").read_text())["format"] == 99


@pytest.mark.slow
def test_two_processes_on_one_folder_end_with_every_panel_done(example_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "shared"
    common = [sys.executable, "-m", "ipprompt", "story", "run", str(example_copy), "--out", str(out),
              "--backend", "preview", "--tile", "256", "--candidates", "2", "--rounds", "0"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([*common, "--panels", sel], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) for sel in ("1-5", "6-10")]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    manifest = read_manifest(out).model_dump(mode="json")  # the index and every panel's record
    assert [p["status"] for p in manifest["panels"]] == ["done"] * 10
    for p in manifest["panels"]:
        assert (out / p["image"]).is_file() and all((out / c["grid"]).is_file() for c in p["candidates"])
    again = run_story(example_copy, out=out, **QUICK)
    assert again.generated == [] and len(again.reused) == 10


def test_a_failed_write_names_the_file_and_leaves_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ipprompt import atomic

    target = tmp_path / "manifest.json"
    target.write_text("old")

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(IppromptError, match="disk is full") as caught:
        atomic.atomic_write_text(target, "new")
    assert str(target) in caught.value.message
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"], "no temporary file is left"


def test_full_disk_during_a_run_is_a_message(example_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from ipprompt import atomic

    out = tmp_path / "run"
    run_story(example_copy, out=out, panels="1", **QUICK)
    real = atomic.os.replace

    def full_for_panels(src, dst):  # type: ignore[no-untyped-def]
        if "panels" in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", full_for_panels)
    r = run_cli(capsys, "story", "run", str(example_copy), "--out", str(out), "--panels", "2", "--backend", "preview", "--tile", "256",
                "--candidates", "2", "--rounds", "0")
    assert r.exit_code == 2 and "disk is full" in r.stderr and "panels" in r.stderr and "Traceback" not in r.output
    monkeypatch.undo()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["panels"][0]["status"] == "done" and manifest["panels"][1]["status"] == "pending"


def test_read_only_run_folder_is_a_message(example_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import ipprompt.runfolder.folder

    out = tmp_path / "run"
    run_story(example_copy, out=out, panels="1", **QUICK)
    real_access = os.access
    # Tests run as root, who may write anywhere: say the folder is read-only as a user would see it.
    monkeypatch.setattr(ipprompt.runfolder.folder.os, "access", lambda p, mode: False if Path(p) == out and mode == os.W_OK else real_access(p, mode))
    r = run_cli(capsys, "story", "run", str(example_copy), "--out", str(out), "--backend", "preview")
    assert r.exit_code == 2 and "read-only" in r.stderr and str(out) in r.stderr and "Traceback" not in r.output


def test_cleanup_spares_a_foreign_folder_and_a_live_neighbour(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipprompt.runfolder.lock import ActiveRun

    # A mistyped --out: refused before anything in it is touched, hidden .tmp files included.
    foreign = tmp_path / "mine"
    (foreign / "p" / "b").mkdir(parents=True)
    (foreign / "notes.txt").write_text("x")
    (foreign / "p" / "b" / ".session.tmp").write_text("d")
    r = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--out", str(foreign))
    assert r.exit_code == 2 and (foreign / "p" / "b" / ".session.tmp").read_text() == "d"

    # A run folder another live process is writing into: its temporary files stay.
    out = tmp_path / "run"
    run_story(example_copy, out=out, panels="1", **QUICK)
    in_flight = out / "panels" / "01" / ".cand-0.png.ab12cd34.tmp"
    in_flight.write_bytes(b"half")
    neighbour = ActiveRun(out)
    neighbour.enter()
    try:
        run_story(example_copy, out=out, panels="2", **QUICK)
        assert in_flight.exists(), "a live neighbour's temporary file is not stale"
    finally:
        neighbour.leave()
    run_story(example_copy, out=out, panels="2", **QUICK)
    assert not in_flight.exists(), "alone on the folder, leftovers are cleaned"


def test_an_interrupted_reroll_keeps_its_new_seed(example_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ipprompt.backends.factory
    import ipprompt.pipeline.execute
    import ipprompt.pipeline.runners.local

    out = tmp_path / "run"
    run_story(example_copy, out=out, panels="3", **QUICK)
    first = run_story(example_copy, out=out, panels="3", reroll=True, **QUICK).manifest.panel(3)
    assert first is not None and first.reroll == 1

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ipprompt.pipeline.execute, "execute", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_story(example_copy, out=out, panels="3", reroll=True, **QUICK)
    plain = run_story(example_copy, out=out, panels="3", **QUICK).manifest.panel(3)
    assert plain is not None and plain.reroll == 2 and plain.seed != first.seed, "never back to a rejected take"


def test_a_panel_killed_between_its_record_and_the_manifest_is_kept(example_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_story(example_copy, out=out, panels="1", **QUICK)
    image = (out / "panels" / "01.png").stat().st_mtime_ns
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["panels"][0] = {"number": 1, "status": "pending", "prompt": manifest["panels"][0]["prompt"]}
    (out / "manifest.json").write_text(json.dumps(manifest))  # as if killed before the manifest said "done"
    again = run_story(example_copy, out=out, panels="1", **QUICK)
    assert again.reused == [1] and again.generated == []
    assert (out / "panels" / "01.png").stat().st_mtime_ns == image
