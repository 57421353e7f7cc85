"""``method = "reference"`` builds IP-Prompter's own canvases, prompts and winners.

The reference's paste rule is transcribed below from its ``inference.py`` (centre crop, the
high-to-low paste order, the user-specific paste order, the doubling of short lists) and compared
pixel by pixel with what our search sends to the generator, for every permutation.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from ipprompt.backends.preview import PreviewBackend
from ipprompt.dvp.grid import GridSpec, RefImage, target_mask
from ipprompt.dvp.ipprompter import REFERENCE_PREFIX, ReferenceSearch, reference_arrangement, reference_fit
from ipprompt.dvp.methods import method_of
from ipprompt.dvp.search import PanelPrompt, SearchSettings
from ipprompt.pipeline.run import run_story
from ipprompt.runfolder.manifest import read_manifest
from ipprompt.dvp.scoring import Scorer

TILE = 64
SPEC = GridSpec(3, TILE)


# ----------------------------------------------------------------------------- the reference's rule
# Transcribed from the reference's inference.py (width = height = the tile).


def reference_center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    w0, h0 = image.size
    scale = max(width / min(w0, h0), height / min(w0, h0))
    image = image.resize((int(w0 * scale), int(h0 * scale)))
    w0, h0 = image.size
    return image.crop((w0 / 2 - width / 2, h0 / 2 - height / 2, w0 / 2 + width / 2, h0 / 2 + height / 2))


def reference_paste_high2low(canvas: Image.Image, image: Image.Image, index: int, width: int, height: int) -> Image.Image:
    positions = [
        (width, 0), (0, 0), (width * 2, 0),
        (0, height), (width * 2, height), (width, height),
        (width, height * 2), (0, height * 2), (width * 2, height * 2),
    ]
    canvas.paste(image, box=positions[index])
    return canvas


def reference_paste_specific(canvas: Image.Image, image: Image.Image, index: int, width: int, height: int) -> Image.Image:
    positions = [(width, 0), (width, height * 2), (0, height), (width * 2, height)]
    canvas.paste(image, box=positions[index])
    return canvas


def reference_condition(images_per_element: list[list[Image.Image]], permutation: tuple[int, ...], pinned: list[Image.Image]) -> Image.Image:
    """The reference's ``concat_image`` for one permutation (its loop body, images given as lists)."""
    width = height = TILE
    concat_image = Image.new("RGB", (width * 3, height * 3))
    lists = [list(images) for images in images_per_element]
    position_index = 0
    for element in permutation:
        while len(lists[element]) < 3:
            lists[element] = lists[element] + lists[element]
        for image in lists[element][:3]:
            image = reference_center_crop(image, width, height)
            concat_image = reference_paste_high2low(concat_image, image, position_index, width, height)
            position_index += 1
    for idx, user_img in enumerate(pinned):
        # The one deliberate difference: we fit pinned images to the tile; the reference pastes
        # them unresized.
        concat_image = reference_paste_specific(concat_image, reference_center_crop(user_img, width, height), idx, width, height)
    return concat_image


def masked(canvas: Image.Image) -> np.ndarray:
    """The canvas as the generator sees it: the masked centre carries no information (black here)."""
    pixels = np.array(canvas).copy()
    pixels[np.array(target_mask(SPEC)) > 0] = 0
    return pixels


# ----------------------------------------------------------------------------- fixtures

SIZES = [(100, 80), (63, 130), (64, 64), (200, 51), (47, 47), (513, 300), (81, 97), (128, 129), (90, 61)]


def _refs(folder: Path, tag: str, count: int, seed: int) -> tuple[RefImage, ...]:
    rng = np.random.default_rng(seed)
    refs = []
    for i in range(count):
        w, h = SIZES[(i + seed) % len(SIZES)]
        path = folder / f"{tag}-{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        refs.append(RefImage(f"{tag}{i:03d}".ljust(64, "0"), path, f"{tag} {i}", round(0.9 - i / 50, 3)))
    return tuple(refs)


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> PanelPrompt:
    """Three elements as retrieval gives them (9 images each), and one pinned image."""
    folder = tmp_path_factory.mktemp("reference-refs")
    ranked = tuple(_refs(folder, f"e{e}", 9, seed=e) for e in range(3))
    pinned = _refs(folder, "pin", 1, seed=7)
    return PanelPrompt(
        REFERENCE_PREFIX + "a girl in a yellow raincoat on a cliff", ("a girl", "a cliff", "walks in the rain"),
        ranked, pinned, seed=3, description="a girl in a yellow raincoat on a cliff",
    )


