"""Retrieval: the reference rule, CLIP matching through the library, the lexical fallback, the encoder."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from ipprompt.encoders.clip import ClipEncoder, load_encoder_or_none
from ipprompt.errors import ModelUnavailable
from ipprompt.theme import ThemeLibrary, rank_matches, sha_tie_rank
from ipprompt.theme.lexical import LexicalIndex, stem, terms
from ipprompt.images import open_image
from test_theme_helpers import copy_example_theme, make_images, make_picture


def brute_force(sim: np.ndarray, shas: list[str], k: int, exclude_top: int, pinned: set[int]) -> list[list[int]]:
    """The rule as written in the design, with plain Python sorting."""
    excluded = set(pinned)
    result = []
    for row in sim:
        offered = [i for i in range(len(shas)) if i not in excluded]
        ranked = sorted(offered, key=lambda i: (-row[i], shas[i]))[:k]
        result.append(ranked)
        excluded.update(ranked[:exclude_top])
    return result


def random_shas(rng: np.random.Generator, n: int) -> list[str]:
    return ["".join(rng.choice(list("0123456789abcdef"), size=64)) for _ in range(n)]


@pytest.mark.parametrize("n_elements", [1, 2, 3, 5])
@pytest.mark.parametrize("k", [1, 4, 9, 60])
@pytest.mark.parametrize("exclude_top", [0, 3, 9])
def test_rank_matches_equals_brute_force(n_elements: int, k: int, exclude_top: int) -> None:
    rng = np.random.default_rng(1000 * n_elements + 10 * k + exclude_top)
    n_images, dim = 50, 16
    images = rng.normal(size=(n_images, dim)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts = rng.normal(size=(n_elements, dim)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    sim = texts @ images.T
    # Coarse rounding creates ties, which must go to the smaller sha256.
    sim = np.round(sim, 1)
    shas = random_shas(rng, n_images)
    pinned = set(rng.choice(n_images, size=4, replace=False).tolist())
    blocked = np.zeros(n_images, dtype=bool)
    blocked[list(pinned)] = True

    got = rank_matches(sim, sha_tie_rank(shas), k=k, exclude_top=exclude_top, blocked=blocked)
    want = brute_force(sim, shas, k, exclude_top, pinned)
    assert [[i for i, _ in refs] for refs in got] == want
    for refs, row in zip(got, sim):
        assert [score for _, score in refs] == [float(row[i]) for i, _ in refs]


def test_rank_matches_without_blocking_and_when_everything_is_taken() -> None:
    sim = np.array([[0.9, 0.8, 0.1], [0.9, 0.8, 0.7]], dtype=np.float32)
    ranked = rank_matches(sim, np.arange(3), k=2, exclude_top=2)
    assert ranked == [[(0, pytest.approx(0.9)), (1, pytest.approx(0.8))], [(2, pytest.approx(0.7))]]
    with pytest.raises(ValueError):
        rank_matches(sim, np.arange(3), k=0)
    with pytest.raises(ValueError):
        rank_matches(sim, np.arange(2))


def test_nan_scores_rank_last() -> None:
    sim = np.array([[np.nan, 0.2, 0.1]])
    assert [i for i, _ in rank_matches(sim, np.arange(3), k=3)[0]] == [1, 2, 0]


@pytest.fixture()
def encoder(tiny_clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(str(tiny_clip_dir))


def test_library_match_uses_one_text_call_and_follows_the_rule(tmp_path: Path, encoder: ClipEncoder) -> None:
    make_images(tmp_path / "src", 20)
    with ThemeLibrary.open(tmp_path / "theme", encoder, create=True) as library:
        library.add([tmp_path / "src"])
        elements = ["a girl in a yellow raincoat", "the lamp room", "a red boat on the sea"]
        shas = [image.sha256 for image in library.images]
        pinned = {shas[3], shas[11], "f" * 64}  # the last one is not in the theme
        calls = encoder.calls
        matches = library.match(elements, k=5, exclude_top=2, pinned=pinned)
        assert encoder.calls == calls + 1, "all elements are embedded in one batch"

        sim = encoder.embed_texts(elements) @ library.embeddings_for(shas).T
        want = brute_force(sim, shas, 5, 2, {3, 11})
        assert [m.element for m in matches] == elements
        assert [[shas.index(ref.image.sha256) for ref in m.refs] for m in matches] == want
        for m, row in zip(matches, sim):
            np.testing.assert_allclose([r.score for r in m.refs], [row[shas.index(r.image.sha256)] for r in m.refs], rtol=1e-5)
        assert library.match([]) == []


def test_encoder_embeddings_are_unit_rows_and_progress_is_reported(encoder: ClipEncoder) -> None:
    long_text = " ".join(["a girl in a yellow raincoat"] * 40)  # far beyond 77 tokens
    texts = encoder.embed_texts(["a lighthouse", long_text])
    assert texts.shape == (2, encoder.dim) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    done: list[int] = []
    calls = encoder.calls
    images = encoder.embed_images([make_picture(i) for i in range(5)], batch_size=2, progress=done.append)
    assert images.shape == (5, encoder.dim)
    assert done == [2, 2, 1] and encoder.calls == calls + 3
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, rtol=1e-5)
    assert encoder.embed_texts([]).shape == (0, encoder.dim)


def test_loading_a_missing_model_raises_model_unavailable_or_warns_once(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as excinfo:
        ClipEncoder.load(str(tmp_path / "no-such-model"))
    assert "--encoder" in str(excinfo.value) and "--backend preview" in str(excinfo.value)
    warnings: list[str] = []
    assert load_encoder_or_none("nobody/no-such-clip", warn=warnings.append) is None
    assert len(warnings) == 1
    assert "No CLIP model available" in warnings[0] and "matching on captions and tags" in warnings[0]


def test_torchvision_fallback_warning_is_silenced(tiny_clip_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        ClipEncoder.load(str(tiny_clip_dir))
    assert not [r for r in caplog.records if "torchvision" in r.getMessage()]


def test_lexical_fallback_finds_the_right_example_images(tmp_path: Path) -> None:
    theme = copy_example_theme(tmp_path)
    with ThemeLibrary.open(theme) as library:
        assert library.mode == "lexical" and len(library) >= 25
        girl, lamp_room = library.match(
            ["a girl in a yellow raincoat", "the lamp room with a great glass lens"], k=5, exclude_top=3
        )
        assert all(Path(r.image.file_name).name.startswith("mira_") for r in girl.refs[:3])
        assert Path(lamp_room.refs[0].image.file_name).name == "lamp_room_great_lens_lit.png"
        assert all(Path(r.image.file_name).name.startswith("lamp_room_") for r in lamp_room.refs[:3])
        assert girl.refs[0].score > girl.refs[-1].score >= 0.0
        [keeper] = library.match(["the old keeper"], k=3, pinned=[girl.refs[0].image.sha256])
        assert all(Path(r.image.file_name).name.startswith("keeper_") for r in keeper.refs)
        assert library.embed_texts(["x"]) is None and library.embed_images([make_picture(0)]) is None
        with pytest.raises(ValueError):
            library.embeddings_for([girl.refs[0].image.sha256])


def test_lexical_scoring_is_a_tfidf_cosine() -> None:
    assert stem("boots") == stem("boot") and stem("glowing") == stem("glow") and stem("shining") == stem("shine")
    assert stem("glass") == "glass" and stem("stairs") == stem("stair")
    assert terms("The girl IN a Raincoat!") == ["girl", "raincoat"]
    index = LexicalIndex(["red boat on the sea", "a red door", "a blue boat", ""])
    scores = index.scores(["red boat", "nothing shared", "the"])
    assert scores.shape == (3, 4)
    # Worked by hand: N=4 docs, idf = ln(5 / (1 + df)) + 1; "red" and "boat" are in 2 docs, "sea" in 1.
    idf2, idf1 = math.log(5 / 3) + 1, math.log(5 / 2) + 1
    doc0 = np.array([idf2, idf2, idf1]) / math.sqrt(2 * idf2**2 + idf1**2)
    query = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)
    assert scores[0, 0] == pytest.approx(float(doc0 @ query), rel=1e-5)
    # "red door" shares only "red" with the query; "blue boat" only "boat", with the same weights.
    assert scores[0, 1] == pytest.approx(idf2 / (math.sqrt(2) * math.hypot(idf2, idf1)), rel=1e-5)
    assert scores[0, 2] == pytest.approx(scores[0, 1])
    assert scores[0, 3] == 0.0 and not scores[1].any() and not scores[2].any()
    assert ((scores >= 0) & (scores <= 1 + 1e-6)).all()


def test_library_embeddings_match_the_files(tmp_path: Path, encoder: ClipEncoder) -> None:
    folder = tmp_path / "refs"
    make_images(folder, 3)
    with ThemeLibrary.open(folder, encoder) as library:
        image = library.images[1]
        direct = encoder.embed_images([open_image(image.path)])
        np.testing.assert_allclose(library.embed_images([open_image(image.path)]), direct, rtol=1e-5)
        np.testing.assert_allclose(library.embeddings_for([image.sha256]), direct, rtol=1e-4, atol=1e-5)
        with pytest.raises(KeyError):
            library.embeddings_for(["0" * 64])
