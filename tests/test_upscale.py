"""The print-resolution pass: tiles and blend, the backends' refine, runs, keys, upscaler models, export."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from ipprompt.backends.factory import MachineOptions
from ipprompt.backends.flux_fill import FluxFillBackend
from ipprompt.backends.preview import PreviewBackend
from ipprompt.dvp.grid import shape_tile
from ipprompt.errors import IppromptError
from ipprompt.pipeline.run import run_story
from ipprompt.runfolder.manifest import read_manifest
from ipprompt.upscale.flux_pass import run_pass
from ipprompt.upscale.pass_result import PassSettings, refine_steps
from ipprompt.upscale.tiles import blend, plan_tiles, tile_weights

TINY = {"backend": "flux-fill", "tile": 256, "candidates": 2, "rounds": 0, "steps": 2, "keep": 1}
PREVIEW = {"backend": "preview", "tile": 256, "candidates": 2, "rounds": 0, "keep": 2}
SHAPES = {1: "wide", 2: "square", 5: "tall"}  # the example story's panels 1 and 5 have their own shape


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gradient(width: int, height: int) -> Image.Image:
    """A smooth image: horizontal and vertical ramps in two channels, flat blue."""
    x = np.linspace(20, 220, width)
    y = np.linspace(30, 200, height)
    rgb = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y[:, None], (height, width)), np.full((height, width), 120.0)], -1)
    return Image.fromarray(rgb.round().astype(np.uint8))


# --------------------------------------------------------------------------- tiles


@pytest.mark.parametrize("size", [(512, 512), (704, 352), (352, 704), (1472, 736), (2048, 2048), (2944, 1472), (96, 192)])
@pytest.mark.parametrize("tile,overlap", [(1024, 128), (512, 64), (96, 16)])
def test_tiles_cover_the_image_on_the_16_px_grid(size: tuple[int, int], tile: int, overlap: int) -> None:
    width, height = size
    tiles = plan_tiles(width, height, tile, overlap)
    covered = np.zeros((height, width), dtype=bool)
    for t in tiles:
        w, h = t.size
        assert w <= tile and h <= tile and w % 16 == 0 and h % 16 == 0 and t.left % 16 == 0 and t.top % 16 == 0
        covered[t.top : t.bottom, t.left : t.right] = True
    assert covered.all()
    if width <= tile and height <= tile:
        assert len(tiles) == 1 and tiles[0].size == size
    # Neighbours overlap by at least the setting less one 16 px snap, so the ramps have room.
    lefts = sorted({t.left for t in tiles})
    widths = {t.left: t.size[0] for t in tiles}
    for a, b in zip(lefts, lefts[1:]):
        assert a + widths[a] - b >= overlap - 16
    total = sum(w.sum() for w in tile_weights(tiles, width, height))
    assert total == pytest.approx(width * height, rel=0.02), "cosine ramps of two neighbours sum to about one"


def test_blending_tiles_of_the_same_image_gives_the_image_back() -> None:
    image = gradient(400, 272)
    tiles = plan_tiles(400, 272, 160, 48)
    assert len(tiles) > 4
    out = np.asarray(blend(tiles, [image.crop(t.box) for t in tiles], image.size), dtype=int)
    assert np.abs(out - np.asarray(image, dtype=int)).max() <= 1


class DisagreeingBackend(PreviewBackend):
    """Each tile comes back as it went in, shifted by its own brightness (from its seed): tiles
    that disagree, as two FLUX calls on neighbouring tiles do. (The tiny random-weight FLUX cannot
    stand in here: its tiles come back with the same statistics, so even a hard paste of them
    shows no seam to measure.)"""

    def refine(self, image: Image.Image, prompt: str, strength: float, seed: int, steps: int, guidance: float, on_step: Any = None) -> Image.Image:
        self.nfe += 1
        offset = np.random.default_rng(seed).uniform(-30, 30, size=3)
        return Image.fromarray(np.clip(np.asarray(image, dtype=float) + offset, 0, 255).round().astype(np.uint8))


def _steps(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column and per-row mean absolute step (index i: from i to i + 1)."""
    return np.abs(np.diff(a, axis=1)).mean(axis=(0, 2)), np.abs(np.diff(a, axis=0)).mean(axis=(1, 2))


