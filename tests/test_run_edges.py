"""Edge cases a user meets: odd text, edits between runs, Ctrl-C, out of memory, bad options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_cli
from ipprompt.pipeline.run import run_story


def test_brackets_in_user_text_are_not_markup(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = example_copy.read_text()
    text = text.replace('title = "The Lighthouse Keeper"', 'title = "Fish [/b] tale [characters.x]"', 1)
    first_prompt = text.split('prompt = "', 1)[1].split('"', 1)[0]
    text = text.replace(first_prompt, "the sign reads [/b] [bold]", 1)
    example_copy.write_text(text)
    check = run_cli(capsys, "story", "check", str(example_copy))
    assert check.exit_code == 0, check.output
    assert "Fish [/b] tale [characters.x]" in check.stdout
    out = tmp_path / "run"
    result = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--panels", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    bad = example_copy.with_name("bad.toml")
    bad.write_text(text.replace('characters = ["mira"]', 'characters = ["[/x]"]', 1))
    result = run_cli(capsys, "story", "check", str(bad))
    assert result.exit_code == 2 and "[/x]" in result.stderr and "Traceback" not in result.output


def test_kept_panels_show_edited_captions_and_names(example_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = run_story(example_copy, out=out, panels="1", backend="preview", candidates=2, rounds=0)
    old_caption = first.manifest.panels[0].caption
    example_copy.write_text(example_copy.read_text().replace(old_caption, "A brand new caption.", 1).replace('name = "Mira"', 'name = "Mirabel"', 1))
    second = run_story(example_copy, out=out, panels="1", backend="preview", candidates=2, rounds=0)
    assert second.reused == [1]
    panel = second.manifest.panels[0]
    assert panel.caption == "A brand new caption."
    assert {d.name for d in panel.dialogue} == {"Mirabel"}
    assert "A brand new caption." in (out / "storyboard.html").read_text()


def test_ctrl_c_says_how_to_resume(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import ipprompt.backends.factory
    import ipprompt.pipeline.execute
    import ipprompt.pipeline.runners.local

    def interrupted(self, jobs, force=False, remake_picked=False):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(ipprompt.pipeline.runners.local.LocalRunner, "run", interrupted)
    result = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--out", str(tmp_path / "r"))
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.stderr


def test_interrupted_regeneration_leaves_a_pending_panel(example_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    run_story(example_copy, out=out, panels="1", backend="preview", candidates=2, rounds=0)
    import ipprompt.backends.factory
    import ipprompt.pipeline.execute
    import ipprompt.pipeline.runners.local

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(ipprompt.pipeline.execute, "execute", boom)
    with pytest.raises(KeyboardInterrupt):
        run_story(example_copy, out=out, panels="1", backend="preview", candidates=2, rounds=0, force=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["panels"][0]["status"] == "pending"
    assert len(list((out / "history").glob("01-*.png"))) == 1


@pytest.mark.parametrize("where", ["load", "generate"])
def test_out_of_memory_is_a_clear_error(
    where: str, example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import ipprompt.dvp.search
    import ipprompt.backends.factory
    import ipprompt.pipeline.execute
    import ipprompt.pipeline.runners.local

    def oom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    if where == "load":
        monkeypatch.setattr(ipprompt.backends.factory, "create_backend", oom)
    else:
        monkeypatch.setattr(ipprompt.dvp.search.CandidateSearch, "run", oom)
    result = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--panels", "1", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "ran out of memory" in result.stderr and "--offload model" in result.stderr and "Traceback" not in result.output


def test_check_refuses_a_corrupt_pinned_ref(example_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (example_copy.parent / "refs" / "mira.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run_cli(capsys, "story", "check", str(example_copy))
    assert result.exit_code == 2 and "not a readable image" in result.stderr and "mira.png" in result.stderr


def test_reversed_panel_range(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--panels", "3-1", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "reversed" in result.stderr and "1-3" in result.stderr


def test_missing_local_encoder_folder_is_named(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipprompt.encoders.clip import ClipEncoder
    from ipprompt.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="does not exist"):
        ClipEncoder.load(str(tmp_path / "nonexist" / "clip"))


def test_doctor_finds_a_cached_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "hub" / "models--org--pipe" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "model_index.json").write_text("{}")
    (tmp_path / "hub" / "models--org--pipe" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--pipe" / "refs" / "main").write_text("abc")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    from ipprompt.backends.factory import model_available_locally

    assert model_available_locally("org/pipe")
    assert not model_available_locally("org/other")


def test_corrupt_theme_image_is_named_and_skipped(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (example_copy.parent / "themes" / "lighthouse" / "broken.png").write_bytes(b"not a png at all")
    result = run_cli(capsys, "story", "run", str(example_copy), "--backend", "preview", "--panels", "1", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "broken.png" in result.output and "Traceback" not in result.output
