"""The storyboard: rendered from a real preview run, every link resolves, user text stays text.

A preview-backend run of the example story is made once per test session (a few seconds) and
copied for each test that writes into it. Six panels are generated and four left pending, so
both kinds of panel are on the page.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, STORIES
from ipprompt.errors import IppromptError
from ipprompt.storyboard.render import render_storyboard, storyboard_path

DONE_PANELS = "1-6"
PAYLOAD = '<script>alert(1)</script>" onerror="alert(2)" x="'
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# --------------------------------------------------------------------------- the example run


def example_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's preview run of the example story, made on first use and then reused.

    Kept on disk under the session's base temp folder (not in a fixture cache) so that
    test_browser.py shares the same run: a fixture defined in one test module is not shared.
    Treat it as read-only; copy it (``run_copy``) to write into it.
    """
    base = tmp_path_factory.getbasetemp()
    final = base / "storyboard-example-run"
    if (final / "manifest.json").is_file():
        return final
    from ipprompt.pipeline.run import run_story

    work = base / f"storyboard-example-build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(STORIES, work / "stories", ignore=shutil.ignore_patterns("index.sqlite*", "__pycache__"))
    # 256 px tiles instead of 512: the same run at a quarter of the pixels, twice as fast.
    run_story(work / "stories" / "lighthouse.toml", backend="preview", out=work / "run", panels=DONE_PANELS, tile=256)
    os.replace(work / "run", final)
    return final


@pytest.fixture()
def run_copy(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A writable copy of the example run."""
    dest = tmp_path / "run"
    shutil.copytree(example_run_dir(tmp_path_factory), dest)
    return dest


def manifest_of(run: Path) -> dict[str, Any]:
    """The run's whole manifest (index and panel records) as one format-2 document: written back
    to manifest.json, it is read as it is (an older run's manifest, or a hand-edited one)."""
    from ipprompt.runfolder.manifest import read_manifest

    return {**read_manifest(run).model_dump(mode="json"), "format": 2}


# --------------------------------------------------------------------------- a small DOM


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.text: list[str] = []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def iter(self) -> Any:
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)]

    def all_text(self) -> str:
        return "".join(n_text for n in self.iter() for n_text in n.text)


