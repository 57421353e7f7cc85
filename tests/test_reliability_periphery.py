"""Reliability round 3, the periphery: hostile inputs around a run end as messages, never tracebacks.

A theme.toml nested 50,000 deep, symlink loops for --out and the story, a decompression bomb in
panels/, a byte-order mark in theme.toml (issue 19, items 6 and 12).
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from cli_helpers import run_cli
from conftest import STORIES

TOO_DEEP = "x = " + "[" * 50_000 + "]" * 50_000 + "\n"


def bomb_png(path: Path, side: int = 20_000) -> Path:
    """A valid 1-bit PNG of side x side pixels in ~50 KB: Pillow calls it a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A preview run of panels 1-2 at 256 px tiles (read-only: copy it to change it)."""
    from ipprompt.pipeline.run import run_story

    work = tmp_path_factory.mktemp("periphery-run")
    shutil.copytree(STORIES, work / "stories", ignore=shutil.ignore_patterns("index.sqlite*", "__pycache__"))
    out = work / "run"
    run_story(work / "stories" / "lighthouse.toml", out=out, backend="preview", tile=256, candidates=2, rounds=0, panels="1-2")
    return out


@pytest.fixture()
def bombed_run(small_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    bomb_png(run / "panels" / "01.png")
    return run


def assert_message(result, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


# --------------------------------------------------------------------------- theme.toml


def test_theme_toml_nested_50000_deep_is_a_message_in_theme_show(capsys: pytest.CaptureFixture[str], example_copy: Path) -> None:
    theme = example_copy.parent / "themes" / "lighthouse"
    (theme / "theme.toml").write_text(TOO_DEEP, encoding="utf-8")
    assert_message(run_cli(capsys, "theme", "show", str(theme)), "theme.toml", "too deeply")


def test_theme_toml_nested_50000_deep_is_a_message_in_story_run(capsys: pytest.CaptureFixture[str], example_copy: Path) -> None:
    (example_copy.parent / "themes" / "lighthouse" / "theme.toml").write_text(TOO_DEEP, encoding="utf-8")
    result = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--panels", "1", "--tile", "256",
                     "--out", str(example_copy.parent / "run"))
    assert_message(result, "theme.toml", "too deeply")


def test_theme_toml_with_a_byte_order_mark_is_read(capsys: pytest.CaptureFixture[str], example_copy: Path) -> None:
    theme = example_copy.parent / "themes" / "lighthouse"
    (theme / "theme.toml").write_bytes('\ufeffname = "Lighthouse BOM"\ndescription = "from Notepad"\n'.encode("utf-8"))
    result = run_cli(capsys, "theme", "show", str(theme))
    assert result.exit_code == 0, result.output
    assert "Lighthouse BOM" in result.stdout and "from Notepad" in result.stdout


# --------------------------------------------------------------------------- symlink loops


def test_out_that_is_a_symlink_loop_is_a_message(capsys: pytest.CaptureFixture[str], example_copy: Path, tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    os.symlink(loop.name, loop)
    for out in (loop, loop / "sub"):
        result = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--panels", "1", "--out", str(out))
        assert_message(result, "symbolic link loop", str(loop))


def test_story_path_that_is_a_symlink_loop_is_a_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    story = tmp_path / "story.toml"
    os.symlink(story.name, story)
    for command in ("check", "run"):
        assert_message(run_cli(capsys, "story", command, str(story)), "symbolic link loop", "story.toml")


def test_os_errors_we_cannot_explain_keep_their_traceback() -> None:
    """The safety net names the user's disk problems only; anything else is a bug and stays loud."""
    import errno

    from ipprompt.errors import classify

    assert classify(OSError(errno.EIO, "I/O error", "/nonexistent/x")) is None
    full = classify(OSError(errno.ENOSPC, "No space left on device", "/tmp/x"))
    assert full is not None and "disk is full" in full.message


# --------------------------------------------------------------------------- decompression bombs


def test_bomb_in_panels_is_a_message_in_render_single_file(capsys: pytest.CaptureFixture[str], bombed_run: Path) -> None:
    result = run_cli(capsys, "story", "render", str(bombed_run), "--single-file")
    assert_message(result, "01.png", "too large")


