"""Themes: libraries of reference images, their SQLite index, CLIP embeddings and retrieval.

Modules, one job each:

- ``config``: ``theme.toml`` (name, description, encoder id)
- ``store``: the SQLite index (WAL, one transaction per change)
- ``importer``: finding, checking and copying image files in (``theme add``)
- ``folder_sync``: keeping the index of a plain folder of images in step with the folder
- ``lexical``: caption/tag matching when no CLIP model is available
- ``ranking``: the reference rule as a pure function over a similarity matrix
- ``library``: ``ThemeLibrary``, which ties them together
- ``sheet``: contact sheets
"""

from ipprompt.theme.library import ThemeLibrary
from ipprompt.theme.ranking import rank_matches, sha_tie_rank
from ipprompt.theme.records import ElementMatch, ImportReport, Match, Refusal, SyncReport, ThemeImage

__all__ = [
    "ElementMatch",
    "ImportReport",
    "Match",
    "Refusal",
    "SyncReport",
    "ThemeImage",
    "ThemeLibrary",
    "rank_matches",
    "sha_tie_rank",
]
