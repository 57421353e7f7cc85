"""Keeping the index of a folder of images in step with the folder itself.

A story may point its ``theme`` at a plain folder of pictures (with sidecar ``.txt`` captions, as
in fine-tuning datasets). Those images are indexed *where they lie*: nothing is copied, only
``index.sqlite`` is added. Every open re-checks the folder, so pictures the user drops in are
picked up and pictures they delete disappear from search; a size/mtime signature per file (image
and caption) means unchanged files are not even read.

Files under ``images/`` named like content-addressed copies belong to ``theme add`` and are left to
it: a concurrent import copies the file a moment before it inserts the row, and this scan must not
mistake such a file for a user's picture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ipprompt.images import ImageRejected, open_image, read_image_bytes
from ipprompt.theme.importer import (
    COPIES_DIR,
    sha256_hex,
    sidecar_caption,
    to_theme_image,
    walk_images,
)
from ipprompt.theme.records import Refusal, SyncReport
from ipprompt.theme.store import ImageRow, ThemeStore, now_iso

_MANAGED_COPY = re.compile(rf"{COPIES_DIR}/[0-9a-f]{{16}}(?:[0-9a-f]{{48}})?\.[A-Za-z0-9]+")
IGNORED_DUPLICATE = "duplicate"
IGNORED_REFUSED = "refused"
IGNORED_REMOVED = "removed"


def is_managed_copy(file_name: str) -> bool:
    """Whether a path relative to the theme folder is a copy made by ``theme add``."""
    return _MANAGED_COPY.fullmatch(file_name) is not None


def file_signature(path: Path) -> str:
    """Size and mtime of the image and of its caption file: changes when either is edited."""
    stat = path.stat()
    sidecar = path.with_suffix(".txt")
    sidecar_mtime = sidecar.stat().st_mtime_ns if sidecar.is_file() else 0
    return f"{stat.st_size}:{stat.st_mtime_ns}:{sidecar_mtime}"


@dataclass(frozen=True)
class _Candidate:
    path: Path
    file_name: str
    signature: str
    replaces: ImageRow | None = None


def sync_folder(store: ThemeStore, folder: Path) -> SyncReport:
    """Index new in-place images, refresh edited ones, drop rows whose file is gone.

    Files are read and decoded outside the transaction (that is the slow part); all changes are
    then applied in one transaction, so a concurrent reader sees the folder before or after, never
    half-way.
    """
    report = SyncReport()
    rows = store.rows()
    by_file = {row.file_name: row for row in rows}
    gone = [row for row in rows if not (folder / row.file_name).is_file()]
    ignored = store.ignored()
    if gone:
        # A file skipped as a duplicate of a now-deleted one must be looked at again.
        ignored = {f: v for f, v in ignored.items() if v[1] != IGNORED_DUPLICATE}

    candidates: list[_Candidate] = []
    on_disk: set[str] = set()
    for path in walk_images(folder, skip=lambda p: is_managed_copy(p.relative_to(folder).as_posix())):
        file_name = path.relative_to(folder).as_posix()
        on_disk.add(file_name)
        try:
            signature = file_signature(path)
        except OSError:
            continue  # vanished while scanning; the next open sees it gone
        row = by_file.get(file_name)
        if row is not None:
            if row.in_place and row.signature != signature:
                candidates.append(_Candidate(path, file_name, signature, replaces=row))
        elif ignored.get(file_name, ("", ""))[0] != signature:
            candidates.append(_Candidate(path, file_name, signature))

    if not gone and not candidates and set(ignored) <= on_disk:
        return report

    known = {row.sha256 for row in rows} - {row.sha256 for row in gone}
    inserts: list[ImageRow] = []
    caption_updates: list[tuple[str, str, str]] = []
    replaced: list[str] = []
    ignores: list[tuple[str, str, str, str]] = []
    for cand in candidates:
        try:
            data = read_image_bytes(cand.path)
            digest = sha256_hex(data) if data else ""
            if cand.replaces is not None and digest == cand.replaces.sha256:
                caption = sidecar_caption(cand.path) or ""
                caption_updates.append((digest, caption, cand.signature))
                continue
            if cand.replaces is not None:
                replaced.append(cand.replaces.sha256)
                known.discard(cand.replaces.sha256)
            image = open_image(data, name=str(cand.path))
        except ImageRejected as rejected:
            report.refused.append(Refusal(cand.path, rejected.reason))
            ignores.append((cand.file_name, cand.signature, IGNORED_REFUSED, rejected.reason))
            continue
        except OSError:
            continue
        if digest in known:
            reason = "same picture as another image of the theme"
            ignores.append((cand.file_name, cand.signature, IGNORED_DUPLICATE, reason))
            continue
        known.add(digest)
        inserts.append(
            ImageRow(
                sha256=digest,
                file_name=cand.file_name,
                original_path=cand.file_name,
                caption=sidecar_caption(cand.path) or "",
                tags=(),
                width=image.width,
                height=image.height,
                added_at=now_iso(),
                in_place=True,
                signature=cand.signature,
            )
        )

    removed = [row.sha256 for row in gone] + replaced
    with store.transaction():
        store.delete_images(removed)
        if gone:
            store.forget_ignored(kind=IGNORED_DUPLICATE)
        store.forget_ignored(f for f in list(store.ignored()) if f not in on_disk)
        for sha, caption, signature in caption_updates:
            store.update_caption(sha, caption, signature)
        for entry in ignores:
            store.set_ignored(*entry)
        for row in inserts:
            if store.insert_image(row):
                report.added.append(to_theme_image(folder, row))
    report.removed.extend(removed)
    return report


def rebuild_copies(store: ThemeStore, folder: Path) -> SyncReport:
    """Index the copies in ``images/`` again, for a managed theme whose ``index.sqlite`` is gone.

    Without this, deleting the index (the advice for a damaged one) made a theme look empty while
    its pictures sat in ``images/``. Captions come from ``.txt`` sidecars next to the copies where
    there are any; captions and tags given with ``theme add --caption/--tag`` lived only in the
    index and are lost. Call on a freshly created index only: during a concurrent import a copy
    exists a moment before its row, and that import would then count its picture as a duplicate.
    """
    report = SyncReport()
    copies = folder / COPIES_DIR
    if not copies.is_dir():
        return report
    rows: list[ImageRow] = []
    seen: set[str] = set()
    for path in walk_images(copies):
        file_name = path.relative_to(folder).as_posix()
        if not is_managed_copy(file_name):
            continue
        try:
            data = read_image_bytes(path)
            image = open_image(data, name=str(path))
        except ImageRejected as rejected:
            report.refused.append(Refusal(path, rejected.reason))
            continue
        digest = sha256_hex(data)
        if digest in seen:
            continue
        seen.add(digest)
        rows.append(
            ImageRow(
                sha256=digest,
                file_name=file_name,
                original_path=file_name,
                caption=sidecar_caption(path) or "",
                tags=(),
                width=image.width,
                height=image.height,
                added_at=now_iso(),
            )
        )
    with store.transaction():
        for row in rows:
            if store.insert_image(row):
                report.added.append(to_theme_image(folder, row))
    if report.added:
        report.notes.append(
            f"The theme index was missing: rebuilt it from {len(report.added)} picture(s) in "
            f"{copies} (captions from .txt files beside them; tags given with --tag are lost)."
        )
    return report