def test_the_tiled_pass_has_no_seam() -> None:
    """Across every tile border the pixel step stays that of the inside of a tile; hard-pasting
    the very same tiles gives steps many times larger, so the measure does see seams."""
    settings = PassSettings(factor=2, strength=0.5, tile=128, overlap=32, upscaler=None, steps=2, guidance=30.0)
    backend = DisagreeingBackend()
    out = run_pass(gradient(160, 128), settings, prompt="p", seed=7, backend=backend, keep_tiles=True)
    assert out.image.size == (320, 256) and len(out.tiles) == 9 and backend.nfe == 9
    blended = np.asarray(out.image, dtype=float)
    hard = np.zeros_like(blended)
    for t, im in zip(out.tiles, out.tile_images):
        hard[t.top : t.bottom, t.left : t.right] = np.asarray(im, dtype=float)
    xs = sorted({t.left for t in out.tiles if t.left} | {t.right for t in out.tiles if t.right < 320})
    ys = sorted({t.top for t in out.tiles if t.top} | {t.bottom for t in out.tiles if t.bottom < 256})
    # Inside a tile: the columns and rows no other tile covers.
    cols = [x for x in range(1, 320) if sum(t.left < x < t.right for t in out.tiles if t.top == 0) == 1 and x not in xs]
    rows = [y for y in range(1, 256) if sum(t.top < y < t.bottom for t in out.tiles if t.left == 0) == 1 and y not in ys]
    for image, seamless in ((blended, True), (hard, False)):
        col, row = _steps(image)
        inside = max(col[[x - 1 for x in cols]].max(), row[[y - 1 for y in rows]].max())
        border = max(col[[x - 1 for x in xs]].max(), row[[y - 1 for y in ys]].max())
        everywhere = max(col.max(), row.max())
        if seamless:
            # The ramp spreads each tile's difference over the overlap: no step at a border, nor
            # anywhere in the image, stands out from the inside of a tile by more than ~2 levels.
            assert border <= inside + 2.0, (border, inside)
            assert everywhere <= inside + 3.0, (everywhere, inside)
        else:
            assert border > inside + 8.0, "the measure must see a hard paste's seam"


