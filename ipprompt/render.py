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
import json
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import jinja2

from ipprompt.atomic import atomic_write_text
from ipprompt.errors import IppromptError
from ipprompt.runfolder import MANIFEST, MANIFEST_FORMAT

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
    return jinja2.FileSystemLoader(Path(__file__).resolve().parent.parent / "templates")


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
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["score"] = format_score
    env.filters["seconds"] = format_seconds
    env.filters["bytes"] = format_bytes
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
    ``../../etc/passwd`` must never become a link.
    """
    if not isinstance(rel, str) or not rel or "\\" in rel or ":" in rel:
        return None
    parts = PurePosixPath(rel)
    if parts.is_absolute() or ".." in parts.parts:
        return None
    path = run_dir.joinpath(*parts.parts)
    return path if path.is_file() else None


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

    try:
        root = run_dir.resolve()
        current = run_dir
        for part in path.relative_to(run_dir).parts:
            current = current / part
            if current.is_symlink():
                return None
        if root not in path.resolve(strict=True).parents or not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as probe:
            mime = Image.MIME.get(probe.format or "", "")
    except (OSError, RuntimeError, ValueError, UnidentifiedImageError):
        return None
    if not mime.startswith("image/"):
        return None
    if len(data) <= INLINE_MAX_BYTES:
        return mime, data
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            im.thumbnail((INLINE_MAX_SIDE, INLINE_MAX_SIDE))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=88)
    except (OSError, ValueError, Image.DecompressionBombError):
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


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest, or an IppromptError that says how to make one."""
    hint = f"Run a story first: `ipprompt story run STORY.toml --out {run_dir}` (add `--backend preview` to plan without a model)."
    path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise IppromptError(f"Run folder {run_dir} does not exist.", hint)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IppromptError(f"{run_dir} is not a run folder: it has no {MANIFEST}.", hint) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IppromptError(f"Cannot read {path}: {exc}", hint) from None
    if not isinstance(data, dict) or not isinstance(data.get("panels"), list):
        raise IppromptError(f"{path} is not an ipprompt manifest (no list of panels).", hint)
    if data.get("format") != MANIFEST_FORMAT:
        raise IppromptError(
            f"{path} has manifest format {data.get('format')!r}; this ipprompt reads format {MANIFEST_FORMAT}.",
            "Re-run the story with this version of ipprompt, or render with the version that made it.",
        )
    return data


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _ref_view(ref: Any, url: UrlFor) -> dict[str, Any]:
    r = _dict(ref)
    r.setdefault("caption", None)
    r.setdefault("score", None)
    r.setdefault("file", None)
    r["thumb_url"] = url(r.get("thumb"))
    return r


def _element_name(element: dict[str, Any], story: dict[str, Any]) -> str:
    """'Mira' rather than 'character:mira': the names a reader of the story knows."""
    kind, source = element.get("kind"), element.get("source")
    if not isinstance(source, (str, int)):
        source = None
    if kind == "character" and source in _dict(story.get("characters")):
        return _str(_dict(story["characters"][source]).get("name") or source)
    if kind == "scene" and source in _dict(story.get("scenes")):
        return _str(_dict(story["scenes"][source]).get("name") or source)
    if kind == "continuity":
        return f"panel {source}" if source else "previous panel"
    text = _str(element.get("text"))
    if kind == "explicit" and text:
        # A panel may list several explicit elements: their text tells them apart, the kind does not.
        return text if len(text) <= 32 else text[:31].rstrip() + "…"
    return _str(element.get("label") or kind or "element")


