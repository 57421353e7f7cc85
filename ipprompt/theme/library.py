"""ThemeLibrary: a theme folder opened for search, import and retrieval.

This is the one object the rest of ipprompt uses: the story runner opens the story's theme with
the run's CLIP encoder and calls :meth:`ThemeLibrary.match` per panel; the CLI adds, lists,
searches and removes images through it. Opening brings the index up to date (new or deleted
in-place files, missing embeddings for this encoder), so callers never have to think about it, and
embeddings are computed once per (image, encoder) and then only read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ipprompt.encoders.clip import DEFAULT_ENCODER, ClipEncoder, model_key
from ipprompt.errors import IppromptError
from ipprompt.paths import resolve_theme_path
from ipprompt.theme.config import CONFIG_FILE, ThemeConfig, read_config, write_config
from ipprompt.theme.folders import check_theme_folder
from ipprompt.theme.indexplace import index_folder
from ipprompt.theme.indexerrors import index_error
from ipprompt.theme.folder_sync import IGNORED_REMOVED, file_signature, rebuild_copies, sync_folder
from ipprompt.images import ImageRejected, open_image
from ipprompt.theme.importer import COPIES_DIR, expand_sources, import_files, to_theme_image
from ipprompt.theme.lexical import LexicalIndex, image_document
from ipprompt.theme.lookup import find_image
from ipprompt.theme.ranking import rank_matches
from ipprompt.theme.records import ElementMatch, ImportReport, Match, Refusal, SyncReport, ThemeImage
from ipprompt.theme.store import INDEX_FILE, ThemeStore

# (images just finished, total images to encode): enough to drive any progress bar.
EncodeProgress = Callable[[int, int], None]
ENCODE_BATCH = 32


def _open_store(index_dir: Path) -> ThemeStore:
    try:
        return ThemeStore.open(index_dir)
    except sqlite3.DatabaseError as exc:
        raise index_error(exc, index_dir / INDEX_FILE) from exc
    except OSError as exc:
        raise index_error(exc, index_dir / INDEX_FILE) from None


def is_unstarted_theme(folder: Path) -> bool:
    """Whether ``folder`` is missing or empty, so ``theme add`` should create a theme there.

    A folder that already holds files is the user's (a plain folder of images): it is indexed in
    place and gets no ``theme.toml``.
    """
    # Hidden entries do not count: the temporary file of a theme.toml being written by another
    # `theme add` of the same new theme must not make this one take the theme for someone's folder.
    return not folder.exists() or (folder.is_dir() and not any(not p.name.startswith(".") for p in folder.iterdir()))


class ThemeLibrary:
    """An opened theme: its images, their embeddings for one encoder, and retrieval."""

    def __init__(self, folder: Path, config: ThemeConfig, store: ThemeStore, sync_report: SyncReport) -> None:
        """Wrap an opened store; use :meth:`open`."""
        self._folder = folder
        self._config = config
        self._store = store
        self.sync_report = sync_report
        self._encoder: ClipEncoder | None = None
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._present = np.zeros(0, dtype=bool)
        self._reload_images()

    # --- opening ------------------------------------------------------------------------------

    @staticmethod
    def create(folder: Path, *, name: str | None = None, description: str = "", encoder_id: str = DEFAULT_ENCODER) -> Path:
        """Make a new managed theme: the folder, ``theme.toml`` and ``images/``.

        A local encoder folder is recorded by absolute path, so the theme keeps working from any
        working directory. Safe when two processes create the same theme at once.
        """
        if folder.exists() and not folder.is_dir():
            raise IppromptError(f"{folder} exists and is not a folder.", "Choose another theme name or path.")
        check_theme_folder(folder, writing=True)
        folder.mkdir(parents=True, exist_ok=True)
        # theme.toml first: the first visible entry marks the folder as ipprompt's (theme/indexplace.py)
        if not (folder / CONFIG_FILE).exists():
            config = ThemeConfig(name=name or folder.name, description=description, encoder=model_key(encoder_id))
            write_config(folder, config)
        (folder / COPIES_DIR).mkdir(parents=True, exist_ok=True)
        return folder

    @classmethod
    def open(
        cls,
        path_or_name: str | Path,
        encoder: ClipEncoder | None = None,
        *,
        relative_to: Path | None = None,
        create: bool = False,
        progress: EncodeProgress | None = None,
    ) -> ThemeLibrary:
        """Open a theme by folder path or by name under ``$IPPROMPT_HOME/themes``.

        With ``create``, a missing (or empty) folder becomes a new theme with ``theme.toml``. A
        folder of plain images gets only an ``index.sqlite`` and its images are indexed in place.
        With an ``encoder``, images without an embedding for it are encoded now (``progress`` is
        told as batches finish) and :meth:`match` uses CLIP; without one, it matches captions.
        """
        folder = resolve_theme_path(str(path_or_name), relative_to, must_exist=not create)
        check_theme_folder(folder)  # before anything is walked or written: never "/" or /etc
        created = False
        if create and is_unstarted_theme(folder):
            cls.create(folder, encoder_id=encoder.model_id if encoder else DEFAULT_ENCODER)
            created = True
        if not folder.is_dir():
            raise IppromptError(f"Theme '{path_or_name}' is not a folder: {folder}.")
        config = read_config(folder)
        # a folder ipprompt just made is its own; any other keeps its index where the rule says
        index_dir = folder if created else index_folder(folder, relative_to)
        index_missing = not (index_dir / INDEX_FILE).exists()
        store = _open_store(index_dir)
        try:
            report = sync_folder(store, folder)
            if index_missing:
                rebuilt = rebuild_copies(store, folder)
                report.added[:0] = rebuilt.added
                report.refused[:0] = rebuilt.refused
                report.notes.extend(rebuilt.notes)
            library = cls(folder, config, store, report)
            if encoder is not None:
                library.use_encoder(encoder, progress)
        except BaseException:
            store.close()
            raise
        return library

    def close(self) -> None:
        """Close the index (the library must not be used afterwards)."""
        self._store.close()

    def __enter__(self) -> ThemeLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what it holds ------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The theme folder."""
        return self._folder

    @property
    def index_path(self) -> Path:
        """The theme's ``index.sqlite``: in the folder, or in ipprompt's data folder (indexplace)."""
        return self._store.path

    @property
    def name(self) -> str:
        """The theme's name (from theme.toml, else the folder name)."""
        return self._config.name

    @property
    def description(self) -> str:
        """The theme's description from theme.toml ('' when none)."""
        return self._config.description

    @property
    def encoder_id(self) -> str:
        """The encoder this theme asks for (theme.toml), used when the caller names none."""
        return self._config.encoder

    def set_encoder_id(self, encoder_id: str) -> None:
        """Make ``encoder_id`` the theme's encoder (theme.toml): what show, search and runs use
        when no --encoder is given. Called after a reindex with that encoder succeeded."""
        from dataclasses import replace

        self._config = replace(self._config, encoder=model_key(encoder_id))
        write_config(self._folder, self._config)

    @property
    def encoder(self) -> ClipEncoder | None:
        """The encoder in use, or None in lexical mode."""
        return self._encoder

    @property
    def mode(self) -> str:
        """``"clip"`` when matching by CLIP embeddings, ``"lexical"`` when by captions and tags."""
        return "clip" if self._encoder is not None else "lexical"

    @property
    def images(self) -> list[ThemeImage]:
        """All images, sorted by sha256."""
        return list(self._images)

    def __len__(self) -> int:
        return len(self._images)

    def has_image(self, sha256: str) -> bool:
        """True when the theme holds an image with this sha256 (its embedding is cached)."""
        return sha256 in self._position

    def image_by_sha(self, sha256: str) -> ThemeImage:
        """The image with this full sha256 (KeyError when the theme has none)."""
        return self._images[self._position[sha256]]

    def embedded_count(self, encoder_id: str) -> int:
        """How many images already have an embedding for ``encoder_id``."""
        return self._store.embedded_count(encoder_id)

    def _reload_images(self) -> None:
        rows = self._store.rows()
        self._images = [to_theme_image(self._folder, row) for row in rows]
        self._position = {image.sha256: i for i, image in enumerate(self._images)}
        # Images are sorted by sha256, so the tie-breaking rank is the position itself.
        self._tie_rank = np.arange(len(self._images), dtype=np.int64)
        self._lexical: LexicalIndex | None = None
        if self._encoder is not None:
            self._load_embeddings()

    def _load_embeddings(self) -> None:
        assert self._encoder is not None
        shas = [image.sha256 for image in self._images]
        self._matrix, self._present = self._store.load_embeddings(self._encoder.model_id, self._encoder.dim, shas)

    # --- embeddings ---------------------------------------------------------------------------

    def use_encoder(self, encoder: ClipEncoder, progress: EncodeProgress | None = None) -> int:
        """Switch to CLIP matching with ``encoder``, encoding images it has not seen; returns how many.

        Each batch is stored in its own transaction, so an interrupted encode keeps what it did.
        A file that cannot be read any more is reported in ``sync_report.refused`` and skipped
        (it is never offered by :meth:`match` until it can be encoded).
        """
        self._encoder = encoder
        self._reload_images()
        missing = [s for s in self._store.shas_without_embedding(encoder.model_id, encoder.dim) if s in self._position]
        total = len(missing)
        encoded = 0
        for start in range(0, total, ENCODE_BATCH):
            shas: list[str] = []
            pictures: list[Image.Image] = []
            for sha in missing[start : start + ENCODE_BATCH]:
                image = self.image_by_sha(sha)
                try:
                    pictures.append(open_image(image.path))
                    shas.append(sha)
                except ImageRejected as rejected:
                    self.sync_report.refused.append(Refusal(image.path, rejected.reason))
                    if progress is not None:
                        progress(1, total)
            if not pictures:
                continue
            step = (lambda n: progress(n, total)) if progress is not None else None
            vectors = encoder.embed_images(pictures, batch_size=len(pictures), progress=step)
            with self._store.transaction():
                self._store.put_embeddings(encoder.model_id, shas, vectors)
            encoded += len(shas)
        self._load_embeddings()
        return encoded

    def reindex(self, encoder: ClipEncoder, progress: EncodeProgress | None = None) -> int:
        """Forget this encoder's embeddings and compute them again (after a model update)."""
        with self._store.transaction():
            self._store.delete_embeddings(encoder.model_id)
        return self.use_encoder(encoder, progress)

    def embeddings_for(self, shas: Sequence[str]) -> np.ndarray:
        """The stored (len(shas), dim) unit embeddings of these images, for scoring (CLIP-I).

        Raises ``ValueError`` in lexical mode (there are none) and ``KeyError`` for an unknown sha.
        """
        if self._encoder is None:
            raise ValueError("No embeddings in lexical mode: open the library with a CLIP encoder.")
        return self._matrix[[self._position[s] for s in shas]].copy()

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray | None:
        """Embed pictures with the library's encoder (None in lexical mode), comparable to the index."""
        return None if self._encoder is None else self._encoder.embed_images(images)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray | None:
        """Embed texts with the library's encoder (None in lexical mode)."""
        return None if self._encoder is None else self._encoder.embed_texts(texts)

    # --- changing the theme -------------------------------------------------------------------

    def add(
        self,
        sources: Iterable[str | Path],
        *,
        caption: str | None = None,
        tags: Sequence[str] = (),
        on_refused: Callable[[Refusal], None] | None = None,
        progress: EncodeProgress | None = None,
    ) -> ImportReport:
        """Import files, folders (recursive) and globs; encode the new images if an encoder is set."""
        if self._store.path.parent != self._folder:
            raise IppromptError(
                f"ipprompt writes nothing into {self._folder}: it is not inside your project folder "
                "(its index is kept in ipprompt's data folder).",
                f"Add the pictures to a named theme instead: ipprompt theme add NAME {self._folder}",
            )
        files, missing = expand_sources(sources)
        for refusal in missing:
            if on_refused is not None:
                on_refused(refusal)
        report = import_files(self._store, self._folder, files, caption=caption, tags=tags, on_refused=on_refused)
        report.refused[:0] = missing
        if self._encoder is not None:
            self.use_encoder(self._encoder, progress)
        else:
            self._reload_images()
        return report

    def find(self, ref: str) -> ThemeImage:
        """An image by file name (as stored, or its original name) or by a unique sha prefix (4+)."""
        return find_image(self._images, ref, self.name)

    def remove(self, images: Sequence[ThemeImage]) -> list[ThemeImage]:
        """Remove images from the index; delete the file only when it is a copy in ``images/``.

        An image indexed in place is the user's own file: it stays on disk and is remembered as
        removed, so re-opening the folder does not index it again (until the file changes).
        """
        unique = list({image.sha256: image for image in images}.values())
        copies_dir = (self._folder / COPIES_DIR).resolve()
        with self._store.transaction():
            self._store.delete_images(image.sha256 for image in unique)
            for image in unique:
                if image.in_place and image.path.is_file():
                    self._store.set_ignored(
                        image.file_name, file_signature(image.path), IGNORED_REMOVED, "removed with `theme rm`"
                    )
        for image in unique:
            if not image.in_place and image.path.resolve().parent == copies_dir:
                image.path.unlink(missing_ok=True)
        self._reload_images()
        return unique

    # --- retrieval ----------------------------------------------------------------------------

    def _similarities(self, elements: Sequence[str]) -> np.ndarray:
        if self._encoder is not None:
            text = self._encoder.embed_texts(elements)  # one batched call for all elements
            # images @ text.T streams the (n, dim) matrix row by row: ~30% faster than text @ images.T.
            return (self._matrix @ text.T).T
        if self._lexical is None:
            self._lexical = LexicalIndex([self._document(image) for image in self._images])
        return self._lexical.scores(elements)

    @staticmethod
    def _document(image: ThemeImage) -> str:
        # In-place files keep their folder words ("mira/wave.png"); copies keep only their
        # original file name (their original folder is usually just "Downloads").
        name = Path(image.file_name).with_suffix("").as_posix() if image.in_place else Path(image.original_path).stem
        return image_document(image.caption, image.tags, name)

    def match(
        self,
        elements: Sequence[str],
        k: int = 9,
        exclude_top: int = 3,
        pinned: Iterable[str] = (),
    ) -> list[ElementMatch]:
        """Rank reference images for each element by IP-Prompter's rule (see ``ranking``).

        Images among an earlier element's top ``exclude_top`` are not offered to later elements;
        images whose sha256 is in ``pinned`` are never offered; equal scores go by sha256.
        Scores are CLIP cosines in clip mode and TF-IDF cosines in lexical mode.
        """
        elements = [str(e) for e in elements]
        if not elements:
            return []
        if not self._images:
            return [ElementMatch(e, []) for e in elements]
        sim = self._similarities(elements)
        blocked = np.zeros(len(self._images), dtype=bool)
        blocked[[self._position[s] for s in set(pinned) if s in self._position]] = True
        if self._encoder is not None:
            blocked |= ~self._present
        ranked = rank_matches(sim, self._tie_rank, k=k, exclude_top=exclude_top, blocked=blocked)
        return [
            ElementMatch(element, [Match(self._images[i], score) for i, score in refs])
            for element, refs in zip(elements, ranked)
        ]