def test_bomb_in_panels_is_a_message_in_eval(capsys: pytest.CaptureFixture[str], bombed_run: Path, tiny_clip_dir: Path,
                                             tiny_dino_dir: Path) -> None:
    result = run_cli(capsys, "eval", str(bombed_run), "--encoder", str(tiny_clip_dir), "--dino", str(tiny_dino_dir))
    assert_message(result, "Panel 1", "01.png", "too large")


def test_bomb_in_panels_is_never_decoded_by_export(bombed_run: Path) -> None:
    from ipprompt.export.pages import open_panel

    assert open_panel(bombed_run / "panels" / "01.png") is None
    assert open_panel(bombed_run / "panels" / "02.png") is not None


@pytest.fixture(scope="session")
def tiny_dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ipprompt.testing import build_tiny_dinov2

    return build_tiny_dinov2(tmp_path_factory.mktemp("models") / "tiny-dinov2-periphery")


# --------------------------------------------------------------------------- control characters (item 11)

HOSTILE = "\\u001b]0;pwned\\u0007 \\u001b[2J \\u009b31m NUL\\u0000end"


def hostile_story(story: Path) -> Path:
    """The example story with escape sequences and a NUL in its title and first panel's prompt."""
    import re

    text = story.read_text(encoding="utf-8")
    text = re.sub(r'^title = "(.*?)"', lambda m: f'title = "{m.group(1)} {HOSTILE}"', text, count=1, flags=re.M)
    text = re.sub(r'^prompt = "(.*?)"', lambda m: f'prompt = "{m.group(1)} {HOSTILE}"', text, count=1, flags=re.M)
    story.write_text(text, encoding="utf-8")
    return story


def test_escape_sequences_in_story_text_never_reach_the_terminal_or_the_page(
    capsys: pytest.CaptureFixture[str], example_copy: Path
) -> None:
    from ipprompt.story.loading import load_story

    story = hostile_story(example_copy)
    assert "\x1b]0;pwned" in load_story(story).title  # the story really carries them
    checked = run_cli(capsys, "story", "check", str(story))
    assert checked.exit_code == 0, checked.output
    out = example_copy.parent / "run"
    ran = run_cli(capsys, "story", "run", str(story), "--backend", "preview", "--panels", "1", "--tile", "256", "--out", str(out))
    assert ran.exit_code == 0, ran.output
    for result in (checked, ran):
        assert "pwned" in result.output and "NUL" in result.output
        assert not any(ch in result.output for ch in "\x1b\x00\x07\x9b"), repr(result.output[:400])
    page = (out / "storyboard.html").read_text(encoding="utf-8")
    assert "pwned" in page and "NUL\ufffdend" in page
    assert not any(ch in page for ch in "\x00\x1b\x07\x9b")
    rendered = run_cli(capsys, "story", "render", str(out), "--single-file")
    assert rendered.exit_code == 0, rendered.output
    assert "\x00" not in (out / "storyboard-single.html").read_text(encoding="utf-8")


def test_strip_controls_keeps_text_tabs_and_newlines() -> None:
    from markupsafe import Markup

    from ipprompt.story.textclean import strip_controls

    assert strip_controls("a\tb\nc é 漢") == "a\tb\nc é 漢"
    assert strip_controls("x\x1b[2Jy\r\n") == "x\ufffd[2Jy\n"
    assert isinstance(strip_controls(Markup("<b>\x00</b>")), Markup)


# --------------------------------------------------------------------------- also (theme add, doctor, search, deltas)


