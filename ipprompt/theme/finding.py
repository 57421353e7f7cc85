"""Finding image files: walking folders and expanding the user's PATH arguments.

Folders the user points at are their own and may hold anything: symbolic links to other folders,
links that point back at a folder above them (``a/loop -> ..``), links to each other (``x -> y``,
``y -> x``), links whose target was deleted. A walk must end, must not stop at the first odd entry,
and must name every link it skips by the link's *own* name (the name the user sees in their
folder), so that one bad entry never hides the good pictures next to it.

Linked folders are followed (a folder of links to picture folders is a normal way to build a
theme), but each real folder is searched once: a link back into a folder being searched is a loop
and is reported, a second link to a folder already searched is quietly skipped, and a link to the
filesystem root, the home folder or a system folder is reported and not followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from ipprompt.errors import IppromptError
from ipprompt.theme.folders import unsafe_reason
from ipprompt.theme.records import Refusal

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_GLOB_CHARS = frozenset("*?[")
LINK_LOOP = "symbolic link loop (it never reaches a file); skipped"
FOLDER_LOOP = "symbolic link loop (it points back to a folder that contains it); skipped"
BROKEN_LINK = "broken symbolic link (its target does not exist); skipped"


# Files and folders one walk may look at. A theme is a folder of pictures, a few thousand at most;
# a walk past this many entries was pointed at the wrong folder (a disk, a system folder, a cache)
# and stops with a message instead of reading for minutes.
MAX_WALK_ENTRIES = 100_000


def is_image_name(path: Path) -> bool:
    """Whether a file found while walking a folder should be treated as an image."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (loop, broken), or None when it can (or is no link)."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return LINK_LOOP
        if exc.errno == errno.ENOENT:
            return BROKEN_LINK
        return f"cannot follow symbolic link ({exc.strerror or exc}); skipped"
    return None


def _folder_key(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)


def walk_images(
    folder: Path,
    skip: Callable[[Path], bool] | None = None,
    refused: list[Refusal] | None = None,
) -> list[Path]:
    """Image files under ``folder``: recursive, sorted, hidden files and folders left out.

    Paths are spelled through the folders and links as found (never resolved), so a refusal or a
    caption names what the user sees. Broken links, link loops and unreadable sub-folders are
    appended to ``refused`` when given (a plain folder re-scanned on every open passes None).
    """
    found: list[Path] = []

    def note(path: Path, reason: str) -> None:
        if refused is not None:
            refused.append(Refusal(path, reason))

    try:
        root_info = os.stat(folder)
    except OSError as exc:
        note(folder, f"cannot read folder ({exc.strerror or exc})")
        return found
    searched: set[tuple[int, int]] = {_folder_key(root_info)}
    seen = 0
    # Depth-first, folders in name order, each folder's files before its sub-folders.
    stack: list[tuple[Path, frozenset[tuple[int, int]]]] = [(folder, frozenset(searched))]
    while stack:
        directory, ancestors = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            note(directory, f"cannot read folder ({exc.strerror or exc}); skipped")
            continue
        subfolders: list[tuple[Path, frozenset[tuple[int, int]]]] = []
        seen += len(entries)
        if seen > MAX_WALK_ENTRIES:
            raise IppromptError(
                f"Stopped reading {folder}: it holds more than {MAX_WALK_ENTRIES:,} files and folders.",
                "A theme is a folder of pictures (a few thousand at most); point it at the folder that "
                "holds them, not at a disk, a system folder or a cache.",
            )
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = directory / entry.name
            try:
                info = os.stat(path)  # follows links; a loop or a dangling link raises
            except OSError:
                problem = link_problem(path)
                if problem is not None:
                    note(path, problem)
                continue
            if stat.S_ISDIR(info.st_mode):
                key = _folder_key(info)
                if key in ancestors:
                    note(path, FOLDER_LOOP)
                elif entry.is_symlink() and (reason := unsafe_reason(path, writing=False)) is not None:
                    note(path, f"link to {reason}; skipped")  # a link to / would walk the disk
                elif key not in searched:
                    searched.add(key)
                    subfolders.append((path, ancestors | {key}))
            elif stat.S_ISREG(info.st_mode) and is_image_name(path) and not (skip and skip(path)):
                found.append(path)
        stack.extend(reversed(subfolders))
    return found


def _glob(pattern: Path) -> list[Path]:
    """Matches of a glob pattern, ``**`` included, without following linked folders.

    ``glob.glob(recursive=True)`` follows linked folders, so two links back to their parent make
    it search 2**40 paths; ``Path.glob`` does not follow them. Hidden names are left out, as the
    shell and ``glob.glob`` do.
    """
    parts = pattern.parts
    first = next((i for i, part in enumerate(parts) if _GLOB_CHARS & set(part)), len(parts))
    base = Path(*parts[:first]) if first else Path(".")
    rest = "/".join(parts[first:])
    if not rest:
        return [pattern] if os.path.lexists(pattern) else []
    try:
        matches = sorted(base.glob(rest))
    except (OSError, ValueError, NotImplementedError):
        return []
    return [m for m in matches if not any(p.startswith(".") for p in m.parts[len(base.parts) :])]


def expand_sources(sources: Iterable[str | Path]) -> tuple[list[Path], list[Refusal]]:
    """Turn the user's PATH arguments (files, folders, globs) into a list of files.

    Files named explicitly are always tried (and refused if they are not images); folders and
    glob patterns contribute only files with an image extension, so sidecar ``.txt`` captions and
    stray documents next to the images are not reported as bad images. Each file is returned as
    an absolute path spelled as the user found it (a link keeps its own name); a picture reached
    twice (through a link and directly) is listed once.
    """
    files: list[Path] = []
    refusals: list[Refusal] = []
    for source in sources:
        text = str(source)
        path = Path(text).expanduser()
        if path.is_dir():
            files.extend(walk_images(path, refused=refusals))
        elif path.is_file():
            files.append(path)
        elif (problem := link_problem(path)) is not None:
            refusals.append(Refusal(path, problem))
        elif _GLOB_CHARS & set(text):
            before = len(refusals)
            matches = _glob(path)
            images = [m for m in matches if m.is_file() and is_image_name(m)]
            for folder in (m for m in matches if m.is_dir()):
                images.extend(walk_images(folder, refused=refusals))
            for link in (m for m in matches if is_image_name(m) and not m.exists()):
                refusals.append(Refusal(link, link_problem(link) or "cannot read file"))
            if images:
                files.extend(images)
            elif len(refusals) == before:
                refusals.append(Refusal(path, "no image files match this pattern"))
        else:
            refusals.append(Refusal(path, "no such file or folder"))
    unique: dict[Path, Path] = {}
    for file in files:
        try:
            key = file.resolve()
        except (OSError, RuntimeError):
            key = file
        unique.setdefault(key, Path(os.path.abspath(file)))
    return list(unique.values()), refusals
