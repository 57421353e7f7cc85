"""The storyboard: one HTML page that shows a run as a comic and explains how each panel was made.

The page is rendered from ``manifest.json`` alone (nothing is recomputed), so re-rendering after a
template change is instant and a run can be re-rendered on a machine without models. Links are
relative to the run folder, so the folder can be zipped, moved or served by any static server;
``single_file=True`` inlines every image as a data URI for sharing one file instead.

Templates are Jinja2 with autoescaping on: every string from a story (titles, prompts, captions,
dialogue, names, file names) is user data and is escaped, never marked safe. A ``--templates``
folder is searched before ours, so any template (or the CSS and JS it includes) can be overridden
by name.
"""

from __future__ import annotations

import base64
import io
import importlib.resources
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import jinja2

from ipprompt.backends.registry import runs_no_model
from ipprompt.errors import IppromptError
from ipprompt.story.textclean import finalize
from ipprompt.dvp.pruning import search_label
from ipprompt.evaluate.deltas import format_delta
from ipprompt.evaluate.results import eval_for_page
from ipprompt.storyboard.page import add_pick_views, page_layouts, run_argument
from ipprompt.runfolder.safepath import inside_or_none
from ipprompt.runfolder.manifest import (
    MANIFEST,
    CandidateEntry,
    CellEntry,
    ElementEntry,
    PanelEntry,
    RefEntry,
    RunManifest,
    Scores,
    StoryInfo,
    read_manifest,
)

STORYBOARD = "storyboard.html"
STORYBOARD_SINGLE = "storyboard-single.html"
TEMPLATE = "storyboard.html.j2"

UrlFor = Callable[[Any], "str | None"]


# --------------------------------------------------------------------------- templates


def _builtin_loader() -> jinja2.BaseLoader:
    """Our templates: inside the package when installed from a wheel, else the repository's folder.

    The wheel force-includes the top-level ``templates/`` folder as ``ipprompt/templates``; an
    editable install has no such folder, so we look next to the package instead.
    """
    packaged = importlib.resources.files("ipprompt") / "templates"
    if packaged.is_dir():
        return jinja2.PackageLoader("ipprompt", "templates")
    return jinja2.FileSystemLoader(Path(__file__).resolve().parents[2] / "templates")


def make_environment(templates: Path | None = None) -> jinja2.Environment:
    """A Jinja environment with autoescaping on; ``templates`` (if given) overrides ours by name."""
    loaders: list[jinja2.BaseLoader] = []
    if templates is not None:
        folder = Path(templates).expanduser()
        if not folder.is_dir():
            raise IppromptError(
                f"Templates folder {folder} does not exist.",
                f"Pass a folder holding templates to override by name, e.g. a copy of {TEMPLATE}.",
            )
        loaders.append(jinja2.FileSystemLoader(folder))
    loaders.append(_builtin_loader())
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        finalize=finalize,  # no NUL or escape sequence from a story reaches the page
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["score"] = format_score
    env.filters["seconds"] = format_seconds
    env.filters["bytes"] = format_bytes
    env.filters["delta"] = format_delta  # eval page: "+492.7 s (+38%)", not "+492.736"
    env.filters["search_label"] = search_label  # "exhaustive" when no rung fell before the last step
    return env


# --------------------------------------------------------------------------- formatting


