"""The story format: schema, loading and validation with located errors.

A story is the user's own writing; a typo in it must never be silently ignored and must never end in
a traceback. ``load_story`` is the one entry point: it reads TOML with the standard library,
validates it with pydantic (unknown keys are errors), checks every cross reference (character and
scene ids, speakers, pinned reference files), and raises one ``StoryError`` listing every problem
with its key path, line and a likely fix.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ipprompt.errors import IppromptError
from ipprompt.story.schema import (  # noqa: F401  (the schema, re-exported: ipprompt.story.loading is the public home)
    DEFAULT_MODEL,
    DEFAULT_ENCODER,
    SEARCH_MODES,
    METHODS,
    Shape,
    DEFAULT_FAST_LORA,
    FAST_DEFAULTS,
    MAX_STORY_BYTES,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    Generation,
    Character,
    Scene,
    Dialogue,
    Panel,
    StoryDocument,
)
from ipprompt.story.tomllines import LineIndex

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

@dataclass(frozen=True)
class Story:
    """A validated story: the document plus where it lives (paths resolve relative to it)."""

    path: Path
    doc: StoryDocument

    @property
    def title(self) -> str:
        return self.doc.title

    @property
    def style(self) -> str:
        return self.doc.style

    @property
    def generation(self) -> Generation:
        return self.doc.generation

    @property
    def characters(self) -> dict[str, Character]:
        return self.doc.characters

    @property
    def scenes(self) -> dict[str, Scene]:
        return self.doc.scenes

    @property
    def panels(self) -> list[Panel]:
        return self.doc.panels

    @property
    def folder(self) -> Path:
        return self.path.parent

    def display_name(self, character_id: str) -> str:
        c = self.characters.get(character_id)
        return (c.name or character_id) if c else character_id

    def ref_paths(self, character_id: str) -> list[Path]:
        """Pinned reference files of a character, as absolute paths."""
        return [(self.folder / r).resolve() for r in self.characters[character_id].refs]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a story, located as precisely as the file allows."""

    key: str
    message: str
    line: int | None = None
    column: int | None = None

    def format(self, file: Path) -> str:
        where = f"{file}"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class StoryError(IppromptError):
    """A story file that cannot be used; lists every problem found, each located."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join("  " + p.format(path) for p in problems)
        super().__init__(f"{path} has {count}:\n{lines}", "Fix the story and run `ipprompt story check` again.")


# --------------------------------------------------------------------------- locating keys


def _known_keys(loc: tuple[str, ...]) -> list[str]:
    """Valid key names at a normalised location ('*' stands for an index or an id)."""
    table: dict[tuple[str, ...], type[BaseModel]] = {
        (): StoryDocument,
        ("generation",): Generation,
        ("characters", "*"): Character,
        ("scenes", "*"): Scene,
        ("panels", "*"): Panel,
        ("panels", "*", "dialogue", "*"): Dialogue,
    }
    model = table.get(loc)
    return list(model.model_fields) if model else []


def _normalise(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """Replace list indexes and character/scene ids by '*' so a location names a table kind."""
    out = ["*" if isinstance(part, int) else str(part) for part in loc]
    if len(out) > 1 and out[0] in ("characters", "scenes"):
        out[1] = "*"
    return tuple(out)


def _key_path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            bare = re.fullmatch(r"[A-Za-z0-9_-]+", str(part))
            piece = str(part) if bare else f'"{part}"'
            text += f".{piece}" if text else piece
    return text


# --------------------------------------------------------------------------- loading


def _did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    if options:
        return "valid: " + ", ".join(f"'{o}'" for o in options)
    return ""


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of a value a user wrote, cut short: a pasted table must not flood the error."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pydantic_problems(error: ValidationError, lines: LineIndex) -> list[Problem]:
    problems: list[Problem] = []
    for e in error.errors():
        loc = tuple(e["loc"])
        kind = e["type"]
        line = lines.line_of(loc)
        if kind == "extra_forbidden":
            key = str(loc[-1])
            known = _known_keys(_normalise(loc[:-1]))
            hint = _did_you_mean(key, known)
            msg = f"unknown key '{key}'" + (f"; {hint}" if hint else "")
        elif kind == "missing":
            msg = "required key is missing"
            line = lines.line_of(loc[:-1]) if loc[:-1] else None
        elif kind == "literal_error":
            expected = e.get("ctx", {}).get("expected", "")
            got = e.get("input")
            msg = f"{_short(got)} is not allowed; expected {expected}"
            options = re.findall(r"'([^']+)'", str(expected))
            if isinstance(got, str) and options:
                hint = _did_you_mean(got, options)
                if hint.startswith("did"):
                    msg += f"; {hint}"
        elif kind == "value_error":
            msg = str(e.get("ctx", {}).get("error", e["msg"]))
        elif kind.endswith("_type") or kind in ("model_type", "dict_type", "tuple_type"):
            got = e.get("input")
            expected = kind.replace("_type", "").replace("model", "table").replace("dict", "table")
            expected = {"tuple": "list", "string": "string", "int": "integer", "float": "number", "bool": "true or false"}.get(expected, expected)
            msg = f"expected {expected}, got {type(got).__name__} {_short(got)}"
            if isinstance(got, str) and expected in ("integer", "number") and re.fullmatch(r"-?\d+(\.\d+)?", got):
                msg += f" (write {got} without quotes)"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            ctx = e.get("ctx", {})
            bound = {"greater_than_equal": "at least", "less_than_equal": "at most", "greater_than": "more than", "less_than": "less than"}[kind]
            limit = next(iter(ctx.values()), "?")
            msg = f"must be {bound} {limit} (got {_short(e.get('input'))})"
        elif kind == "string_too_long":
            limit = e.get("ctx", {}).get("max_length", "?")
            msg = f"too long ({len(str(e.get('input', '')))} characters; at most {limit} are accepted)"
        elif kind in ("too_short", "string_too_short"):
            msg = "must not be empty" if not e.get("input") else e["msg"].lower()
        else:
            msg = e["msg"]
        problems.append(Problem(_key_path(loc), msg, line))
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


def _unreadable_image(path: Path) -> str | None:
    """Why a pinned reference cannot be used, or None when it opens as theme images do.

    The same opener and limits as theme images (``ipprompt.images``): a reference that passes the
    check here is one the run can use.
    """
    from ipprompt.images import ImageRejected, open_image

    try:
        open_image(path)
    except ImageRejected as rejected:
        return rejected.reason
    return None


def _theme_problem(doc: StoryDocument, folder: Path, lines: LineIndex) -> Problem | None:
    """``theme = "/"`` or a system folder, found before anything walks it (a missing theme is
    reported by the commands that open it, with the places they looked)."""
    from ipprompt.paths import resolve_theme_path
    from ipprompt.theme.folders import unsafe_reason

    try:
        theme = resolve_theme_path(doc.theme, relative_to=folder)
    except IppromptError:
        return None
    reason = unsafe_reason(theme)
    if reason is None:
        return None
    return Problem("theme", f"cannot use {theme} as a theme folder: it is {reason}", lines.line_of(("theme",)))


def _reference_problems(doc: StoryDocument, folder: Path, lines: LineIndex) -> list[Problem]:
    problems: list[Problem] = []
    if (theme_problem := _theme_problem(doc, folder, lines)) is not None:
        problems.append(theme_problem)
    char_ids = list(doc.characters)
    scene_ids = list(doc.scenes)

    def unknown(loc: tuple[Any, ...], kind: str, value: str, options: list[str]) -> None:
        hint = _did_you_mean(value, options)
        if not options:
            hint = f"the story defines no {kind}s; add a [{kind}s.{value}] table"
        problems.append(Problem(_key_path(loc), f"unknown {kind} id '{value}'" + (f"; {hint}" if hint else ""), lines.line_of(loc)))

    for cid, character in doc.characters.items():
        for i, ref in enumerate(character.refs):
            loc = ("characters", cid, "refs", i)
            path = folder / ref
            if not path.is_file():
                problems.append(Problem(_key_path(loc), f"reference image not found: {path}", lines.line_of(loc)))
            elif (reason := _unreadable_image(path)) is not None:
                problems.append(Problem(_key_path(loc), f"not a readable image: {path} ({reason})", lines.line_of(loc)))
    for p, panel in enumerate(doc.panels):
        for c, cid in enumerate(panel.characters):
            if cid not in doc.characters:
                unknown(("panels", p, "characters", c), "character", cid, char_ids)
        if panel.scene is not None and panel.scene not in doc.scenes:
            unknown(("panels", p, "scene"), "scene", panel.scene, scene_ids)
        for d, line in enumerate(panel.dialogue):
            if line.speaker not in doc.characters:
                unknown(("panels", p, "dialogue", d, "speaker"), "character", line.speaker, char_ids)
        if not panel.elements and not panel.characters and panel.scene is None and not panel.prompt.strip():
            problems.append(Problem(_key_path(("panels", p)), "panel has nothing to draw", lines.line_of(("panels", p))))
    return problems


_TOO_DEEP = "arrays or tables nested too deeply to read; a story needs at most a few levels"


def parse_story(text: str, path: Path) -> Story:
    """Validate story ``text`` as if read from ``path``; raise StoryError listing every problem."""
    text = text.removeprefix("\ufeff")  # a byte-order mark some Windows editors write
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise StoryError(path, [Problem("", _TOO_DEEP)]) from None
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        col = getattr(exc, "colno", None)
        msg = getattr(exc, "msg", str(exc))
        if line is None:
            m = re.search(r"line (\d+), column (\d+)", str(exc))
            if m:
                line, col = int(m.group(1)), int(m.group(2))
            msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise StoryError(path, [Problem("", f"TOML syntax error: {msg}", line, col)]) from None
    lines = LineIndex(text)
    try:
        doc = StoryDocument.model_validate(data)
    except ValidationError as exc:
        try:
            problems = _pydantic_problems(exc, lines)
        except RecursionError:
            problems = [Problem("", _TOO_DEEP)]
        raise StoryError(path, problems) from None
    except RecursionError:
        raise StoryError(path, [Problem("", _TOO_DEEP)]) from None
    problems = _reference_problems(doc, path.parent, lines)
    if problems:
        raise StoryError(path, problems)
    return Story(path=path.resolve(), doc=doc)


def line_of(story: Story, loc: tuple[Any, ...]) -> int | None:
    """The line of ``story``'s file that wrote ``loc`` (e.g. ``("panels", 3)``), for located errors
    found after loading (checks that depend on the run's settings)."""
    try:
        return LineIndex(story.path.read_text(encoding="utf-8")).line_of(loc)
    except (OSError, UnicodeDecodeError):
        return None


def load_story(path: str | Path) -> Story:
    """Read and validate a story file; the one entry point for stories."""
    path = Path(path)
    try:
        size = path.stat().st_size if path.is_file() else 0
    except OSError:
        size = 0
    if size > MAX_STORY_BYTES:
        raise StoryError(path, [Problem("", f"the file is {size:,} bytes; a story may be at most {MAX_STORY_BYTES:,} bytes (1 MiB) "
                                            f"(texts at most {MAX_TEXT_CHARS} characters each)")])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise IppromptError(f"Story file not found: {path}", "Check the path; example: stories/lighthouse.toml") from None
    except IsADirectoryError:
        raise IppromptError(f"{path} is a folder, not a story file.", "Give the .toml file of the story.") from None
    except UnicodeDecodeError as exc:
        raise StoryError(path, [Problem("", f"not UTF-8 text (byte {exc.start}); save the story as UTF-8")]) from None
    except OSError as exc:  # a symlink loop, a FIFO gone away, no permission, ...
        from ipprompt.errors import user_os_error

        raise user_os_error(exc, f"Cannot read the story file {path}") from None
    return parse_story(text, path)