class Dom(HTMLParser):
    """The page as a tree of tags (enough to check structure); text is unescaped, as a browser shows it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.current = self.root
        self.by_id: dict[str, Node] = {}
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if node.attrs.get("id"):
            assert node.attrs["id"] not in self.by_id, f"duplicate id {node.attrs['id']}"
            self.by_id[node.attrs["id"]] = node  # type: ignore[index]
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent  # type: ignore[assignment]
        if node is not self.root:
            self.current = node.parent  # type: ignore[assignment]

    def handle_data(self, data: str) -> None:
        self.current.text.append(data)


def parse(path: Path) -> Dom:
    return Dom(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the example story


def test_storyboard_of_the_example_run(run_copy: Path) -> None:
    out = render_storyboard(run_copy)
    assert out == run_copy / "storyboard.html"
    manifest = manifest_of(run_copy)
    dom = parse(out)

    # Every image is a relative link to a file of the run folder (zip it, move it, serve it).
    images = dom.root.find_all("img")
    assert len(images) > 100
    for img in images:
        src = img.attrs.get("src") or ""
        assert src and not src.startswith(("/", "file:", "http:", "https:", "data:")), src
        assert (run_copy / src).is_file(), f"<img src={src!r}> does not exist"
    for link in dom.root.find_all("a"):
        href = link.attrs.get("href")
        if href and not href.startswith("#"):
            assert (run_copy / href).is_file(), href
    assert not dom.root.find_all(cls="missing")

    title = dom.root.find_all("h1")[0].all_text()
    assert title == manifest["story"]["title"]
    assert dom.root.find_all(cls="preview-banner"), "a preview run must say so"

    panels = manifest["panels"]
    assert len(panels) == 10 and sum(p["status"] == "done" for p in panels) == 6
    for p in panels:
        n = p["number"]
        article = dom.by_id[f"panel-{n}"]
        if p["caption"]:
            assert [x.all_text() for x in article.find_all(cls="narration")] == [p["caption"]]
        bubbles = article.find_all(cls="bubble")
        assert len(bubbles) == len(p["dialogue"])
        for bubble, line in zip(bubbles, p["dialogue"]):
            assert bubble.find_all(cls="speaker")[0].all_text() == line["name"]
            assert line["text"] in bubble.all_text()
        inspector = dom.by_id[f"inspect-{n}"]
        assert inspector.tag == "details"
        if p["status"] != "done":
            assert "pending" in article.classes
            assert p["prompt"] in article.find_all(cls="placeholder")[0].all_text()
            assert not article.find_all("img")
            continue
        assert [i.attrs["src"] for i in article.find_all("img")] == [p["image"]]
        body = inspector.all_text()
        assert p["text"] in body and p["prompt"] in body
        for fact in ("Seed", "Steps", "Guidance", "Model", "Time", "NFE"):
            assert fact in body
        srcs = {i.attrs["src"] for i in inspector.find_all("img")}
        assert p["mask"] in srcs
        for element in p["elements"]:
            for ref in element["refs"]:
                assert ref["thumb"] in srcs
                assert f"{ref['score']:.3f}" in body
        cards = inspector.find_all("article", cls="candidate")
        assert [int(c.attrs["data-candidate"]) for c in cards] == [c["index"] for c in p["candidates"]]
        for card, cand in zip(cards, p["candidates"]):
            card_srcs = {i.attrs["src"] for i in card.find_all("img")}
            assert cand["grid"] in card_srcs and cand["image"] in card_srcs
            assert ("pruned" in card.classes) == cand["pruned"]
            assert bool(card.find_all(cls="badge-pruned")) == cand["pruned"]
            totals = [s for s in (cand["preview_scores"], cand["scores"]) if s]
            for s in totals:
                assert f"{s['total']:.3f}" in card.all_text()
        chosen = [c for c in cards if "chosen" in c.classes]
        assert len(chosen) == 1, f"panel {n}: exactly one chosen candidate"
        assert int(chosen[0].attrs["data-candidate"]) == p["chosen"]
        assert chosen[0].find_all(cls="badge-chosen")[0].all_text() == "chosen"
        assert sum(bool(c.find_all(cls="badge-chosen")) for c in cards) == 1


def test_run_story_renders_the_storyboard(tmp_path_factory: pytest.TempPathFactory) -> None:
    """run_story's last step renders the page; a re-render leaves no temporary file behind."""
    run = example_run_dir(tmp_path_factory)
    page = run / "storyboard.html"
    assert page.is_file() and "The Lighthouse Keeper" in page.read_text(encoding="utf-8")
    assert storyboard_path(run) == page


def test_page_is_written_atomically_and_readable_by_all(run_copy: Path) -> None:
    (run_copy / "storyboard.html").unlink()
    out = render_storyboard(run_copy)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644, "a static server running as another user must read it"
    assert sorted(p.name for p in run_copy.iterdir() if p.name.startswith(".") and p.name not in (".manifest.lock", ".active.lock")) == []


def test_single_file_inlines_every_image(run_copy: Path, tmp_path: Path) -> None:
    out = render_storyboard(run_copy, single_file=True)
    assert out.name == "storyboard-single.html"
    moved = tmp_path / "elsewhere" / out.name
    moved.parent.mkdir()
    shutil.move(out, moved)  # one file, no folder: it must not link anything
    dom = parse(moved)
    images = dom.root.find_all("img")
    assert len(images) > 100
    assert all((i.attrs.get("src") or "").startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for i in images)
    assert not [a.attrs["href"] for a in dom.root.find_all("a") if a.attrs.get("href") and not a.attrs["href"].startswith("#")]


