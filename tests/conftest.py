"""Shared fixtures: tiny random-weight models saved to a session folder, loaded as real ones are."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Tests never touch the network: models come from folders the fixtures write.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REPO = Path(__file__).resolve().parent.parent
STORIES = REPO / "stories"
EXAMPLE_STORY = STORIES / "lighthouse.toml"
EXAMPLE_THEME = STORIES / "themes" / "lighthouse"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own IPPROMPT_HOME so named themes never leak between tests or users."""
    home = tmp_path_factory.mktemp("ipprompt-home")
    monkeypatch.setenv("IPPROMPT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FluxFillPipeline saved with save_pretrained (real classes, random weights)."""
    from ipprompt.testing import build_tiny_flux_fill

    return build_tiny_flux_fill(tmp_path_factory.mktemp("models") / "tiny-flux-fill")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIPModel + CLIPProcessor saved with save_pretrained."""
    from ipprompt.testing import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture()
def example_copy(tmp_path: Path) -> Path:
    """A writable copy of stories/ (the example story and its theme); returns the story path."""
    dest = tmp_path / "stories"
    shutil.copytree(STORIES, dest, ignore=shutil.ignore_patterns("index.sqlite*", "__pycache__"))
    return dest / "lighthouse.toml"
