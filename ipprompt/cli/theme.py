"""`ipprompt theme ...`: build, inspect and search themes (libraries of reference images).

Thin on purpose: every command parses its arguments, calls ``ThemeLibrary`` and prints with rich.
Tables and progress go to the terminal; ``search --json`` writes only JSON to stdout so it can be
piped, and warnings go to stderr.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from ipprompt.cli.console import console, err_console, fail
from ipprompt.cli.helptext import default
from ipprompt.errors import IppromptError

if TYPE_CHECKING:
    from ipprompt.encoders.clip import ClipEncoder
    from ipprompt.theme.library import EncodeProgress, ThemeLibrary
    from ipprompt.theme.records import ThemeImage

app = typer.Typer(
    help=(
        "Build and search themes: libraries of reference images whose look every panel keeps.\n\n"
        "A theme is a name under $IPPROMPT_HOME/themes or any folder of images.\n\n"
        "Example:  ipprompt theme add lighthouse ./sketches/*.png --tag flat"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",  # the same help on every typer: \[ escapes, no literal backslashes
)

THEME_ARG = typer.Argument(
    ..., metavar="THEME", help="Theme name (under $IPPROMPT_HOME/themes) or path to a theme folder."
)
ENCODER_HELP = "CLIP model: Hub id or local folder. " + default("the theme's, from theme.toml")


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn an IppromptError into its message and exit code 2, never a traceback."""
    try:
        yield
    except IppromptError as error:
        raise fail(error) from None


