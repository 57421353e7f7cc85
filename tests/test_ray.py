"""Runs on Ray: same panels as a local run, continuity chains, a worker killed mid-panel, options.

One small local Ray instance (2 CPUs) serves the whole module; ``--ray local`` joins it because a
process that already started Ray keeps it. Each worker gets one CPU, so PyTorch computes with one
thread there; the local runs it is compared with use one thread too (on the CPU, PyTorch's sums
depend on the thread count in the last bit, which can move a pixel by one level).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from ipprompt.progress import SilentProgress, WorkerState
from ipprompt.pipeline.runners.ray_runner import plan_workers
from ipprompt.pipeline.run import run_story
from ipprompt.runfolder.folder import RunFolder

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed (optional extra: pip install 'ipprompt[ray]')"
)
FAST = ["--tile", "256", "--steps", "2", "--candidates", "2", "--rounds", "0"]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Local runs compute as a one-CPU Ray worker does."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def same_pixels(a: Path, b: Path, numbers: range) -> None:
    for n in numbers:
        left = np.asarray(Image.open(a / "panels" / f"{n:02d}.png").convert("RGB"))
        right = np.asarray(Image.open(b / "panels" / f"{n:02d}.png").convert("RGB"))
        assert np.array_equal(left, right), f"panel {n} differs"


def done_panels(out: Path) -> list[int]:
    manifest = json.loads((out / "manifest.json").read_text())
    return [p["number"] for p in manifest["panels"] if p["status"] == "done"]


@needs_ray
@pytest.mark.slow
def test_ray_run_is_pixel_identical_to_a_local_run(
    ray_cluster: None, one_thread: None, example_copy: Path, tiny_flux_dir: Path, tiny_clip_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["story", "run", str(example_copy), "--model", str(tiny_flux_dir), "--encoder", str(tiny_clip_dir), *FAST, "--panels", "1-4"]
    local = run_cli(capsys, *args, "--out", str(tmp_path / "local"))
    assert local.exit_code == 0, local.output
    on_ray = run_cli(capsys, *args, "--out", str(tmp_path / "ray"), "--ray", "local", "--workers", "2")
    assert on_ray.exit_code == 0, on_ray.output
    assert done_panels(tmp_path / "ray") == [1, 2, 3, 4]
    same_pixels(tmp_path / "local", tmp_path / "ray", range(1, 5))
    keys = [[p["key"] for p in json.loads((tmp_path / d / "manifest.json").read_text())["panels"]] for d in ("local", "ray")]
    assert keys[0] == keys[1]
    again = run_cli(capsys, *args, "--out", str(tmp_path / "ray"), "--ray", "local", "--workers", "2")
    assert again.exit_code == 0 and "made 0, kept 4" in again.output  # resumes like a local run


@needs_ray
@pytest.mark.slow
def test_ray_continuity_chains_panels(ray_cluster: None, one_thread: None, example_copy: Path, tiny_flux_dir: Path, tmp_path: Path) -> None:
    opts = dict(panels="1-3", model=str(tiny_flux_dir), encoder="no-such-local-encoder", continuity=True, grid=2, tile=256, steps=2, candidates=2, rounds=0)
    local = run_story(example_copy, out=tmp_path / "local", **opts)
    on_ray = run_story(example_copy, out=tmp_path / "ray", ray="local", workers=2, **opts)
    assert on_ray.generated == [1, 2, 3]
    for panel in on_ray.manifest.panels[1:3]:
        assert panel.elements[-1].kind == "continuity" and panel.elements[-1].refs[0].file == f"{panel.number - 1:02d}.png"
    assert [p.key for p in local.manifest.panels] == [p.key for p in on_ray.manifest.panels]
    same_pixels(tmp_path / "local", tmp_path / "ray", range(1, 4))


class KillFirstWorker(SilentProgress):
    """Kills the first worker seen making a panel (SIGKILL: no clean-up, as a crashed node)."""

    def __init__(self) -> None:
        super().__init__()
        self.killed: tuple[int, int] | None = None  # (pid, panel)
        self.states: list[WorkerState] = []

    def worker(self, state: WorkerState) -> None:
        self.states.append(state)
        if self.killed is None and state.panel is not None:
            self.killed = (state.pid, state.panel)
            os.kill(state.pid, signal.SIGKILL)


@needs_ray
@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_no_panel_is_made_twice(
    ray_cluster: None, example_copy: Path, tiny_flux_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: Counter[int] = Counter()
    real_commit = RunFolder.commit

    def counting_commit(self: RunFolder, result: object) -> object:
        commits[result.number] += 1  # type: ignore[attr-defined]
        return real_commit(self, result)  # type: ignore[arg-type]

    monkeypatch.setattr(RunFolder, "commit", counting_commit)
    progress = KillFirstWorker()
    result = run_story(example_copy, out=tmp_path / "run", panels="1-2", ray="local", workers=2, progress=progress,
                       model=str(tiny_flux_dir), encoder="no-such-local-encoder", grid=2, tile=256, steps=2, candidates=2, rounds=0)
    assert progress.killed is not None, "no worker was seen making a panel"
    pid, panel = progress.killed
    assert result.generated == [1, 2] and done_panels(tmp_path / "run") == [1, 2]
    assert commits == Counter({1: 1, 2: 1}), "every panel committed exactly once"
    assert any(s.panel == panel and s.pid != pid for s in progress.states), "a restarted worker made the killed panel"


def test_ray_options_are_checked(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["story", "run", str(example_copy), "--backend", "preview", "--out", str(tmp_path / "o")]
    r = run_cli(capsys, *base, "--workers", "2")
    assert r.exit_code == 2 and "--workers needs --ray" in r.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    r = run_cli(capsys, *base, "--ray", "auto")
    assert r.exit_code == 2 and 'pip install "ipprompt[ray]"' in r.output
    assert not (tmp_path / "o").exists(), "refused before anything was written"


@needs_ray
def test_device_is_ray_s_choice(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(capsys, "story", "run", str(example_copy), "--ray", "local", "--device", "cuda:1", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "Leave --device out" in r.output


def test_one_worker_per_gpu() -> None:
    gpu = plan_workers({"CPU": 32.0, "GPU": 4.0}, "flux-fill", None)
    assert gpu.count == 4 and gpu.resources["num_gpus"] == 1 and gpu.dtype == "bfloat16"
    limited = plan_workers({"CPU": 32.0, "GPU": 4.0}, "flux-fill", 2)
    assert limited.count == 2
    too_many = plan_workers({"CPU": 32.0, "GPU": 4.0}, "flux-fill", 8)
    assert too_many.count == 4 and too_many.notes
    cpu = plan_workers({"CPU": 2.0}, "flux-fill", 2)
    assert cpu.count == 2 and cpu.resources == {"num_cpus": 1.0} and cpu.dtype == "float32"
    assert plan_workers({"CPU": 2.0}, "flux-fill", None).count == 1
    assert plan_workers({"CPU": 8.0, "GPU": 2.0}, "preview", None).resources == {"num_cpus": 8.0}


@needs_ray
@pytest.mark.slow
def test_a_picked_preview_is_finished_on_a_ray_worker(ray_cluster: None, example_copy: Path, tmp_path: Path) -> None:
    from ipprompt.runfolder.manifest import read_manifest
    from ipprompt.runfolder.picks import pick

    run = tmp_path / "run"
    quick = {"backend": "preview", "tile": 256, "candidates": 4, "finish": 1, "rounds": 0}
    run_story(example_copy, out=run, panels="2", **quick)
    pruned = next(c for c in read_manifest(run).panel(2).candidates if c.pruned)  # type: ignore[union-attr]
    pick(run, 2, pruned.index)
    again = run_story(example_copy, out=run, panels="2", ray="local", workers=1, **quick)
    assert again.finished == [2] and again.generated == []
    done = read_manifest(run).panel(2)
    assert done is not None and done.chosen == pruned.index and done.pick_to_finish is None and done.picked_by == "author"
    cand = done.candidate(pruned.index)
    assert cand is not None and cand.finished and (run / "panels" / "02.png").read_bytes() == (run / str(cand.image)).read_bytes()
