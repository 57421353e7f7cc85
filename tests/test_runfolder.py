"""The run folder as the one writer of a run: takes never lost, folders claimed atomically, manifest
paths kept inside, damage rebuilt, corrupt panels remade, and a manifest whose cost per panel does
not grow with the panels. Preview-backend runs (no model) throughout.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from cli_helpers import run_cli
from ipprompt.backends.preview import PreviewBackend
from ipprompt.errors import IppromptError, ModelUnavailable
from ipprompt.images import ImageRejected
from ipprompt.pipeline.run import run_story
from ipprompt.runfolder.folder import RunFolder
from ipprompt.runfolder.manifest import (
    ManifestDamaged,
    ManifestFromOtherVersion,
    ManifestUnreadable,
    PanelEntry,
    RunManifest,
    read_manifest,
    write_manifest,
)
from ipprompt.runfolder.safepath import UnsafePath

QUICK = {"backend": "preview", "tile": 256, "candidates": 2, "keep": 2, "rounds": 0}


def seed_colour(seed: int) -> tuple[int, int, int]:
    digest = hashlib.sha256(str(seed).encode()).digest()
    return digest[0], digest[1], digest[2]


class SeedPreview(PreviewBackend):
    """The preview backend with the job's seed painted into the panel as a colour, so every take
    (every seed) has its own pixels; ``gate`` holds a take back until the test lets it go."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.gate = gate
        self.seeds: list[int] = []

    def start(self, job, on_step=None):  # type: ignore[no-untyped-def]
        if self.gate is not None:
            assert self.gate.wait(120)
        handle = super().start(job)
        x0, y0, _, _ = job.spec.box(job.spec.target)
        assert handle.image is not None
        handle.image.paste(seed_colour(job.seed), (x0, y0, x0 + 24, y0 + 24))
        self.seeds.append(job.seed)
        return handle