def test_the_downscaled_pass_stays_the_panel() -> None:
    """Enlarged 4x through tiles and blend, then brought back to the panel's size: the same image
    (the preview backend re-draws nothing, so any shift, crop or blend error would show here)."""
    panel = gradient(176, 352)
    noise = np.random.default_rng(0).integers(-20, 20, (352, 176, 3))
    panel = Image.fromarray(np.clip(np.asarray(panel, dtype=int) + noise, 0, 255).astype(np.uint8))
    settings = PassSettings(factor=4, strength=0.35, tile=256, overlap=64, upscaler=None, steps=50, guidance=30.0)
    out = run_pass(panel, settings, prompt="p", seed=0, backend=PreviewBackend())
    assert out.image.size == (704, 1408) and len(out.tiles) > 8
    back = np.asarray(out.image.resize(panel.size, Image.Resampling.LANCZOS), dtype=float)
    mse = ((back - np.asarray(panel, dtype=float)) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 30, "PSNR of the downscaled pass against the panel"


# --------------------------------------------------------------------------- the FLUX backend


@pytest.fixture(scope="module")
def flux(tiny_flux_dir: Path) -> FluxFillBackend:
    return FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"))


def test_refine_is_the_pipeline_s_image_to_image_and_counts_its_steps(flux: FluxFillBackend) -> None:
    import torch

    image = gradient(128, 96)
    before = flux.nfe
    ours = flux.refine(image, "a red lighthouse", 0.5, 3, 4, 30.0)
    assert flux.nfe - before == refine_steps(4, 0.5) == 2
    direct = flux.pipe(
        prompt="a red lighthouse", image=image, mask_image=Image.new("L", image.size, 255), height=96, width=128, strength=0.5,
        num_inference_steps=4, guidance_scale=30.0, generator=torch.Generator("cpu").manual_seed(3),
    ).images[0]
    # Same process, same kernels: the pipeline called directly gives the same pixels.
    assert np.abs(np.asarray(ours, dtype=int) - np.asarray(direct, dtype=int)).max() <= 1
    assert ours.size == image.size
    assert np.asarray(flux.refine(image, "a red lighthouse", 0.5, 4, 4, 30.0)).tolist() != np.asarray(ours).tolist()


def test_memory_options_apply_to_the_pass(tiny_flux_dir: Path, flux: FluxFillBackend) -> None:
    """Model offload (CPU here) goes through the same pipeline hooks and gives the same pixels."""
    image = gradient(96, 96)
    offloaded = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu", offload="model"))
    a = np.asarray(flux.refine(image, "a boat", 0.5, 1, 2, 30.0), dtype=int)
    b = np.asarray(offloaded.refine(image, "a boat", 0.5, 1, 2, 30.0), dtype=int)
    assert np.abs(a - b).max() <= 1 and offloaded.nfe == 1


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import STORIES

    dest = tmp_path_factory.mktemp("upscale-story") / "stories"
    shutil.copytree(STORIES, dest, ignore=shutil.ignore_patterns("index.sqlite*", "__pycache__"))
    return dest / "lighthouse.toml"


@pytest.fixture(scope="module")
def upscaled_run(story: Path, flux: FluxFillBackend, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A tiny-model run of a wide, a square and a tall panel with --upscale 2 (and its NFE)."""
    out = tmp_path_factory.mktemp("upscaled") / "run"
    before = flux.nfe
    run_story(story, out=out, panels="1,2,5", backend_instance=flux, upscale=2, **TINY)
    return out, flux.nfe - before


@pytest.mark.slow
def test_upscale_2_gives_panels_twice_the_cell_for_every_shape(upscaled_run: tuple[Path, int]) -> None:
    run, nfe = upscaled_run
    manifest = read_manifest(run)
    pass_nfe = 0
    for number, shape in SHAPES.items():
        p = manifest.panel(number)
        assert p is not None and p.done and p.shape == shape and p.upscale is not None
        cell = shape_tile(256, shape)
        with Image.open(run / p.image) as small, Image.open(run / p.upscale.image) as large:
            assert small.size == cell, "the grid-size image stays what the search chose"
            assert large.size == (2 * cell[0], 2 * cell[1])
        up = p.upscale
        assert (up.factor, up.strength, up.tile, up.backend) == (2, 0.35, 1024, "flux-fill")
        assert up.tiles == 1 and up.steps == refine_steps(2, 0.35) == 1 and up.nfe == up.tiles * up.steps
        assert up.seconds > 0 and up.image == f"panels/{number:02d}-print.png"
        pass_nfe += up.nfe
    assert nfe == sum(manifest.panel(n).nfe for n in SHAPES) + pass_nfe, "every transformer call is counted once"
    html = (run / "storyboard.html").read_text(encoding="utf-8")
    assert 'srcset="panels/02.png 1x, panels/02-print.png 2x"' in html and "Print pass" in html


@pytest.mark.slow
def test_changing_only_upscale_re_runs_only_the_pass(upscaled_run: tuple[Path, int], story: Path, flux: FluxFillBackend, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(upscaled_run[0], run)
    before = read_manifest(run).panel(2)
    assert before is not None and before.upscale is not None
    grid_image, print_sha = sha(run / before.image), sha(run / before.upscale.image)
    nfe = flux.nfe
    # Tiles of 384 px: the 3x panel (768 px) is re-drawn in 3 x 3 overlapping tiles.
    result = run_story(story, out=run, panels="2", backend_instance=flux, upscale=3, upscale_tile=384, upscale_overlap=64, **TINY)
    assert result.reused == [2] and result.generated == []
    after = read_manifest(run).panel(2)
    assert after is not None and after.upscale is not None
    assert [c.model_dump() for c in after.candidates] == [c.model_dump() for c in before.candidates], "the search's candidates"
    assert (after.chosen, after.scorer_choice, after.key, after.nfe) == (before.chosen, before.scorer_choice, before.key, before.nfe)
    assert sha(run / after.image) == grid_image
    up = after.upscale
    assert (up.factor, up.tiles, up.width) == (3, 9, 768) and up.source_sha256 == grid_image
    assert flux.nfe - nfe == up.nfe == 9 * refine_steps(2, 0.35), "only the pass ran"
    kept = [p for p in (run / "history").glob("02-*.print.png") if sha(p) == print_sha]
    assert kept, "the replaced large panel went to history"
    # The same settings again: nothing runs. upscale = 1: the large panel goes to history.
    nfe = flux.nfe
    run_story(story, out=run, panels="2", backend_instance=flux, upscale=3, upscale_tile=384, upscale_overlap=64, **TINY)
    assert flux.nfe == nfe and read_manifest(run).panel(2).upscale == up
    run_story(story, out=run, panels="2", backend_instance=flux, upscale=1, **TINY)  # the folder remembers 3 unless told
    off = read_manifest(run).panel(2)
    assert off is not None and off.upscale is None and off.key == before.key and not (run / "panels" / "02-print.png").exists()
    assert len(list((run / "history").glob("02-*.print.png"))) == 2


# --------------------------------------------------------------------------- upscaler models (spandrel)


def tiny_upscaler(path: Path, scale: int = 2) -> Path:
    """A tiny Real-ESRGAN Compact (SRVGGNetCompact) with random weights, saved as a state dict."""
    pytest.importorskip("spandrel", reason='the upscale extra: pip install "ipprompt[upscale]"')
    import torch
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def test_upscaler_models_load_through_spandrel(tmp_path: Path) -> None:
    from ipprompt.upscale.upscaler import load_upscaler

    panel = gradient(64, 48)
    for name, scale in (("x2.safetensors", 2), ("x4.pth", 4)):
        up = load_upscaler(str(tiny_upscaler(tmp_path / name, scale)))
        assert up.architecture == "RealESRGAN Compact" and up.scale == scale
        out = up.enlarge(panel, (128, 96))
        assert out.size == (128, 96), "brought to the pass's factor whatever the model's own scale"
        lanczos = panel.resize((128, 96), Image.Resampling.LANCZOS)
        assert np.abs(np.asarray(out, dtype=int) - np.asarray(lanczos, dtype=int)).mean() > 1, "the model ran"
    (tmp_path / "model.pt").write_bytes(b"not a model")
    (tmp_path / "other.safetensors").write_bytes((tmp_path / "x2.safetensors").read_bytes())
    with pytest.raises(IppromptError, match="pickled .pt files are refused"):
        load_upscaler(str(tmp_path / "model.pt"))
    from safetensors.torch import save_file
    import torch

    save_file({"some.weight": torch.zeros(3, 3)}, str(tmp_path / "unknown.safetensors"))
    with pytest.raises(IppromptError, match="does not recognise"):
        load_upscaler(str(tmp_path / "unknown.safetensors"))


def test_upscaler_alone_needs_no_generator(story: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_upscaler(tmp_path / "x4.pth", 4)
    run = tmp_path / "run"
    made = run_cli(capsys, "story", "run", str(story), "--out", str(run), "--panels", "2", "--backend", "preview", "--tile", "256",
                   "--candidates", "2", "--rounds", "0", "--finish", "2")
    assert made.exit_code == 0, made.output

    class NoGenerator(PreviewBackend):
        def refine(self, *a: object, **k: object) -> Image.Image:
            raise AssertionError("strength 0 must not re-detail")

    result = run_story(story, out=run, panels="2", backend_instance=NoGenerator(), upscale=2, upscaler=str(model), upscale_strength=0.0, **PREVIEW)
    assert result.reused == [2]
    up = read_manifest(run).panel(2).upscale
    assert up is not None and (up.tiles, up.nfe, up.backend, up.strength) == (0, 0, None, 0.0)
    assert up.upscaler == "x4.pth (RealESRGAN Compact, 4x)" and up.upscaler_sha256 == sha(model)
    with Image.open(run / up.image) as im:
        assert im.size == (512, 512)
    missing = run_cli(capsys, "story", "run", str(story), "--out", str(run), "--panels", "2", "--backend", "preview", "--tile", "256",
                      "--upscale", "2", "--upscaler", str(tmp_path / "nope.safetensors"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    # A new folder (``run`` remembers upscale = 2 by now): --upscaler without --upscale is refused.
    alone = run_cli(capsys, "story", "run", str(story), "--out", str(tmp_path / "new"), "--panels", "2", "--backend", "preview", "--upscaler", str(model))
    assert alone.exit_code == 2 and "--upscaler" in alone.stderr and "upscale = 2, 3 or 4" in alone.stderr


@pytest.mark.slow
def test_upscaler_runs_before_the_flux_pass(upscaled_run: tuple[Path, int], story: Path, flux: FluxFillBackend, tmp_path: Path) -> None:
    model = tiny_upscaler(tmp_path / "x2.safetensors", 2)
    run = tmp_path / "run"
    shutil.copytree(upscaled_run[0], run)
    nfe = flux.nfe
    result = run_story(story, out=run, panels="2", backend_instance=flux, upscale=2, upscaler=str(model), **TINY)
    assert result.reused == [2]
    up = read_manifest(run).panel(2).upscale
    assert up is not None and up.upscaler == "x2.safetensors (RealESRGAN Compact, 2x)" and up.backend == "flux-fill"
    assert up.nfe == flux.nfe - nfe == 1 and up.width == 512


# --------------------------------------------------------------------------- export, dry run, picks


def test_export_warns_about_under_resolved_panels(story: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At 100 dpi a comic page's cells need ~290 x 310 px (a wide one ~585 x 310): a 256 px grid's
    panels fall short, their 2x passes do not."""
    plain, printed = tmp_path / "plain", tmp_path / "printed"
    for run, extra in ((plain, []), (printed, ["--upscale", "2"])):
        made = run_cli(capsys, "story", "run", str(story), "--out", str(run), "--panels", "1-5", "--backend", "preview",
                       "--tile", "256", "--candidates", "2", "--rounds", "0", *extra)
        assert made.exit_code == 0, made.output
    soft = run_cli(capsys, "story", "export", str(plain), "--pdf", str(tmp_path / "plain.pdf"), "--dpi", "100")
    assert soft.exit_code == 0, soft.output
    assert "enlarges 5 panels" in soft.stderr and "panels 1 (352x176 px for" in soft.stderr and "5 (176x352 px" in soft.stderr
    assert "--upscale 2" in soft.stderr
    sharp = run_cli(capsys, "story", "export", str(printed), "--pdf", str(tmp_path / "printed.pdf"), "--dpi", "100")
    assert sharp.exit_code == 0 and "enlarges" not in sharp.output
    # The large panels are what the page is drawn from: a 300 dpi export still names them, at their size.
    print_dpi = run_cli(capsys, "story", "export", str(printed), "--pdf", str(tmp_path / "p300.pdf"), "--dpi", "300")
    assert "2 (512x512 px for" in print_dpi.stderr


def test_dry_run_adds_the_pass(story: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(capsys, "story", "run", str(story), "--dry-run", "--panels", "1-3", "--upscale", "2")
    assert r.exit_code == 0, r.output
    rows = {row[1].strip(): [c.strip() for c in row] for row in (line.split("│") for line in r.stdout.splitlines()) if len(row) >= 8}
    # Tile 512, 28 steps (the default budget), strength 0.35: 10 steps per tile (diffusers skips
    # int(28 - 28 x 0.35) = 18); the wide panel (1472 x 736) takes 2 tiles.
    assert refine_steps(28, 0.35) == 10
    assert rows["1"][6] == "2 x 10" and rows["2"][6] == "1 x 10" and rows["all"][6] == "40"
    search = int(rows["all"][4])
    assert search == sum(int(rows[n][4]) for n in ("1", "2", "3")) and f"with it, {search + 40} NFE in all" in " ".join(r.stdout.split())
    off = run_cli(capsys, "story", "run", str(story), "--dry-run", "--panels", "1-3")
    assert "print pass" not in off.stdout.lower()
    lanczos = run_cli(capsys, "story", "run", str(story), "--dry-run", "--panels", "1", "--upscale", "2", "--upscale-strength", "0")
    assert "enlargement only" in lanczos.stdout
    assert refine_steps(50, 0.001) == 1 and refine_steps(2, 0.35) == 1, "any strength above 0 runs a step"


def test_picks_and_history_keep_both_images(story: Path, tmp_path: Path) -> None:
    from ipprompt.runfolder import picks

    run = tmp_path / "run"
    run_story(story, out=run, panels="2", upscale=2, **PREVIEW)
    entry = read_manifest(run).panel(2)
    assert entry is not None and entry.upscale is not None and len(entry.candidates) == 2
    print_sha = sha(run / entry.upscale.image)
    other = next(c.index for c in entry.candidates if c.index != entry.chosen and c.finished)
    picked = picks.pick(run, 2, other)
    assert picked.upscale is None and not (run / "panels" / "02-print.png").exists()
    assert [sha(p) for p in (run / "history").glob("02-*.print.png")] == [print_sha], "the large panel went to history"
    assert all(not h.name.endswith(".print.png") for h in picks.history(run, 2)), "history lists grid-size images to restore"
    # The next run keeps the pick and makes its large panel; a reroll moves both images to history.
    result = run_story(story, out=run, panels="2", upscale=2, **PREVIEW)
    after = read_manifest(run).panel(2)
    assert result.reused == [2] and after.chosen == other and after.upscale is not None
    assert after.upscale.source_sha256 == sha(run / after.image)
    rerolled_print = sha(run / after.upscale.image)
    run_story(story, out=run, panels="2", upscale=2, reroll=True, **PREVIEW)
    assert rerolled_print in {sha(p) for p in (run / "history").glob("02-*.print.png")}
    assert read_manifest(run).panel(2).upscale is not None


def test_pass_settings_are_validated(story: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, words in (
        (["--upscale", "5"], "--upscale 5"),
        (["--upscale", "2", "--upscale-tile", "1000"], "multiple of 16"),
        (["--upscale", "2", "--upscale-tile", "256", "--upscale-overlap", "160"], "at most half of upscale_tile"),
        (["--upscale", "2", "--upscale-strength", "1.5"], "--upscale-strength"),
    ):
        r = run_cli(capsys, "story", "run", str(story), "--dry-run", "--panels", "1", *args)
        assert r.exit_code == 2 and words in r.stderr, (args, r.output)
    text = story.read_text(encoding="utf-8").replace("\n[generation]\n", "\n[generation]\nupscale = 2\nupscale_strength = 0.3\n", 1)
    assert "upscale = 2" in text
    from ipprompt.story.loading import load_story

    alt = story.with_name("upscaled.toml")
    alt.write_text(text, encoding="utf-8")
    g = load_story(alt).generation
    assert (g.upscale, g.upscale_strength, g.upscale_tile, g.upscale_overlap) == (2, 0.3, 1024, 128)


# --------------------------------------------------------------------------- Ray


@pytest.mark.slow
def test_the_pass_runs_on_ray_workers(story: Path, tiny_flux_dir: Path, tmp_path: Path) -> None:
    """On Ray the pass re-details on a worker's generator, after the panel (made there too) and,
    when only the pass changed, on a worker started for it alone."""
    import importlib.util
    import logging

    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (optional extra: pip install 'ipprompt[ray]')")
    import ray

    opts = dict(panels="2", model=str(tiny_flux_dir), encoder="no-such-local-encoder", ray="local", workers=1, **TINY)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        first = run_story(story, out=tmp_path / "run", upscale=2, **opts)
        assert first.generated == [2]
        up = read_manifest(tmp_path / "run").panel(2).upscale
        assert up is not None and (up.backend, up.nfe, up.width) == ("flux-fill", 1, 512)
        again = run_story(story, out=tmp_path / "run", upscale=3, **opts)
        assert again.reused == [2] and again.generated == []
        up3 = read_manifest(tmp_path / "run").panel(2).upscale
        assert up3 is not None and (up3.factor, up3.width, up3.nfe) == (3, 768, 1)
    finally:
        ray.shutdown()