def _scores_rows(cand: dict[str, Any], element_names: list[str]) -> list[dict[str, Any]]:
    """Score table rows (metric, preview, final): the data the choice was made on, side by side."""
    preview, final = _dict(cand.get("preview_scores")), _dict(cand.get("scores"))
    rows = [
        {"metric": "total", "preview": preview.get("total"), "final": final.get("total"), "total": True},
        {"metric": "CLIP-T (text)", "preview": preview.get("clip_t"), "final": final.get("clip_t"), "total": False},
        {"metric": "CLIP-I (theme)", "preview": preview.get("clip_i"), "final": final.get("clip_i"), "total": False},
    ]
    pre_el, fin_el = _list(preview.get("per_element")), _list(final.get("per_element"))
    for i in range(max(len(pre_el), len(fin_el))):
        name = element_names[i] if i < len(element_names) else f"element {i + 1}"
        rows.append(
            {
                "metric": name,
                "preview": pre_el[i] if i < len(pre_el) else None,
                "final": fin_el[i] if i < len(fin_el) else None,
                "total": False,
            }
        )
    # Rows with no value at all (CLIP-T without an encoder) only add noise.
    return [r for r in rows if r["preview"] is not None or r["final"] is not None]


def _candidate_view(cand: Any, panel: dict[str, Any], names: list[str], url: UrlFor) -> dict[str, Any]:
    c = _dict(cand)
    arrangement = _dict(c.get("arrangement"))
    order = [o for o in _list(arrangement.get("order")) if isinstance(o, int)]
    c["index"] = c.get("index")
    c["round"] = c.get("round")
    c["seed"] = c.get("seed")
    c["steps_run"] = c.get("steps_run")
    c["scores"] = c.get("scores") if isinstance(c.get("scores"), dict) else None
    c["preview_scores"] = c.get("preview_scores") if isinstance(c.get("preview_scores"), dict) else None
    c["pruned"] = bool(c.get("pruned"))
    c["finished"] = bool(c.get("finished"))
    c["chosen"] = bool(c.get("chosen")) or (c["index"] is not None and c["index"] == panel.get("chosen"))
    c["grid_url"] = url(c.get("grid"))
    c["image_url"] = url(c.get("image"))
    c["order_names"] = [names[o] if 0 <= o < len(names) else f"element {o + 1}" for o in order]
    c["offsets"] = _list(arrangement.get("offsets"))
    c["method"] = _dict(c.get("scores")).get("method") or _dict(c.get("preview_scores")).get("method")
    c["score_rows"] = _scores_rows(c, names)
    return c


def _panel_view(panel: Any, manifest: dict[str, Any], url: UrlFor) -> dict[str, Any]:
    """A manifest panel plus what the template should not have to work out: links, names, flags."""
    p = _dict(panel)
    story = _dict(manifest.get("story"))
    characters = _dict(story.get("characters"))
    p["number"] = p.get("number")
    p["status"] = _str(p.get("status") or "pending")
    for key in ("prompt", "text", "caption", "scene", "seed", "chosen", "nfe", "seconds", "rounds_run", "peak_gpu_bytes"):
        p.setdefault(key, None)
    dialogue = []
    for i, line in enumerate(_list(p.get("dialogue"))):
        d = _dict(line)
        speaker = d.get("speaker")
        name = d.get("name") or _dict(characters.get(speaker)).get("name") or speaker or ""
        dialogue.append({"speaker": speaker, "name": _str(name), "text": _str(d.get("text")), "side": "left" if i % 2 == 0 else "right"})
    p["dialogue"] = dialogue
    p["characters"] = [
        {"id": c.get("id"), "name": _str(c.get("name") or c.get("id"))} for c in (_dict(x) for x in _list(p.get("characters")))
    ]
    p["scene_name"] = _str(_dict(_dict(story.get("scenes")).get(p["scene"])).get("name") or p["scene"] or "")
    elements = []
    for e in _list(p.get("elements")):
        ev = _dict(e)
        ev.setdefault("kind", None)
        ev.setdefault("text", None)
        ev["name"] = _element_name(ev, story)
        # The inspector shows the name above the element's text unless it only repeats either.
        ev["heading"] = None if ev["name"] in (ev["kind"], ev["text"]) or ev["kind"] == "explicit" else ev["name"]
        ev["refs"] = [_ref_view(r, url) for r in _list(ev.get("refs"))]
        elements.append(ev)
    p["elements"] = elements
    names = [e["name"] for e in elements]
    p["pinned"] = [_ref_view(r, url) for r in _list(p.get("pinned"))]
    p["image_url"] = url(p.get("image"))
    p["mask_url"] = url(p.get("mask"))
    p["candidates"] = [_candidate_view(c, p, names, url) for c in _list(p.get("candidates"))]
    p["done"] = p["status"] == "done" and p["image_url"] is not None
    chosen = [c for c in p["candidates"] if c["chosen"]]
    p["chosen_candidate"] = chosen[0] if chosen else None
    p["pruned_count"] = sum(1 for c in p["candidates"] if c["pruned"])
    # Settings this panel was made with (a later run with other options leaves it as it was);
    # manifests from before per-panel settings fall back to the run's.
    made_with = _dict(p.get("settings")) or _dict(manifest.get("settings"))
    p["made_with"] = made_with
    p["made_by_preview"] = p["done"] and made_with.get("backend") == "preview"
    p["generator"] = _str("preview backend (no model)" if made_with.get("backend") == "preview" else made_with.get("model") or "")
    p["anchor"] = f"panel-{p['number']}"
    return p