def take_colours(run: Path, number: int) -> list[tuple[int, int, int]]:
    """The seed colour of the panel image and of every image of the panel in history/."""
    files = [run / "panels" / f"{number:02d}.png", *sorted((run / "history").glob(f"{number:02d}-*.png"))]
    out = []
    for f in files:
        if f.is_file():
            with Image.open(f) as im:
                out.append(im.convert("RGB").getpixel((4, 4)))
    return out


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "error",
    [
        ManifestDamaged("m.json is damaged", "rebuild"),
        ManifestFromOtherVersion("format 9", "use 9"),
        ManifestUnreadable("cannot read", None),
        UnsafePath("panels[2].candidates[1].image leads outside", "hint"),
        ImageRejected("corrupt", "x.png"),
        ModelUnavailable("some/model", "generator", "--model"),
    ],
)
def test_error_kinds_survive_pickling(error: IppromptError) -> None:
    """Errors cross Ray by pickling: each arrives as its own class, with its message and hint."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert (back.message, back.hint, str(back)) == (error.message, error.hint, str(error))
    assert back.__dict__ == error.__dict__


# --------------------------------------------------------------------------- damage


def test_manifest_cut_inside_a_utf8_character_is_rebuilt(example_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_story(example_copy, out=out, panels="1-2", **QUICK)
    images = {n: (out / "panels" / f"{n:02d}.png").stat().st_mtime_ns for n in (1, 2)}
    data = (out / "manifest.json").read_bytes()
    cut = data[: data.index(b'"panels"')] + '"note": "phare \u00e9'.encode()[:-1]  # half of a two-byte character
    (out / "manifest.json").write_bytes(cut)
    again = run_story(example_copy, out=out, panels="1-2", **QUICK)
    assert again.reused == [1, 2] and again.generated == []
    assert {n: (out / "panels" / f"{n:02d}.png").stat().st_mtime_ns for n in (1, 2)} == images
    (kept,) = out.glob("manifest.json.damaged-*")
    assert kept.read_bytes() == cut, "the damaged file is kept as it was"


# --------------------------------------------------------------------------- claiming


def test_two_stories_racing_into_one_new_folder_one_wins(example_copy: Path, tmp_path: Path) -> None:
    other = example_copy.parent / "b" / "story.toml"
    other.parent.mkdir()
    shutil.copy(example_copy, other)
    out = tmp_path / "runs" / "story"
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def claim(name: str, story: Path) -> None:
        folder = RunFolder(out)
        barrier.wait()
        try:
            folder.claim(story)
            outcome[name] = "claimed"
        except IppromptError as exc:
            outcome[name] = exc
        finally:
            folder.release()

    threads = [threading.Thread(target=claim, args=(n, s)) for n, s in (("a", example_copy), ("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(map(type, outcome.values()), key=str) == sorted([str, IppromptError], key=str), outcome
    loser = next(v for v in outcome.values() if isinstance(v, IppromptError))
    assert "another story" in loser.message and loser.exit_code == 2
    winner = next(n for n, v in outcome.items() if v == "claimed")
    assert read_manifest(out).story.path == str((example_copy if winner == "a" else other).resolve())


# --------------------------------------------------------------------------- paths from the manifest


def _tamper_candidate(run: Path, number: int, index: int, image: str, where: str = "record") -> None:
    """Point a candidate's image elsewhere: in the panel's record (where its full entry lives), or
    in a whole format-2 manifest.json (an older run folder someone sent)."""
    if where == "manifest.json":
        manifest = {**read_manifest(run).model_dump(mode="json"), "format": 2}
        panel = next(p for p in manifest["panels"] if p["number"] == number)
        next(c for c in panel["candidates"] if c["index"] == index)["image"] = image
        (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        return
    record = run / "panels" / f"{number:02d}" / "panel.json"
    data = json.loads(record.read_text(encoding="utf-8"))
    for c in data["candidates"]:
        if c["index"] == index:
            c["image"] = image
    record.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize("where", ["record", "manifest.json"])
@pytest.mark.parametrize("bad", ["../../secret/private.png", "/etc/passwd", "LINK"])
def test_pick_never_copies_a_file_from_outside_the_run(
    example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str, where: str
) -> None:
    run = tmp_path / "a" / "b" / "run"
    run_story(example_copy, out=run, panels="2", **QUICK)
    secret = tmp_path / "a" / "secret" / "private.png"
    secret.parent.mkdir(parents=True)
    Image.new("RGB", (64, 64), (255, 0, 0)).save(secret)
    if bad == "LINK":
        os.symlink(secret, run / "panels" / "02" / "leak.png")
        bad = "panels/02/leak.png"
    entry = read_manifest(run).panel(2)
    assert entry is not None
    other = next(c for c in entry.candidates if c.index != entry.chosen)
    _tamper_candidate(run, 2, other.index, bad, where)
    before = (run / "panels" / "02.png").read_bytes()
    r = run_cli(capsys, "story", "pick", str(run), "2", str(other.index))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"panels[2].candidates[{other.index}].image" in r.stderr and "outside the run folder" in r.stderr
    assert (run / "panels" / "02.png").read_bytes() == before


def test_render_export_and_eval_never_read_outside_the_run(example_copy: Path, tmp_path: Path) -> None:
    from ipprompt.evaluate.report import _panel_image
    from ipprompt.export import export_run
    from ipprompt.storyboard.render import render_storyboard

    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="1-2", **QUICK)
    secret = tmp_path / "private.png"
    Image.new("RGB", (64, 64), (255, 0, 0)).save(secret)
    record = run / "panels" / "01" / "panel.json"
    data = json.loads(record.read_text(encoding="utf-8"))
    data["image"] = "../private.png"
    data["candidates"][0]["grid"] = str(secret)
    record.write_text(json.dumps(data), encoding="utf-8")

    html = render_storyboard(run, single_file=True).read_text(encoding="utf-8")
    import base64

    assert base64.b64encode(secret.read_bytes()).decode()[:200] not in html
    cbz = tmp_path / "out.cbz"
    result = export_run(run, cbz=cbz)
    assert 1 in result.damaged and "outside the run folder" in result.damaged[1]
    assert zipfile.ZipFile(cbz).namelist()
    panel = read_manifest(run).panel(1)
    assert panel is not None and panel.image == "../private.png"
    assert _panel_image(run, panel) is None, "eval skips it"
    with pytest.raises(UnsafePath, match="panels"):
        RunFolder(run).resolve(panel.image, "panels[1].image")


# --------------------------------------------------------------------------- read-only folders


def test_pick_in_a_read_only_run_folder_is_a_message(example_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import tempfile

    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="2", **QUICK)
    entry = read_manifest(run).panel(2)
    assert entry is not None
    # Tests run as root, who may write anywhere: refuse writes inside the run as a read-only
    # folder would (the lock file, temporary files), and say so through os.access.
    real_open, real_mkstemp, real_access = os.open, tempfile.mkstemp, os.access

    def inside(path: object) -> bool:
        return Path(str(path)).resolve().is_relative_to(run.resolve())

    def deny_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    def deny_mkstemp(*args, dir=None, **kwargs):  # type: ignore[no-untyped-def]
        if dir is not None and inside(dir):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(os, "open", deny_open)
    monkeypatch.setattr(tempfile, "mkstemp", deny_mkstemp)
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK and inside(p) else real_access(p, mode))

    other = next(c for c in entry.candidates if c.index != entry.chosen and c.finished)
    r = run_cli(capsys, "story", "pick", str(run), "2", str(other.index))
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "permission denied" in r.stderr.lower() and str(run) in r.stderr
    # Nothing to write: going back to the scorer's choice, which the panel shows already, still works.
    r = run_cli(capsys, "story", "pick", str(run), "2", "--auto")
    assert r.exit_code == 0, r.output
    r = run_cli(capsys, "story", "history", str(run), "2")
    assert r.exit_code == 0, r.output


# --------------------------------------------------------------------------- corrupt panels


def test_a_corrupt_panel_is_remade_and_kept_and_export_names_it(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="1-3", **QUICK)
    image = run / "panels" / "01.png"
    corrupt = image.read_bytes()[:200]
    image.write_bytes(corrupt)
    (run / "panels" / "03.png").unlink()

    r = run_cli(capsys, "story", "export", str(run), "--pdf", str(tmp_path / "book.pdf"))
    assert r.exit_code == 0, r.output
    assert "Panel 1: its image is corrupt" in r.stderr and "Panel 3: its image is missing" in r.stderr
    assert "Panel 2" not in r.stderr

    again = run_story(example_copy, out=run, panels="1-3", **QUICK)
    assert again.generated == [1, 3] and again.reused == [2]
    (damaged,) = (run / "history").glob("01-*-damaged.png")
    assert damaged.read_bytes() == corrupt, "the corrupt file is kept, never silently deleted"
    with Image.open(image) as im:
        im.load()


# --------------------------------------------------------------------------- takes


def test_reserved_rerolls_differ_across_processes(example_copy: Path, tmp_path: Path) -> None:
    import multiprocessing

    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="2", **QUICK)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        counts = pool.map(_reserve, [str(run)] * 8)
    assert sorted(counts) == list(range(1, 9)), "eight rerolls, eight different counts (seeds)"
    entry = read_manifest(run).panel(2)
    assert entry is not None and entry.rerolls_reserved == 8


def _reserve(run: str) -> int:
    return RunFolder(Path(run)).reserve_rerolls([2])[2]


def test_concurrent_rerolls_of_one_panel_lose_no_take(example_copy: Path, tmp_path: Path) -> None:
    """Run A rerolls panel 2 slowly; run B rerolls it meanwhile and finishes first."""
    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="2", backend_instance=SeedPreview(), **QUICK)
    gate = threading.Event()
    slow = SeedPreview(gate)
    errors: list[BaseException] = []

    def run_a() -> None:
        try:
            run_story(example_copy, out=run, panels="2", reroll=True, backend_instance=slow, **QUICK)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    a = threading.Thread(target=run_a)
    a.start()
    while not RunFolder(run).read() or read_manifest(run).panel(2).rerolls_reserved < 1:  # type: ignore[union-attr]
        a.join(0.05)
    fast = SeedPreview()
    b = run_story(example_copy, out=run, panels="2", reroll=True, backend_instance=fast, **QUICK)
    assert b.generated == [2]
    gate.set()
    a.join(120)
    assert not errors, errors
    assert len(set(slow.seeds)) == 1 and len(set(fast.seeds)) == 1 and slow.seeds[0] != fast.seeds[0], "two takes, two seeds"
    colours = take_colours(run, 2)
    assert {seed_colour(slow.seeds[0]), seed_colour(fast.seeds[0])} <= set(colours), "every take is in panels/ or history/"
    assert len(colours) == 3, "the original, A's and B's take"
    entry = read_manifest(run).panel(2)
    assert entry is not None and entry.done and entry.reroll == 2, "the newest reroll is shown; the count never drops"
    assert colours[0] == seed_colour(fast.seeds[0])


def test_a_picked_panel_is_never_replaced_silently(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="2", backend_instance=SeedPreview(), **QUICK)
    entry = read_manifest(run).panel(2)
    assert entry is not None
    other = next(c for c in entry.candidates if c.index != entry.chosen and c.finished)
    assert run_cli(capsys, "story", "pick", str(run), "2", str(other.index)).exit_code == 0
    picked = (run / "panels" / "02.png").read_bytes()
    run_story(example_copy, out=run, panels="2", force=True, backend_instance=SeedPreview(), **QUICK)
    assert any(p.read_bytes() == picked for p in (run / "history").glob("02-*.png")), "the author's pick went to history/"


# --------------------------------------------------------------------------- manifest layout


def test_manifest_holds_an_index_and_each_panel_its_record(example_copy: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_story(example_copy, out=run, panels="1-2", **QUICK)
    index = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert index["format"] == 3
    done = [p for p in index["panels"] if p["status"] == "done"]
    assert len(done) == 2 and all("candidates" not in p and p["record"] is True for p in done)
    full = read_manifest(run)
    panel = full.panel(1)
    assert panel is not None and panel.candidates and panel.mask
    # A candidate's prompt is stored once, as the panel's text; readers fall back to it.
    record = json.loads((run / "panels" / "01" / "panel.json").read_text(encoding="utf-8"))
    assert all(c["prompt"] is None for c in record["candidates"])
    assert panel.candidate_prompt(panel.candidates[0]) == panel.text
    # An older manifest (format 2: every entry inline, prompts copied) still loads as it is.
    old = {**full.model_dump(mode="json"), "format": 2}
    old["panels"][0]["candidates"][0]["prompt"] = "an older run's own prompt"
    (run / "manifest.json").write_text(json.dumps(old), encoding="utf-8")
    again = read_manifest(run).panel(1)
    assert again is not None and again.candidate_prompt(again.candidates[0]) == "an older run's own prompt"
    # ... and the next change converts it.
    RunFolder(run).update_panel(2, lambda e: e.model_copy(update={"seconds": 1.5}) if e else None)
    assert json.loads((run / "manifest.json").read_text(encoding="utf-8"))["format"] == 3
    converted = read_manifest(run).panel(1)
    assert converted is not None and converted.candidates[0].prompt == "an older run's own prompt"


def test_a_panel_update_reads_and_writes_only_that_panel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ipprompt.runfolder.store as store

    panels = [PanelEntry(number=n, status="done", key=f"k{n}", image=f"panels/{n:02d}.png", prompt=f"panel {n}") for n in range(1, 41)]
    write_manifest(tmp_path, RunManifest(panels=panels))
    reads: list[int] = []
    real = store.read_record_file
    monkeypatch.setattr(store, "read_record_file", lambda root, n: reads.append(n) or real(root, n))
    RunFolder(tmp_path).update_panel(7, lambda e: e.model_copy(update={"seconds": 2.0}) if e else None)
    assert reads == [7]
    assert read_manifest(tmp_path).totals.seconds == 2.0


# --------------------------------------------------------------------------- absurd sizes


def test_absurd_story_sizes_are_refused_with_the_limit(example_copy: Path) -> None:
    from ipprompt.story.loading import MAX_TEXT_CHARS, load_story

    text = example_copy.read_text(encoding="utf-8")
    long_style = example_copy.with_name("long.toml")
    long_style.write_text(text.replace('style = "', 'style = "' + "ink " * 2500, 1), encoding="utf-8")
    with pytest.raises(IppromptError) as err:
        load_story(long_style)
    assert "style: too long" in str(err.value) and f"at most {MAX_TEXT_CHARS}" in str(err.value)
    huge = example_copy.with_name("huge.toml")
    huge.write_text(text + "\n# " + "x" * 2**20 + "\n", encoding="utf-8")
    with pytest.raises(IppromptError, match="at most 1,048,576 bytes"):
        load_story(huge)