def _open(refs: tuple[RefImage, ...]) -> list[Image.Image]:
    return [Image.open(r.path).convert("RGB") for r in refs]


def _our_canvases(prompt: PanelPrompt) -> list:  # type: ignore[type-arg]
    settings = SearchSettings(candidates=2, rounds=2, steps=2, method="reference")
    return ReferenceSearch(PreviewBackend(), Scorer(None), SPEC, settings).run(prompt).candidates


# ----------------------------------------------------------------------------- canvases


def test_centre_crop_is_the_references(panel: PanelPrompt) -> None:
    for ref in itertools.chain(*panel.ranked):
        image = ref.open()
        ours = reference_fit(image, TILE)
        assert ours.size == (TILE, TILE)
        assert np.array_equal(np.array(ours), np.array(reference_center_crop(image, TILE, TILE)))
    # Wide and tall tiles: scaled until both sides cover the tile, never over-cropped. An image
    # with the tile's own shape and size comes through whole.
    stripes = Image.new("RGB", (2 * TILE, TILE), (0, 0, 255))
    stripes.paste((255, 0, 0), (0, 0, 4, TILE))  # a red band at the left edge
    for width, height, image in ((2 * TILE, TILE, stripes), (TILE, 2 * TILE, stripes.rotate(90, expand=True))):
        fitted = reference_fit(image, width, height)
        assert fitted.size == (width, height)
        assert np.array_equal(np.array(fitted), np.array(image)), "the edge bands survive"


@pytest.mark.parametrize("pinned", [False, True], ids=["3-elements", "3-elements+1-pinned"])
def test_canvas_is_the_references_for_every_permutation(panel: PanelPrompt, pinned: bool) -> None:
    prompt = panel if pinned else PanelPrompt(panel.text, panel.element_texts, panel.ranked, (), panel.seed, description=panel.description)
    candidates = _our_canvases(prompt)
    permutations = list(itertools.permutations(range(3)))
    assert [c.arrangement.order for c in candidates] == permutations  # itertools order, all 3! of them
    images = [_open(refs) for refs in prompt.ranked]
    for cand, perm in zip(candidates, permutations):
        theirs = reference_condition(images, perm, _open(prompt.pinned))
        assert np.array_equal(np.array(cand.canvas), masked(theirs)), f"permutation {perm}"
        assert cand.prompt == prompt.text


def test_short_lists_repeat_and_empty_cells_stay_black(panel: PanelPrompt) -> None:
    """Two elements, one of them with two images: the reference doubles the list (a, b, a)."""
    ranked = (panel.ranked[0][:2], panel.ranked[1])
    prompt = PanelPrompt(panel.text, panel.element_texts[:2], ranked, (), panel.seed)
    candidates = _our_canvases(prompt)
    assert len(candidates) == 2
    images = [_open(refs) for refs in ranked]
    for cand in candidates:
        assert np.array_equal(np.array(cand.canvas), masked(reference_condition(images, cand.arrangement.order, [])))
    first = candidates[0].arrangement  # order (0, 1): a, b, a at the top; element 1 after
    assert [p.ref for p in first.placements if p.cell[0] == 0] == [ranked[0][0], ranked[0][1], ranked[0][0]]
    assert np.array(candidates[0].canvas)[2 * TILE :].max() == 0  # bottom row: no image, black


def test_pinned_overwrite_in_the_references_order(panel: PanelPrompt) -> None:
    four = tuple(panel.ranked[2][:4])
    arrangement = reference_arrangement(SPEC, panel.ranked, (0, 1, 2), four)
    cells = {p.cell: p for p in arrangement.placements}
    assert [cells[c].ref for c in ((0, 1), (2, 1), (1, 0), (1, 2))] == list(four)
    assert all(cells[c].pinned for c in ((0, 1), (2, 1), (1, 0), (1, 2)))
    assert (1, 1) not in cells and len(cells) == 8
    with pytest.raises(ValueError, match="at most 4 pinned"):
        reference_arrangement(SPEC, panel.ranked, (0, 1, 2), tuple(panel.ranked[2][:5]))