@pytest.mark.parametrize("bad", ["missing", "corrupt"])
def test_theme_add_with_only_bad_paths_creates_no_theme(capsys: pytest.CaptureFixture[str], tmp_path: Path, bad: str) -> None:
    from ipprompt.paths import themes_home

    path = tmp_path / "nope.png"
    if bad == "corrupt":
        path.write_text("not a picture")
    result = run_cli(capsys, "theme", "add", "fresh", str(path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "No theme created" in result.stderr
    assert not (themes_home() / "fresh").exists()
    assert "fresh" not in run_cli(capsys, "theme", "list").stdout


def test_doctor_names_the_compute_dtype_this_machine_uses(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("COLUMNS", "200")
    result = run_cli(capsys, "doctor")
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.stdout.splitlines() if "--quantize fp8 here" in line]
    if torch.cuda.is_available():
        assert "bf16 compute" in line or "torchao" in line
    else:
        assert "float32 compute" in line and "bf16" not in line and "model's dtype" not in line


def test_steps_that_leave_no_rung_are_called_exhaustive_everywhere(
    capsys: pytest.CaptureFixture[str], example_copy: Path, tiny_clip_dir: Path, tiny_dino_dir: Path
) -> None:
    from ipprompt.evaluate.report import evaluate_run, load_eval_encoders

    # At 2 steps no prediction before the last step reaches σ 0.95: no rung, every candidate finishes.
    args = ["--backend", "preview", "--panels", "1", "--tile", "256", "--steps", "2"]
    out = example_copy.parent / "run"
    dry = run_cli(capsys, "story", "run", str(example_copy), *args, "--dry-run")
    assert dry.exit_code == 0 and "exhaustive search" in " ".join(dry.stdout.split()), dry.output
    made = run_cli(capsys, "story", "run", str(example_copy), *args, "--out", str(out))
    assert made.exit_code == 0, made.output
    page = (out / "storyboard.html").read_text(encoding="utf-8")
    assert "<dt>Search</dt><dd>exhaustive" in page and "<dt>Search</dt><dd>pruned" not in page
    clip, dino = load_eval_encoders(str(tiny_clip_dir), str(tiny_dino_dir), device="cpu")
    evaluated = evaluate_run(out, clip, dino)
    assert evaluated.cost.search == "exhaustive" and {p.search for p in evaluated.panels} == {"exhaustive"}


def test_search_label_keeps_real_pruning_and_old_manifests() -> None:
    from ipprompt.dvp.pruning import search_label

    assert search_label({"search": "pruned", "steps": 50, "preview_step": 6}) == "pruned"
    assert search_label({"search": "pruned", "steps": 6, "preview_step": 6}) == "exhaustive"
    assert search_label({"search": "exhaustive", "steps": 50, "preview_step": 6}) == "exhaustive"
    assert search_label({"search": "pruned"}) == "pruned"  # nothing made yet: the settings as they are
    assert search_label({"search": "pruned", "steps": 28}, [{"step": 8}]) == "pruned"
    assert search_label({"search": "pruned", "steps": 2}, []) == "exhaustive"
    assert search_label({"search": "exhaustive", "steps": 28}, []) == "exhaustive"


def test_deltas_have_units_and_sane_precision() -> None:
    from ipprompt.evaluate.deltas import format_delta

    assert format_delta(492.736, 1300.0, "seconds") == "+492.7 s (+38%)"
    assert format_delta(-3.25, 100.0, "seconds") == "−3.2 s (−3.2%)"
    assert format_delta(12, 104, "nfe") == "+12 (+12%)"
    assert format_delta(2**30, 20 * 2**30, "peak_gpu_bytes") == "+1.0 GiB (+5.0%)"
    assert format_delta(0.0123456, 0.31, "clip_t") == "+0.012"
    assert format_delta(5.0, 0, "seconds") == "+5.0 s"  # no percentage of nothing
    assert format_delta(None, 1.0, "seconds") == "—"


def test_eval_page_prints_deltas_with_units(capsys: pytest.CaptureFixture[str], small_run: Path, tmp_path: Path,
                                            tiny_clip_dir: Path, tiny_dino_dir: Path) -> None:
    import json

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(small_run, a)
    shutil.copytree(small_run, b)
    record = b / "panels" / "01" / "panel.json"  # a panel's own record is what the run folder reads
    panel = json.loads(record.read_text(encoding="utf-8"))
    panel["seconds"] += 492.736
    record.write_text(json.dumps(panel), encoding="utf-8")
    page = tmp_path / "compare.html"
    result = run_cli(capsys, "eval", str(a), str(b), "--encoder", str(tiny_clip_dir), "--dino", str(tiny_dino_dir),
                     "--html", str(page), "--no-save")
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert "+492.7 s (" in html and "+492.736" not in html
