"""The theme index: one SQLite file (``index.sqlite``) next to the images.

Why SQLite: several processes (two ``theme add`` runs, a story run reading while an import writes)
may use one theme at once. WAL mode lets readers go on while a writer commits, ``busy_timeout``
makes a second writer wait instead of failing, and every change is one ``BEGIN IMMEDIATE``
transaction, so a crash or a concurrent writer never leaves half an import behind.

Tables:

- ``images``: one row per distinct image content (sha256 of the original file bytes). ``file_name``
  is the path relative to the theme folder: ``images/<sha16>.<ext>`` for copies made by ``theme
  add`` (``in_place = 0``), the user's own relative path for images indexed where they lie
  (``in_place = 1``). ``signature`` (size, mtime of the image and its caption file) lets re-opening
  a plain folder notice edited files without hashing everything again.
- ``embeddings``: one L2-normalised float32 vector per (image, encoder), so an image is encoded
  once per model and reused by every later open.
- ``ignored_files``: in-place files that are not indexed (corrupt, a duplicate of another file,
  removed with ``theme rm``), with the signature they had, so they are not re-read on every open.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ipprompt.errors import IppromptError
from ipprompt.theme.indexerrors import IndexConnection

INDEX_FILE = "index.sqlite"
BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    sha256 TEXT PRIMARY KEY,
    file_name TEXT NOT NULL UNIQUE,
    original_path TEXT NOT NULL,
    caption TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    in_place INTEGER NOT NULL DEFAULT 0,
    signature TEXT
);
CREATE TABLE IF NOT EXISTS embeddings (
    sha256 TEXT NOT NULL,
    encoder TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (sha256, encoder)
);
CREATE TABLE IF NOT EXISTS ignored_files (
    file_name TEXT PRIMARY KEY,
    signature TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ImageRow:
    """One row of the ``images`` table."""

    sha256: str
    file_name: str
    original_path: str
    caption: str
    tags: tuple[str, ...]
    width: int
    height: int
    added_at: str
    in_place: bool = False
    signature: str | None = None


def now_iso() -> str:
    """UTC timestamp for ``added_at`` (ISO 8601, seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _row(values: sqlite3.Row) -> ImageRow:
    return ImageRow(
        sha256=values["sha256"],
        file_name=values["file_name"],
        original_path=values["original_path"],
        caption=values["caption"],
        tags=tuple(json.loads(values["tags"])),
        width=values["width"],
        height=values["height"],
        added_at=values["added_at"],
        in_place=bool(values["in_place"]),
        signature=values["signature"],
    )


class ThemeStore:
    """Typed access to one theme's ``index.sqlite``."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        """Wrap an open connection; use :meth:`open`."""
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, folder: Path) -> ThemeStore:
        """Open (creating if needed) ``folder/index.sqlite`` in WAL mode with a 30 s busy timeout.

        ``folder`` is where the index lives: the theme folder itself, or for a folder that is not
        the user's, its place in ipprompt's data folder (``ipprompt.theme.indexplace``).

        SQLite does not call the busy handler everywhere: several processes creating the same
        index at once (the WAL switch, the first schema write) can get "database is locked" at
        once. Those openers retry with a short back-off until the busy timeout is spent.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.02
        while True:
            try:
                return cls._open_once(folder)
            except sqlite3.OperationalError as exc:
                transient = "locked" in str(exc) or "busy" in str(exc)
                if not transient or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    @classmethod
    def _open_once(cls, folder: Path) -> ThemeStore:
        folder.mkdir(parents=True, exist_ok=True)  # the data-folder place may not exist yet
        path = folder / INDEX_FILE
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, factory=IndexConnection)
        db.index_path = path
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # Switching to WAL needs a brief exclusive lock; open() retries if another opener has it.
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            store = cls(db, path)
            store._create_schema()
        except BaseException:
            db.close()
            raise
        return store

    def _create_schema(self) -> None:
        db = self._db
        with self.transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )

    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        with contextlib.suppress(sqlite3.ProgrammingError):
            self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: taken with BEGIN IMMEDIATE so writers queue up front.

        A deferred transaction that reads first and writes later can fail with "database is
        locked" when another writer committed in between; taking the write lock at BEGIN makes
        concurrent writers wait (up to the busy timeout) instead.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            with contextlib.suppress(sqlite3.Error, IppromptError):  # SQLite may have rolled back already (full disk)
                self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    # --- images -------------------------------------------------------------------------------

    def rows(self) -> list[ImageRow]:
        """All image rows, ordered by sha256 (the order every result is built in)."""
        cursor = self._db.execute("SELECT * FROM images ORDER BY sha256")
        return [_row(r) for r in cursor.fetchall()]

    def has_sha(self, sha256: str) -> bool:
        """Whether an image with this content is already indexed."""
        return self._db.execute("SELECT 1 FROM images WHERE sha256 = ?", (sha256,)).fetchone() is not None

    def insert_image(self, row: ImageRow) -> bool:
        """Insert ``row`` unless its content (or file) is already there; True when inserted.

        Call inside :meth:`transaction`. ``INSERT OR IGNORE`` makes two processes adding the same
        image at the same time end with one row and one "duplicate", never an error.
        """
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO images (sha256, file_name, original_path, caption, tags, width,"
            " height, added_at, in_place, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.sha256,
                row.file_name,
                row.original_path,
                row.caption,
                json.dumps(list(row.tags)),
                row.width,
                row.height,
                row.added_at,
                int(row.in_place),
                row.signature,
            ),
        )
        return cursor.rowcount == 1

    def update_caption(self, sha256: str, caption: str, signature: str | None) -> None:
        """Refresh an in-place image's caption and signature (its sidecar .txt was edited)."""
        self._db.execute(
            "UPDATE images SET caption = ?, signature = ? WHERE sha256 = ?", (caption, signature, sha256)
        )

    def delete_images(self, shas: Iterable[str]) -> None:
        """Delete image rows and their embeddings (call inside :meth:`transaction`)."""
        params = [(sha,) for sha in shas]
        self._db.executemany("DELETE FROM embeddings WHERE sha256 = ?", params)
        self._db.executemany("DELETE FROM images WHERE sha256 = ?", params)

    # --- embeddings ---------------------------------------------------------------------------

    def shas_without_embedding(self, encoder: str, dim: int) -> list[str]:
        """Images that have no embedding of the right size for ``encoder``, by sha256."""
        cursor = self._db.execute(
            "SELECT i.sha256 FROM images i LEFT JOIN embeddings e"
            " ON e.sha256 = i.sha256 AND e.encoder = ? AND e.dim = ?"
            " WHERE e.sha256 IS NULL ORDER BY i.sha256",
            (encoder, dim),
        )
        return [r[0] for r in cursor.fetchall()]

    def put_embeddings(self, encoder: str, shas: Sequence[str], vectors: np.ndarray) -> None:
        """Store one float32 row per sha (call inside :meth:`transaction`)."""
        if len(shas) != len(vectors):
            raise ValueError(f"{len(shas)} shas but {len(vectors)} vectors")
        data = np.ascontiguousarray(vectors, dtype="<f4")
        self._db.executemany(
            "INSERT OR REPLACE INTO embeddings (sha256, encoder, dim, vector) VALUES (?, ?, ?, ?)",
            [(sha, encoder, int(data.shape[1]), data[i].tobytes()) for i, sha in enumerate(shas)],
        )

    def delete_embeddings(self, encoder: str) -> None:
        """Forget every embedding made with ``encoder`` (``theme reindex``)."""
        self._db.execute("DELETE FROM embeddings WHERE encoder = ?", (encoder,))

    def load_embeddings(self, encoder: str, dim: int, shas: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """An (n, dim) float32 matrix in the order of ``shas`` and a mask of rows that exist.

        Missing rows are zero; the mask lets retrieval skip them rather than score them as 0.
        """
        position = {sha: i for i, sha in enumerate(shas)}
        matrix = np.zeros((len(shas), dim), dtype=np.float32)
        present = np.zeros(len(shas), dtype=bool)
        cursor = self._db.execute(
            "SELECT sha256, vector FROM embeddings WHERE encoder = ? AND dim = ?", (encoder, dim)
        )
        for sha, blob in cursor:
            i = position.get(sha)
            if i is not None:
                matrix[i] = np.frombuffer(blob, dtype="<f4")
                present[i] = True
        return matrix, present

    def embedded_count(self, encoder: str) -> int:
        """How many images have an embedding for ``encoder``."""
        cursor = self._db.execute(
            "SELECT COUNT(*) FROM embeddings e JOIN images i ON i.sha256 = e.sha256 WHERE e.encoder = ?",
            (encoder,),
        )
        return int(cursor.fetchone()[0])

    # --- in-place files that are not indexed --------------------------------------------------

    def ignored(self) -> dict[str, tuple[str, str]]:
        """``file_name -> (signature, kind)`` for in-place files deliberately not indexed."""
        cursor = self._db.execute("SELECT file_name, signature, kind FROM ignored_files")
        return {r[0]: (r[1], r[2]) for r in cursor.fetchall()}

    def set_ignored(self, file_name: str, signature: str, kind: str, reason: str) -> None:
        """Remember that an in-place file is not indexed (call inside :meth:`transaction`)."""
        self._db.execute(
            "INSERT OR REPLACE INTO ignored_files (file_name, signature, kind, reason) VALUES (?, ?, ?, ?)",
            (file_name, signature, kind, reason),
        )

    def forget_ignored(self, file_names: Iterable[str] = (), kind: str | None = None) -> None:
        """Drop ignore entries by file, or every entry of one ``kind`` (re-examine them)."""
        self._db.executemany("DELETE FROM ignored_files WHERE file_name = ?", [(f,) for f in file_names])
        if kind is not None:
            self._db.execute("DELETE FROM ignored_files WHERE kind = ?", (kind,))


def count_images(folder: Path) -> int | None:
    """Image count of an existing index without creating or migrating anything (``theme list``)."""
    path = folder / INDEX_FILE
    if not path.is_file():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        return int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    except sqlite3.DatabaseError:
        return None
    finally:
        db.close()