def storyboard_context(manifest: dict[str, Any], url: UrlFor, *, single_file: bool = False) -> dict[str, Any]:
    """Everything the template sees: the manifest's own dicts plus a few computed fields."""
    story = _dict(manifest.get("story"))
    settings = _dict(manifest.get("settings"))
    models = _dict(manifest.get("models"))
    panels = [_panel_view(p, manifest, url) for p in _list(manifest.get("panels"))]
    backend = _str(settings.get("backend"))
    return {
        "manifest": manifest,
        "title": _str(story.get("title") or "Untitled story"),
        "story": story,
        "settings": settings,
        "models": models,
        "machine": _dict(manifest.get("machine")),
        "theme": _dict(manifest.get("theme")),
        "totals": _dict(manifest.get("totals")),
        "tool": _str(manifest.get("tool")),
        "created": _str(manifest.get("created")),
        "updated": _str(manifest.get("updated")),
        "preview": any(p["made_by_preview"] for p in panels) or (backend == "preview" and not any(p["done"] for p in panels)),
        "backend": backend,
        "generator": _str(models.get("generator") or ("preview backend (no model)" if backend == "preview" else settings.get("model"))),
        "lexical": models.get("retrieval") == "lexical",
        "panels": panels,
        "panels_done": sum(1 for p in panels if p["done"]),
        "single_file": single_file,
    }


# --------------------------------------------------------------------------- entry points


def _write_page(path: Path, html: str) -> None:
    """Write via a temporary file and an atomic rename, readable by all (0644).

    A static web server usually runs as another user, so the page must not keep mkstemp's 0600.
    """
    atomic_write_text(path, html)


def render_storyboard(run_dir: str | Path, *, single_file: bool = False, templates: Path | None = None) -> Path:
    """Write the run's storyboard (``storyboard.html``, or ``storyboard-single.html``) and return its path.

    Reads the manifest only. The file is replaced atomically, so a browser refreshing the page
    while a run re-renders it never sees half a page.
    """
    root = Path(run_dir)
    manifest = read_manifest(root)
    env = make_environment(templates)
    url = data_urls(root) if single_file else relative_urls(root)
    context = storyboard_context(manifest, url, single_file=single_file)
    try:
        html = env.get_template(TEMPLATE).render(context)
    except jinja2.TemplateError as exc:
        where = f" (templates from {templates} first)" if templates else ""
        location = f"{exc.name}:{exc.lineno}: " if isinstance(exc, jinja2.TemplateSyntaxError) else ""
        raise IppromptError(
            f"Cannot render the storyboard{where}: {location}{exc}",
            "Fix or remove the overriding template; the built-in ones need no changes.",
        ) from None
    out = root / (STORYBOARD_SINGLE if single_file else STORYBOARD)
    _write_page(out, html)
    return out


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