@contextlib.contextmanager
def _encode_bar(label: str) -> Iterator[EncodeProgress]:
    """A rich bar for image encoding, created on the first report (when the total is known)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task_ids: list[TaskID] = []

        def advance(done: int, total: int) -> None:
            if not task_ids:
                task_ids.append(bar.add_task(label, total=total))
            bar.advance(task_ids[0], done)

        yield advance


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def _load_encoder(encoder_id: str, *, later: bool = False) -> ClipEncoder | None:
    """The encoder, or None after one warning (lexical matching, embeddings later)."""
    from ipprompt.encoders.clip import load_encoder_or_none

    def warn(message: str) -> None:
        if later:
            message += (
                " The images are added; their embeddings will be computed later (next open with the "
                "model, or `ipprompt theme reindex`), lexical search until then."
            )
        _warn(message)

    return load_encoder_or_none(encoder_id, warn=warn)


def _size(image: ThemeImage) -> str:
    return f"{image.width}x{image.height}"


def _report_sync(library: ThemeLibrary) -> None:
    for note in library.sync_report.notes:
        err_console.print(f"[cyan]note:[/] {escape(note)}", highlight=False)
    for refusal in library.sync_report.refused:
        _warn(f"not indexed: {refusal.line()}")


@app.command("add")
def add(
    theme: str = THEME_ARG,
    paths: list[str] = typer.Argument(
        ..., metavar="PATH...", help="Image files, folders (searched recursively) or glob patterns."
    ),
    caption: Optional[str] = typer.Option(
        None, "--caption", help="Caption for every added image (instead of sidecar NAME.txt files). " + default("the sidecar NAME.txt")
    ),
    tags: list[str] = typer.Option([], "--tag", help="Tag for every added image; repeat for several. " + default("none")),
    encoder: Optional[str] = typer.Option(None, "--encoder", help=ENCODER_HELP),
) -> None:
    """Add images to a theme, creating the theme if it does not exist.

    Images are copied in under their content hash, captioned from a sidecar NAME.txt if present.

    Exact duplicates are skipped; empty, corrupt or non-image files are refused, the rest added.

    Example: ipprompt theme add lighthouse ./refs/ "./more/*.jpg" --tag flat
    """
    from ipprompt.encoders.clip import DEFAULT_ENCODER, model_key
    from ipprompt.paths import resolve_theme_path
    from ipprompt.theme.library import ThemeLibrary, is_unstarted_theme

    created = False
    index_dir: Path | None = None
    empty = True
    try:
        with _user_errors():
            folder = resolve_theme_path(theme, must_exist=False)
            if is_unstarted_theme(folder):
                ThemeLibrary.create(folder, encoder_id=encoder or DEFAULT_ENCODER)
                created = True
            with ThemeLibrary.open(folder) as library:
                index_dir = library.index_path.parent
                _report_sync(library)
                report = library.add(
                    paths,
                    caption=caption,
                    tags=tags,
                    on_refused=lambda refusal: err_console.print(f"[red]refused:[/] {escape(refusal.line())}", highlight=False),
                )
                empty = len(library) == 0
                if not (report.added or report.duplicates or report.refused):
                    raise IppromptError(
                        f"No image files found in: {', '.join(paths)}.",
                        "Give image files (.png, .jpg, .webp, ...), folders that contain them, or a glob.",
                    )
                if created and not empty:
                    console.print(f"Created theme [bold]{escape(folder.name)}[/] at {escape(str(folder))}", highlight=False)
                encoder_id = model_key(encoder or library.encoder_id)
                if report.added or library.embedded_count(encoder_id) < len(library):
                    clip = _load_encoder(encoder_id, later=True)
                    if clip is not None:
                        with _encode_bar("Encoding") as advance:
                            library.use_encoder(clip, progress=advance)
                console.print(f"{escape(library.name)}: {report.summary()} ({len(library)} images in the theme)", highlight=False)
    finally:
        if created and empty:  # nothing could be added: leave no empty theme behind
            _discard_new_theme(folder, index_dir)
    if not report.added and not report.duplicates:
        if created:
            err_console.print("No theme created: none of the paths gave an image.", highlight=False)
        raise typer.Exit(code=2)


def _discard_new_theme(folder: Path, index_dir: Path | None) -> None:
    """Remove what ``theme add`` created for a theme that got no image (only its own files).

    Another ``theme add`` of the same new theme may have added images meanwhile: the index is
    checked again and nothing is removed when it holds any image.
    """
    import shutil

    from ipprompt.theme.config import CONFIG_FILE
    from ipprompt.theme.importer import COPIES_DIR
    from ipprompt.theme.store import INDEX_FILE, count_images

    if index_dir is not None and count_images(index_dir):
        return
    copies = folder / COPIES_DIR
    if copies.is_dir() and any(copies.iterdir()):
        return
    for name in (INDEX_FILE, INDEX_FILE + "-wal", INDEX_FILE + "-shm"):
        if index_dir is not None:
            (index_dir / name).unlink(missing_ok=True)
    (folder / CONFIG_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        copies.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()  # only if nothing else is in it
    if index_dir is not None and index_dir != folder:
        shutil.rmtree(index_dir, ignore_errors=True)


@app.command("list")
def list_themes() -> None:
    """List the themes under $IPPROMPT_HOME/themes with their image counts.

    Example: ipprompt theme list
    """
    from ipprompt.paths import themes_home
    from ipprompt.theme.config import CONFIG_FILE, read_config
    from ipprompt.theme.store import INDEX_FILE, count_images

    root = themes_home()
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    folders = [p for p in folders if (p / CONFIG_FILE).is_file() or (p / INDEX_FILE).is_file()]
    if not folders:
        console.print(f"No themes yet in {escape(str(root))}.", highlight=False)
        console.print("Create one with: ipprompt theme add NAME IMAGES...", highlight=False)
        return
    table = Table(title=escape(f"Themes in {root}"), title_justify="left")
    for column in ("Name", "Images", "Encoder", "Description"):
        table.add_column(column, justify="right" if column == "Images" else "left")
    for folder in folders:
        try:
            config = read_config(folder)
            name, encoder, description = config.name, config.encoder, config.description
        except IppromptError as error:
            name, encoder, description = folder.name, "?", f"[red]{escape(error.message)}[/]"
        count = count_images(folder)
        label = escape(name) if name == folder.name else f"{escape(folder.name)} ({escape(name)})"
        shown = description if encoder == "?" else escape(description)  # the error text is markup
        table.add_row(label, "-" if count is None else str(count), escape(encoder), shown)
    console.print(table)


@app.command("show")
def show(
    theme: str = THEME_ARG,
    sheet: Optional[Path] = typer.Option(
        None, "--sheet", metavar="FILE", help="Also write a contact sheet (thumbnails) to this PNG. " + default("no sheet")
    ),
) -> None:
    """Show a theme's images: sha prefix, file, caption, tags and size.

    Example: ipprompt theme show stories/themes/lighthouse --sheet lighthouse.png
    """
    from ipprompt.theme.library import ThemeLibrary
    from ipprompt.theme.sheet import write_contact_sheet

    with _user_errors(), ThemeLibrary.open(theme) as library:
        _report_sync(library)
        embedded = library.embedded_count(library.encoder_id)
        title = f"{library.name}: {len(library)} images, {embedded} encoded with {library.encoder_id}"
        table = Table(title=escape(title), caption=escape(str(library.path)), title_justify="left")
        for column in ("SHA", "File", "Caption", "Tags", "Size"):
            table.add_column(column, overflow="fold")
        for image in library.images:
            tags = escape(", ".join(image.tags))
            table.add_row(image.short_sha, escape(image.file_name), escape(image.caption), tags, _size(image))
        if library.description:
            console.print(escape(library.description), highlight=False)
        console.print(table)
        if sheet is not None:
            written = write_contact_sheet(library.images, sheet)
            console.print(f"Contact sheet: {escape(str(written))}", highlight=False)


@app.command("search")
def search(
    theme: str = THEME_ARG,
    text: str = typer.Argument(..., metavar="TEXT", help="What to look for, e.g. a character or a place."),
    k: int = typer.Option(9, "-k", "--top", min=1, help="How many images to return."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (mode, encoder, ranked results) instead of a table."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help=ENCODER_HELP),
) -> None:
    """Rank a theme's images against a text, as retrieval does for a panel element.

    Mode clip (CLIP similarity) when the encoder loads, else lexical (captions, tags, file names).

    Example: ipprompt theme search stories/themes/lighthouse "a girl in a yellow raincoat" -k 5
    """
    from ipprompt.theme.library import ThemeLibrary

    with _user_errors(), ThemeLibrary.open(theme) as library:
        _report_sync(library)
        encoder_id = encoder or library.encoder_id
        clip = _load_encoder(encoder_id)
        if clip is not None:
            with _encode_bar("Encoding") as advance:
                library.use_encoder(clip, progress=advance)
        [found] = library.match([text], k=k, exclude_top=0)
        if as_json:
            payload = {
                "theme": library.name,
                "path": str(library.path),
                "query": text,
                "mode": library.mode,
                "encoder": clip.model_id if clip is not None else None,
                "results": [
                    {
                        "rank": rank,
                        "sha256": m.image.sha256,
                        "file": m.image.file_name,
                        "path": str(m.image.path),
                        "caption": m.image.caption,
                        "tags": list(m.image.tags),
                        "score": round(m.score, 6),
                    }
                    for rank, m in enumerate(found.refs, start=1)
                ],
            }
            typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
            return
        how = f"clip ({clip.model_id})" if clip is not None else "lexical (captions, tags, file names)"
        table = Table(title=escape(f"{library.name}: \"{text}\" - mode {how}"), title_justify="left")
        for column in ("#", "Score", "SHA", "File", "Caption"):
            table.add_column(column, overflow="fold")
        for rank, m in enumerate(found.refs, start=1):
            image = m.image
            table.add_row(str(rank), f"{m.score:.3f}", image.short_sha, escape(image.file_name), escape(image.caption))
        console.print(table)


@app.command("rm")
def rm(
    theme: str = THEME_ARG,
    images: list[str] = typer.Argument(..., metavar="IMAGE...", help="sha256 prefix (4+ characters) or file name."),
) -> None:
    """Remove images from a theme, by sha256 prefix or file name.

    Copies made by `theme add` are deleted; your own files indexed in place stay on disk.

    Nothing is removed if any IMAGE is unknown or ambiguous.

    Example: ipprompt theme rm lighthouse 3fa9c2 old_sketch.png
    """
    from ipprompt.theme.library import ThemeLibrary

    with _user_errors(), ThemeLibrary.open(theme) as library:
        chosen = [library.find(ref) for ref in images]
        for image in library.remove(chosen):
            kept = " (file kept: it is yours, indexed in place)" if image.in_place else ""
            console.print(f"Removed {image.short_sha} {escape(image.file_name)}{kept}", highlight=False)
        console.print(f"{escape(library.name)}: {len(library)} images left", highlight=False)


@app.command("reindex")
def reindex(
    theme: str = THEME_ARG,
    encoder: Optional[str] = typer.Option(None, "--encoder", help=ENCODER_HELP),
) -> None:
    """Compute the embeddings of every image again with an encoder.

    Use after updating a model, or to prepare a theme for another encoder.

    Example: ipprompt theme reindex lighthouse --encoder openai/clip-vit-large-patch14
    """
    from ipprompt.encoders.clip import ClipEncoder
    from ipprompt.theme.library import ThemeLibrary

    with _user_errors(), ThemeLibrary.open(theme) as library:
        encoder_id = encoder or library.encoder_id
        clip = ClipEncoder.load(encoder_id)
        with _encode_bar("Encoding") as advance:
            count = library.reindex(clip, progress=advance)
        _report_sync(library)
        summary = f"{library.name}: encoded {count} of {len(library)} images with {clip.model_id}"
        if clip.model_id != library.encoder_id:
            library.set_encoder_id(clip.model_id)  # show, search and runs follow the new encoder
            summary += " (now the theme's encoder, in theme.toml)"
        console.print(escape(summary), highlight=False)
