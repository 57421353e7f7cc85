"""Plain records that leave the theme package: images, matches, and import outcomes.

They are frozen dataclasses so that later stages (layouts, the run manifest) can keep and compare
them without worrying that the library changes them underneath.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ThemeImage:
    """One image of a theme.

    ``file_name`` is the image's path relative to the theme folder (``images/<sha16>.png`` for a
    copy made by ``theme add``, the user's own relative path for an image indexed in place);
    ``path`` is the absolute path of that file. ``width``/``height`` are after EXIF orientation.
    """

    sha256: str
    path: Path
    file_name: str
    caption: str
    tags: tuple[str, ...]
    width: int
    height: int
    original_path: str = ""
    in_place: bool = False

    @property
    def short_sha(self) -> str:
        """The 12-digit prefix shown to users (``theme rm`` accepts any unique prefix of 4+)."""
        return self.sha256[:12]


@dataclass(frozen=True)
class Match:
    """A reference image offered for an element, with its similarity (cosine or lexical)."""

    image: ThemeImage
    score: float


@dataclass(frozen=True)
class ElementMatch:
    """The ranked references for one key element, best first."""

    element: str
    refs: list[Match]


@dataclass(frozen=True)
class Refusal:
    """A file that was not added, and why, in words a user can act on."""

    path: Path
    reason: str

    def line(self) -> str:
        """One line naming the file and the reason, as the CLI prints it."""
        return f"{self.path}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did: new images, exact duplicates skipped, files refused."""

    added: list[ThemeImage] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    def summary(self) -> str:
        """'3 added, 1 duplicate, 2 refused' - the last line of ``theme add``."""
        dup = "duplicate" if len(self.duplicates) == 1 else "duplicates"
        return f"{len(self.added)} added, {len(self.duplicates)} {dup}, {len(self.refused)} refused"


@dataclass
class SyncReport:
    """What re-opening a folder found: images indexed in place, rows dropped, files refused.

    ``notes`` are things the user should hear about once (an index rebuilt from the copies).
    """

    added: list[ThemeImage] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