def format_score(value: Any) -> str:
    """Scores to three decimals; a missing score is a dash, not 'None'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    return f"{value:.3f}"


def format_seconds(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes} min {seconds:02d} s"


def format_bytes(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return "—"
    return f"{value / 2**30:.1f} GiB"


# --------------------------------------------------------------------------- links


def _safe_relative(run_dir: Path, rel: Any) -> Path | None:
    """The file a manifest path names, or None when it is absent or points outside the run folder.

    The manifest is a file on disk that anyone could edit: a path such as ``javascript:...`` or
    ``../../etc/passwd`` must never become a link (the one check: ``RunFolder.resolve``).
    """
    path = inside_or_none(run_dir, rel)
    return path if path is not None and path.is_file() else None


def relative_urls(run_dir: Path) -> UrlFor:
    """Percent-encoded links relative to the storyboard (which sits in the run folder)."""

    def url(rel: Any) -> str | None:
        path = _safe_relative(run_dir, rel)
        return None if path is None else quote(PurePosixPath(rel).as_posix(), safe="/")

    return url


INLINE_MAX_BYTES = 64 * 1024
INLINE_MAX_SIDE = 768


def _inline_bytes(run_dir: Path, path: Path) -> tuple[str, bytes] | None:
    """A run image's bytes for a data URI, or None when the file must not be inlined.

    A single-file page is meant to be sent to others, so it must carry only the run's own
    pictures: a link in the run folder (to ``/etc/passwd``, to ``~/.ssh``) or a text file named
    ``.png`` is treated as missing. Inlined are regular files, reached through no link inside the
    run folder, lying inside it once resolved, that Pillow recognises as images (header only).
    Big images become JPEG at most 768 px on a side: a default run holds dozens of 1536 px grids,
    and inlined as they are, the page would weigh tens of MB.
    """
    import stat

    from PIL import Image, UnidentifiedImageError

    from ipprompt.images import ImageRejected, ImageTooLarge, open_image, probe_image, read_image_bytes

    try:
        root = run_dir.resolve()
        current = run_dir
        for part in path.relative_to(run_dir).parts:
            current = current / part
            if current.is_symlink():
                return None
        if root not in path.resolve(strict=True).parents or not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        data = read_image_bytes(path)
        fmt = probe_image(data, name=str(path))[0]  # a decompression bomb stops here, by name
        mime = Image.MIME.get(fmt, "")
    except ImageTooLarge:
        raise
    except (ImageRejected, OSError, RuntimeError, ValueError, UnidentifiedImageError):
        return None
    if not mime.startswith("image/"):
        return None
    if len(data) <= INLINE_MAX_BYTES:
        return mime, data
    try:
        im = open_image(data, name=str(path))
        im.thumbnail((INLINE_MAX_SIDE, INLINE_MAX_SIDE))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=88)
    except (ImageRejected, OSError, ValueError):
        return mime, data
    return "image/jpeg", buf.getvalue()


def data_urls(run_dir: Path) -> UrlFor:
    """Data URIs, each file encoded once however often it appears (reference thumbs repeat)."""
    cache: dict[Path, str | None] = {}

    def url(rel: Any) -> str | None:
        path = _safe_relative(run_dir, rel)
        if path is None:
            return None
        if path not in cache:
            inlined = _inline_bytes(run_dir, path)
            cache[path] = None if inlined is None else f"data:{inlined[0]};base64," + base64.b64encode(inlined[1]).decode("ascii")
        return cache[path]

    return url


# --------------------------------------------------------------------------- manifest → view


def _ref_view(ref: RefEntry | CellEntry, url: UrlFor) -> dict[str, Any]:
    return {**ref.model_dump(), "thumb_url": url(ref.thumb)}


def _element_name(element: ElementEntry, story: StoryInfo) -> str:
    """'Mira' rather than 'character:mira': the names a reader of the story knows."""
    kind, source = element.kind, element.source
    if kind == "character" and source in story.characters:
        return str(story.characters[source].get("name") or source)
    if kind == "scene" and source in story.scenes:
        return str(story.scenes[source].get("name") or source)
    if kind == "continuity":
        return f"panel {source}" if source else "previous panel"
    if kind == "explicit" and element.text:
        # A panel may list several explicit elements: their text tells them apart, the kind does not.
        return element.text if len(element.text) <= 32 else element.text[:31].rstrip() + "…"
    return element.label or kind or "element"


def _scores_rows(cand: CandidateEntry, element_names: list[str]) -> list[dict[str, Any]]:
    """Score table rows (metric, preview, final): the data the choice was made on, side by side."""
    preview, final = cand.preview_scores, cand.scores

    def get(scores: Scores | None, name: str) -> Any:
        return getattr(scores, name) if scores is not None else None

    rows = [
        {"metric": "total", "preview": get(preview, "total"), "final": get(final, "total"), "total": True},
        {"metric": "CLIP-T (text)", "preview": get(preview, "clip_t"), "final": get(final, "clip_t"), "total": False},
        {"metric": "CLIP-I (theme)", "preview": get(preview, "clip_i"), "final": get(final, "clip_i"), "total": False},
    ]
    pre_el = preview.per_element if preview else []
    fin_el = final.per_element if final else []
    for i in range(max(len(pre_el), len(fin_el))):
        name = element_names[i] if i < len(element_names) else f"element {i + 1}"
        rows.append({"metric": name, "preview": pre_el[i] if i < len(pre_el) else None, "final": fin_el[i] if i < len(fin_el) else None, "total": False})
    # Rows with no value at all (CLIP-T without an encoder) only add noise.
    return [r for r in rows if r["preview"] is not None or r["final"] is not None]


def _candidate_view(cand: CandidateEntry, panel: PanelEntry, names: list[str], url: UrlFor) -> dict[str, Any]:
    c = cand.model_dump()
    c["preview_scores"] = cand.preview_scores.model_dump() if cand.preview_scores else None
    c["scores"] = cand.scores.model_dump() if cand.scores else None
    c["chosen"] = cand.index == panel.chosen if panel.chosen is not None else cand.chosen
    c["scorer_choice"] = cand.index == panel.scorer_choice
    c["grid_url"] = url(cand.grid)
    c["image_url"] = url(cand.image)
    c["order_names"] = [names[o] if 0 <= o < len(names) else f"element {o + 1}" for o in cand.arrangement.order]
    c["offsets"] = list(cand.arrangement.offsets)
    c["method"] = (cand.scores or cand.preview_scores).method if (cand.scores or cand.preview_scores) else None
    c["score_rows"] = _scores_rows(cand, names)
    return c


def _panel_view(panel: PanelEntry, manifest: RunManifest, url: UrlFor, run_arg: str = "RUN") -> dict[str, Any]:
    """A manifest panel plus what the template should not have to work out: links, names, flags."""
    story = manifest.story
    p = panel.model_dump()
    p["dialogue"] = [
        {
            "speaker": d.speaker,
            "name": str(d.name or story.characters.get(d.speaker, {}).get("name") or d.speaker),
            "text": d.text,
            "side": "left" if i % 2 == 0 else "right",
        }
        for i, d in enumerate(panel.dialogue)
    ]
    p["characters"] = [{"id": c.id, "name": c.name or c.id} for c in panel.characters]
    p["scene_name"] = str(story.scenes.get(panel.scene or "", {}).get("name") or panel.scene or "")
    elements = []
    for e in panel.elements:
        ev = e.model_dump()
        ev["name"] = _element_name(e, story)
        # The inspector shows the name above the element's text unless it only repeats either.
        ev["heading"] = None if ev["name"] in (e.kind, e.text) or e.kind == "explicit" else ev["name"]
        ev["refs"] = [_ref_view(r, url) for r in e.refs]
        elements.append(ev)
    p["elements"] = elements
    names = [e["name"] for e in elements]
    p["pinned"] = [_ref_view(r, url) for r in panel.pinned]
    p["image_url"] = url(panel.image)
    p["mask_url"] = url(panel.mask)
    p["candidates"] = [_candidate_view(c, panel, names, url) for c in panel.candidates]
    p["done"] = panel.done and p["image_url"] is not None
    chosen = [c for c in p["candidates"] if c["chosen"]]
    p["chosen_candidate"] = chosen[0] if chosen else None
    p["pruned_count"] = sum(1 for c in panel.candidates if c.pruned)
    # Settings this panel was made with (a later run with other options leaves it as it was);
    # manifests from before per-panel settings fall back to the run's.
    made_with = panel.settings or manifest.settings
    p["made_with"] = made_with
    p["made_by_preview"] = p["done"] and runs_no_model(made_with.get("backend"))
    p["generator"] = str("preview backend (no model)" if runs_no_model(made_with.get("backend")) else made_with.get("model") or "")
    p["anchor"] = f"panel-{panel.number}"
    add_pick_views(p, panel, run_arg)
    # The print pass: the page keeps the grid-size image as its thumbnail; the large
    # panel is what the frame links to, what HiDPI screens load (srcset) and what the lightbox shows.
    up = panel.upscale
    p["print_url"] = url(up.image) if up is not None and p["done"] and p["frame_url"] == p["image_url"] else None
    p["print_x"] = up.factor if up is not None else None
    return p


def storyboard_context(
    manifest: RunManifest,
    url: UrlFor,
    *,
    single_file: bool = False,
    evaluation: dict[str, Any] | None = None,
    run_arg: str = "RUN",
) -> dict[str, Any]:
    """Everything the template sees: the manifest's own data plus a few computed fields.

    ``evaluation`` is the run's latest ``ipprompt eval`` result (``eval_for_page``), or None when
    the run was never evaluated: the page then has no metrics box at all.
    """
    panels = [_panel_view(p, manifest, url, run_arg) for p in manifest.panels]
    settings, models = manifest.settings, manifest.models
    backend = str(settings.get("backend") or "")
    return {
        "manifest": manifest,
        "title": manifest.story.title or "Untitled story",
        "story": manifest.story.model_dump(),
        "settings": settings,
        "models": models,
        "machine": manifest.machine,
        "theme": manifest.theme,
        "totals": manifest.totals.model_dump(),
        "tool": manifest.tool,
        "created": manifest.created,
        "updated": manifest.updated,
        "preview": any(p["made_by_preview"] for p in panels) or (runs_no_model(backend) and not any(p["done"] for p in panels)),
        "backend": backend,
        "generator": str(models.get("generator") or ("preview backend (no model)" if runs_no_model(backend) else settings.get("model") or "")),
        "lexical": models.get("retrieval") == "lexical",
        "panels": panels,
        "panels_done": sum(1 for p in panels if p["done"]),
        # Whether any made panel was judged at rungs (None: nothing made, the settings say it all).
        "searched_with_rungs": any(p["rungs"] for p in panels if p["done"]) if any(p["done"] for p in panels) else None,
        "single_file": single_file,
        "eval": evaluation,
        "layouts": page_layouts([p["shape"] for p in panels]),
    }


# --------------------------------------------------------------------------- entry points


def render_storyboard(run_dir: str | Path, *, single_file: bool = False, templates: Path | None = None) -> Path:
    """Write the run's storyboard (``storyboard.html``, or ``storyboard-single.html``) and return its path.

    Reads the manifest only. The file is replaced atomically, so a browser refreshing the page
    while a run re-renders it never sees half a page.
    """
    root = Path(run_dir)
    manifest = read_manifest(root)
    env = make_environment(templates)
    url = data_urls(root) if single_file else relative_urls(root)
    context = storyboard_context(manifest, url, single_file=single_file, evaluation=eval_for_page(root, manifest), run_arg=run_argument(root))
    try:
        html = env.get_template(TEMPLATE).render(context)
    except jinja2.TemplateError as exc:
        where = f" (templates from {templates} first)" if templates else ""
        location = f"{exc.name}:{exc.lineno}: " if isinstance(exc, jinja2.TemplateSyntaxError) else ""
        raise IppromptError(
            f"Cannot render the storyboard{where}: {location}{exc}",
            "Fix or remove the overriding template; the built-in ones need no changes.",
        ) from None
    from ipprompt.runfolder.folder import RunFolder  # Pillow only when writing, not to import this module

    return RunFolder(root).write_storyboard(STORYBOARD_SINGLE if single_file else STORYBOARD, html)


def storyboard_path(run_dir: str | Path) -> Path:
    """The run's existing ``storyboard.html``, or an error that says how to make it."""
    root = Path(run_dir)
    path = root / STORYBOARD
    if path.is_file():
        return path
    if (root / MANIFEST).is_file():
        raise IppromptError(f"{root} has no storyboard yet.", f"Render it: `ipprompt story render {root}`.")
    raise IppromptError(
        f"{root} is not a run folder (no {STORYBOARD}, no {MANIFEST}).",
        "Run a story first: `ipprompt story run STORY.toml --out FOLDER`.",
    )