def test_missing_files_show_a_placeholder_not_a_broken_image(run_copy: Path) -> None:
    manifest = manifest_of(run_copy)
    (run_copy / next(c["grid"] for c in manifest["panels"][0]["candidates"] if c["index"] == 1)).unlink()
    dom = parse(render_storyboard(run_copy))
    assert all((run_copy / i.attrs["src"]).is_file() for i in dom.root.find_all("img"))
    card = dom.by_id["panel-1-candidate-1"]
    assert card.find_all(cls="missing")


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "/etc/passwd", "../../../etc/passwd", "panels\\..\\x.png", "data:text/html,<b>"])
def test_manifest_paths_never_leave_the_run_folder(run_copy: Path, bad: str) -> None:
    manifest = manifest_of(run_copy)
    panel = manifest["panels"][0]
    panel["image"] = bad
    panel["candidates"][0]["grid"] = bad
    panel["elements"][0]["refs"][0]["thumb"] = bad
    (run_copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    html = render_storyboard(run_copy).read_text(encoding="utf-8")
    dom = Dom(html)
    for node in dom.root.iter():
        for name in ("src", "href"):
            value = node.attrs.get(name) or ""
            assert bad not in value and not value.lower().startswith(("javascript:", "data:", "/")), value


# --------------------------------------------------------------------------- escaping


def _inject(value: Any, key: str = "") -> Any:
    """Prefix every user-visible string of a manifest with PAYLOAD (paths and enums stay intact)."""
    if isinstance(value, dict):
        return {k: _inject(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_inject(v, key) for v in value]
    if isinstance(value, str) and key not in {"thumb", "image", "grid", "mask", "status", "backend", "sha256", "key", "picked_by", "shape"}:
        return PAYLOAD + value
    return value


def test_user_text_is_escaped_everywhere(run_copy: Path) -> None:
    manifest = _inject(manifest_of(run_copy))
    # The fields named in the spec, explicitly, whatever _inject does.
    manifest["story"]["title"] = PAYLOAD
    p1 = manifest["panels"][0]
    p1["caption"], p1["prompt"] = PAYLOAD, PAYLOAD
    p1["dialogue"] = [{"speaker": "mira", "name": PAYLOAD, "text": PAYLOAD}]
    pending = next(p for p in manifest["panels"] if p["status"] == "pending")
    pending["prompt"] = PAYLOAD
    (run_copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    html = render_storyboard(run_copy).read_text(encoding="utf-8")
    dom = Dom(html)
    scripts = dom.root.find_all("script")
    ours = (REPO / "templates" / "storyboard.js").read_text(encoding="utf-8")
    assert len(scripts) == 1 and scripts[0].all_text().strip() == ours.strip(), "only our own script"
    for node in dom.root.iter():
        injected = [a for a in node.attrs if a.startswith("on") or a == "x"]
        assert not injected, f"<{node.tag}> got attributes {injected}"
    assert "<script>alert" not in html
    # The payload is shown as text: as the caption, the title, a bubble and a speaker name.
    article = dom.by_id["panel-1"]
    assert article.find_all(cls="narration")[0].all_text() == PAYLOAD
    assert article.find_all(cls="speaker")[0].all_text() == PAYLOAD
    assert dom.root.find_all("h1")[0].all_text() == PAYLOAD
    assert dom.root.find_all("title")[0].all_text().startswith(PAYLOAD)
    assert PAYLOAD in dom.by_id[f"panel-{pending['number']}"].all_text()
    # The single-file page goes through the same templates.
    single = Dom(render_storyboard(run_copy, single_file=True).read_text(encoding="utf-8"))
    assert len(single.root.find_all("script")) == 1


# --------------------------------------------------------------------------- errors and overrides


def test_missing_or_broken_manifest_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(IppromptError) as err:
        render_storyboard(tmp_path / "nowhere")
    assert "nowhere" in err.value.message and "ipprompt story run" in (err.value.hint or "")

    with pytest.raises(IppromptError) as err:
        render_storyboard(tmp_path)
    assert str(tmp_path) in err.value.message and "ipprompt story run" in (err.value.hint or "")

    (tmp_path / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(IppromptError) as err:
        render_storyboard(tmp_path)
    assert "manifest.json" in err.value.message and "ipprompt story run" in (err.value.hint or "")

    (tmp_path / "manifest.json").write_text(json.dumps({"format": 99, "panels": []}), encoding="utf-8")
    with pytest.raises(IppromptError, match="format 99"):
        render_storyboard(tmp_path)


def test_storyboard_path(tmp_path: Path, run_copy: Path) -> None:
    with pytest.raises(IppromptError, match="not a run folder"):
        storyboard_path(tmp_path)
    (run_copy / "storyboard.html").unlink()
    with pytest.raises(IppromptError) as err:
        storyboard_path(run_copy)
    assert "ipprompt story render" in (err.value.hint or "")
    page = render_storyboard(run_copy)
    assert storyboard_path(run_copy) == page


def test_user_templates_override_ours_by_name(run_copy: Path, tmp_path: Path) -> None:
    mine = tmp_path / "templates"
    mine.mkdir()
    (mine / "storyboard.css").write_text("/* my-own-style */ body { background: pink; }", encoding="utf-8")
    html = render_storyboard(run_copy, templates=mine).read_text(encoding="utf-8")
    assert "my-own-style" in html and "class=\"panel" in html, "the CSS is replaced, the page is ours"

    (mine / "storyboard.html.j2").write_text("<h1>{{ title }}</h1>{% for p in panels %}<p>{{ p.caption }}</p>{% endfor %}", encoding="utf-8")
    manifest = manifest_of(run_copy)
    manifest["story"]["title"] = "<b>bold</b>"
    (run_copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    html = render_storyboard(run_copy, templates=mine).read_text(encoding="utf-8")
    assert html.startswith("<h1>&lt;b&gt;bold&lt;/b&gt;</h1>"), "user templates are autoescaped too"

    (mine / "storyboard.html.j2").write_text("{{ no_such_thing.x }}", encoding="utf-8")
    with pytest.raises(IppromptError, match="Cannot render"):
        render_storyboard(run_copy, templates=mine)
    with pytest.raises(IppromptError, match="does not exist"):
        render_storyboard(run_copy, templates=tmp_path / "absent")


def test_old_or_partial_manifests_render(run_copy: Path) -> None:
    """A manifest missing optional fields (an older run, a hand edit) still renders."""
    manifest = manifest_of(run_copy)
    slim = copy.deepcopy(manifest)
    for key in ("settings", "models", "machine", "theme", "totals", "tool", "created", "updated"):
        slim.pop(key)
    done = slim["panels"][0]
    for key in ("text", "seconds", "nfe", "pinned", "characters"):
        done.pop(key)
    for cand in done["candidates"]:
        cand.pop("preview_scores")
        cand.pop("arrangement")
    (run_copy / "manifest.json").write_text(json.dumps(slim), encoding="utf-8")
    dom = parse(render_storyboard(run_copy))
    assert len(dom.root.find_all("article", cls="panel")) == len(manifest["panels"])


# --------------------------------------------------------------------------- the wheel


def _hatchling_into(python: Path) -> str | None:
    """Install hatchling into the test venv; None on success, else why not (offline, no index)."""
    try:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "hatchling>=1.21"],
            capture_output=True, text=True, timeout=180,
        )
    except subprocess.TimeoutExpired:
        return "installing hatchling timed out"
    return None if done.returncode == 0 else "hatchling (the build backend) cannot be installed here: " + done.stderr.strip()[-300:]


@pytest.mark.slow
def test_wheel_ships_the_templates(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Built as a wheel and installed elsewhere, ipprompt still finds its templates."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    reason = _hatchling_into(python)
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dist = tmp_path / "dist"
    build = subprocess.run(
        [str(python), "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--disable-pip-version-check", "-w", str(dist), str(REPO)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("ipprompt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("storyboard.html.j2", "_inspector.html.j2", "_macros.html.j2", "storyboard.css", "storyboard.js"):
        assert f"ipprompt/templates/{name}" in names
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr

    run = tmp_path / "run"
    shutil.copytree(example_run_dir(tmp_path_factory), run)
    (run / "storyboard.html").unlink()
    script = (
        "import sys, ipprompt, jinja2\n"
        "from pathlib import Path\n"
        "from ipprompt.storyboard.render import _builtin_loader, render_storyboard\n"
        "assert Path(ipprompt.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), ipprompt.__file__\n"
        "assert isinstance(_builtin_loader(), jinja2.PackageLoader), 'templates must come from the wheel'\n"
        "print(render_storyboard(sys.argv[1]))\n"
    )
    rendered = subprocess.run([str(python), "-c", script, str(run)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    page = (run / "storyboard.html").read_text(encoding="utf-8")
    assert "The Lighthouse Keeper" in page and "candidate chosen" in page