def test_every_candidate_finishes_and_the_highest_clip_t_wins(panel: PanelPrompt, tiny_clip_dir: Path) -> None:
    from ipprompt.encoders.clip import ClipEncoder

    encoder = ClipEncoder.load(str(tiny_clip_dir), device="cpu")
    settings = SearchSettings(candidates=2, rounds=2, steps=4, finish=1, search="pruned", method="reference")
    backend = PreviewBackend()
    result = method_of("reference").search_class()(backend, Scorer(encoder), SPEC, settings).run(panel)
    assert len(result.candidates) == 6 and result.rounds_run == 1
    assert all(c.finished and not c.pruned and c.steps_run == 4 for c in result.candidates)
    best = max(result.candidates, key=lambda c: (c.scores.clip_t, -c.index))  # type: ignore[union-attr]
    assert result.chosen == best.index
    assert all(c.scores.total == c.scores.clip_t and c.scores.clip_i is not None for c in result.candidates)  # type: ignore[union-attr]
    # CLIP-T is against the bare panel text, not the prefixed prompt.
    direct = float(encoder.embed_texts([panel.description])[0] @ encoder.embed_images([best.cell])[0])
    assert best.scores.clip_t == pytest.approx(direct, abs=1e-5)  # type: ignore[union-attr]
    # No pruning and no refinement, whatever the DVP settings say.
    assert ReferenceSearch(backend, Scorer(None), SPEC, settings).settings.search == "exhaustive"


# ----------------------------------------------------------------------------- the story run


def test_story_errors_name_the_panel_and_suggest_elements(example_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without its explicit elements, the example's panel 4 has 4 (two characters, scene, action)."""
    story = example_copy.read_text()
    example_copy.write_text(re.sub(r"elements = \[ +# at most 3 elements[^\]]*\]\n", "", story, count=1))
    r = run_cli(capsys, "story", "run", str(example_copy), "--method", "reference", "--backend", "preview", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2, r.output
    assert "panel 4 has 4 key elements" in r.output and "elements = [...]" in r.output
    assert re.search(r"lighthouse\.toml:\d+: panels\[3\]", r.output), r.output
    assert not (tmp_path / "x" / "manifest.json").exists(), "refused before the run started"
    # Continuity counts as an element; more than 4 pinned images is an error too.
    text = example_copy.read_text()
    text = text.replace('refs = ["refs/mira.png"]', "refs = [" + ", ".join(['"refs/mira.png"'] * 5) + "]")
    example_copy.write_text(text)
    r = run_cli(capsys, "story", "run", str(example_copy), "--method", "reference", "--backend", "preview", "--panels", "1-2",
                "--continuity", "--out", str(tmp_path / "y"))
    assert r.exit_code == 2, r.output
    assert "panel 1 has 5 pinned reference images" in r.output and "at most 4" in r.output
    assert "panel 2 has 4 key elements" in r.output and "continuity" in r.output


def test_preview_reference_run_records_method_and_prompts(example_copy: Path, tmp_path: Path) -> None:
    result = run_story(example_copy, out=tmp_path / "p", panels="1-3", backend="preview", method="reference", encoder="no-such-local-encoder")
    made = [p for p in result.manifest.panels if p.done]
    assert [len(p.candidates) for p in made] == [6, 6, 2]  # n! of 3, 3 and 2 elements
    for p in made:
        # The frame's text as written (a final "." would be kept; the style joins before it) after the prefix.
        assert p.method == "reference" and p.text == REFERENCE_PREFIX + (p.description or "")
        assert all(p.candidate_prompt(c) == p.text and c.finished for c in p.candidates)
    html = (result.out / "storyboard.html").read_text()
    assert html.count('data-method="reference"') == 3
    dvp = run_story(example_copy, out=tmp_path / "d", panels="1", backend="preview", encoder="no-such-local-encoder", candidates=2, rounds=0)
    first = dvp.manifest.panels[0]
    assert first.method == "dvp" and all(first.candidate_prompt(c) == first.text for c in first.candidates)
    assert 'data-method="dvp"' in (dvp.out / "storyboard.html").read_text()


@pytest.mark.slow
def test_cli_reference_run_with_tiny_models(
    example_copy: Path, tiny_flux_dir: Path, tiny_clip_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's check on two panels (3 elements and 2): n! candidates, all finished, prompts
    recorded, the highest CLIP-T chosen."""
    out = tmp_path / "run"
    r = run_cli(capsys, "story", "run", str(example_copy), "--method", "reference", "--tile", "256", "--model", str(tiny_flux_dir),
                "--encoder", str(tiny_clip_dir), "--steps", "2", "--panels", "2-3", "--out", str(out))
    assert r.exit_code == 0, r.output
    manifest = read_manifest(out).model_dump(mode="json")  # the index and every record
    done = [p for p in manifest["panels"] if p["status"] == "done"]
    assert [p["number"] for p in done] == [2, 3]
    for panel in done:
        n = len(panel["elements"])
        assert panel["method"] == "reference"
        assert len(panel["candidates"]) == [1, 1, 2, 6][n]
        assert panel["nfe"] == 2 * len(panel["candidates"])
        for cand in panel["candidates"]:
            assert cand["finished"] and not cand["pruned"] and cand["steps_run"] == 2
            assert (cand["prompt"] or panel["text"]) == REFERENCE_PREFIX + panel["description"]  # stored once when equal
        best = max(panel["candidates"], key=lambda c: (c["scores"]["clip_t"], -c["index"]))
        assert panel["chosen"] == best["index"]
    assert (out / "storyboard.html").read_text().count("reference method ·") == 2


def test_story_check_knows_the_method(example_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A story that asks for the reference method in its [generation] table is checked for it."""
    assert run_cli(capsys, "story", "check", str(example_copy)).exit_code == 0
    text = example_copy.read_text().replace("[generation]\n", '[generation]\nmethod = "reference"\n', 1)
    example_copy.write_text(text)
    assert run_cli(capsys, "story", "check", str(example_copy)).exit_code == 0  # every panel has at most 3 elements
    text = re.sub(r"elements = \[ +# at most 3 elements[^\]]*\]\n", "", text, count=1)
    example_copy.write_text(text)
    r = run_cli(capsys, "story", "check", str(example_copy))
    assert r.exit_code == 2 and "panel 4 has 4 key elements" in r.output, r.output
    example_copy.write_text(text.replace('method = "reference"', 'method = "referenc"'))
    r = run_cli(capsys, "story", "check", str(example_copy))
    assert r.exit_code == 2 and "generation.method" in r.output, r.output


def test_same_pixels_as_the_reference_pipeline_call(panel: PanelPrompt, tiny_flux_dir: Path) -> None:
    """Our candidate equals FluxFillPipeline called as the reference calls it, on the reference's
    own canvas: the 6th image it pastes into the masked centre cannot reach the output."""
    import torch

    from ipprompt.backends.factory import MachineOptions
    from ipprompt.backends.flux_fill import FluxFillBackend

    backend = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"))
    one = PanelPrompt(panel.text, panel.element_texts[:2], panel.ranked[:2], panel.pinned, panel.seed, description=panel.description)
    result = ReferenceSearch(backend, Scorer(None), SPEC, SearchSettings(steps=2, method="reference")).run(one)
    cand = result.candidates[1]  # permutation (1, 0)
    condition = reference_condition([_open(r) for r in one.ranked], cand.arrangement.order, _open(one.pinned))
    assert np.array(condition)[TILE : 2 * TILE, TILE : 2 * TILE].any(), "the reference pasted an image into the centre"
    mask = Image.new("RGB", condition.size, (0, 0, 0))
    mask.paste(Image.new("RGB", (TILE, TILE), (255, 255, 255)), box=(TILE, TILE))
    theirs = backend.pipe(
        prompt=one.text, image=condition, mask_image=mask, height=SPEC.size, width=SPEC.size, guidance_scale=30,
        num_inference_steps=2, max_sequence_length=512, generator=torch.Generator("cpu").manual_seed(one.seed),
    ).images[0]
    assert np.array_equal(np.array(cand.cell), np.array(theirs.crop(SPEC.box(SPEC.target))))


# ----------------------------------------------------------------------------- exactly as the reference

# The reference's example frame (prompts_list.py) and the prompt inference.py builds from it:
# standard_prompt ('... high-quality.') + prompt_content (' A man ...background.').
EXAMPLE_FRAME = "A man in a blue shirt and brown pants riding a bicycle, with grass and sky in the background."
EXAMPLE_ELEMENTS = ["A man in a blue shirt and brown pants", "riding a bicycle", "grass and sky in the background"]
EXAMPLE_PROMPT = (
    "A diptych with images sharing the same art style. high-quality. "
    "A man in a blue shirt and brown pants riding a bicycle, with grass and sky in the background."
)


def _example_story(folder: Path) -> Path:
    story = folder / "frame.toml"
    story.write_text(
        'title = "Reference frame"\ntheme = "themes/lighthouse"\n\n[generation]\nmethod = "reference"\ntile = 256\n\n'
        f"[[panels]]\nprompt = {json.dumps(EXAMPLE_FRAME)}\nelements = {json.dumps(EXAMPLE_ELEMENTS)}\n",
        encoding="utf-8",
    )
    return story


def test_the_references_example_frame_gives_the_references_prompt(example_copy: Path, tmp_path: Path) -> None:
    result = run_story(_example_story(example_copy.parent), out=tmp_path / "p", backend="preview", encoder="no-such-local-encoder")
    panel = result.manifest.panel(1)
    assert panel is not None and panel.text == EXAMPLE_PROMPT
    assert all(panel.candidate_prompt(c) == EXAMPLE_PROMPT for c in panel.candidates) and len(panel.candidates) == 6
    assert panel.settings["steps"] == 50, "the reference's own step count"


def test_a_text_ending_with_a_full_stop_is_sent_with_it(example_copy: Path, tiny_flux_dir: Path, tmp_path: Path) -> None:
    from ipprompt.backends.factory import MachineOptions
    from ipprompt.backends.flux_fill import FluxFillBackend

    backend = FluxFillBackend.load(str(tiny_flux_dir), MachineOptions(device="cpu"))
    sent: list[str] = []
    encode = backend.sampler.encode_prompt
    backend.sampler.encode_prompt = lambda prompt: (sent.append(prompt), encode(prompt))[1]  # type: ignore[method-assign]
    run_story(_example_story(example_copy.parent), out=tmp_path / "t", backend_instance=backend, encoder="no-such-local-encoder", steps=1)
    assert sent == [EXAMPLE_PROMPT] and sent[0].endswith(".")


def test_reference_mode_opens_images_as_the_reference_does(tmp_path: Path) -> None:
    """No EXIF rotation, transparency dropped (not flattened on white): Image.open(p).convert("RGB")."""
    from ipprompt.images import open_image

    rgba = Image.new("RGBA", (40, 20), (10, 200, 30, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "sideways.png"
    rgba.save(path, exif=exif)
    theirs = np.asarray(Image.open(path).convert("RGB"))
    ours = np.asarray(open_image(path, mode="plain"))
    assert np.array_equal(ours, theirs) and ours.shape == (20, 40, 3)
    upright = open_image(path)
    assert upright.size == (20, 40) and upright.getpixel((10, 30)) == (255, 255, 255), "our own mode: upright, on white"
    ref = RefImage("a" * 64, path)
    assert np.array_equal(np.asarray(ref.open(mode=method_of("reference").image_mode)), theirs)


def test_one_seed_reproduces_a_multi_frame_reference_run(example_copy: Path) -> None:
    from ipprompt.pipeline.plan import panel_seed
    from ipprompt.story.loading import Generation, load_story

    story = load_story(example_copy)
    one = Generation(method="reference", one_seed=True, seed=7)
    seeds = {panel_seed(story, one, n) for n in range(1, len(story.panels) + 1) if story.panels[n - 1].seed is None}
    assert seeds == {7}
    assert len({panel_seed(story, Generation(seed=7), n) for n in (1, 2, 3)}) == 3


def test_reference_pool_is_the_top_folder_jpg_and_png_with_duplicates(tmp_path: Path) -> None:
    from ipprompt.dvp.reference_pool import pool_files, reference_match
    from ipprompt.theme.library import ThemeLibrary

    theme = tmp_path / "theme"
    (theme / "sub").mkdir(parents=True)
    rng = np.random.default_rng(3)

    def save(name: str) -> None:
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(theme / name)  # format from the suffix

    for name in ("lighthouse_a.png", "lighthouse_c.JPG", "sub/lighthouse_d.png", "lighthouse_e.webp"):
        save(name)
    (theme / "lighthouse_b.png").write_bytes((theme / "lighthouse_a.png").read_bytes())  # same bytes, another file
    assert [p.name for p in pool_files(theme)] == ["lighthouse_a.png", "lighthouse_b.png", "lighthouse_c.JPG"]
    with ThemeLibrary.open(theme) as library:
        assert len(library) == 4  # our index: once per distinct image, sub-folders and WebP included
        ranked = reference_match(library, ["lighthouse"], k=9)
    names = sorted(r.path.name for r in ranked[0])
    assert names == ["lighthouse_a.png", "lighthouse_b.png", "lighthouse_c.JPG"], "duplicates kept, nothing else"
    a, b = (r for r in ranked[0] if r.path.name in ("lighthouse_a.png", "lighthouse_b.png"))
    assert a.sha256 == b.sha256 and a.score == b.score
