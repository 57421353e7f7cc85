"""The methods a panel can be made with, and everything that differs between them, in one table.

``dvp`` is ours (rungs, refinement, fair scores); ``reference`` is IP-Prompter's published method,
reproduced rule for rule (``ipprompt.dvp.ipprompter``). Code elsewhere asks the registry
(``method_of(name).offers_pinned`` ...) instead of comparing method names, so a third method is
one entry here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipprompt.dvp.grid import RefImage
    from ipprompt.dvp.rungs import Schedule
    from ipprompt.dvp.search import CandidateSearch, SearchSettings
    from ipprompt.story.loading import Generation, Panel, Story


def _dvp_search() -> type["CandidateSearch"]:
    from ipprompt.dvp.search import CandidateSearch

    return CandidateSearch


def _reference_search() -> type["CandidateSearch"]:
    from ipprompt.dvp.ipprompter import ReferenceSearch

    return ReferenceSearch


def _dvp_prompt(panel: "Panel", story: "Story") -> str:
    from ipprompt.story.elements import panel_text

    return panel_text(panel, story)


def _reference_prompt(panel: "Panel", story: "Story") -> str:
    from ipprompt.dvp.ipprompter import reference_prompt
    from ipprompt.story.elements import reference_text

    return reference_prompt(reference_text(panel, story))


def _dvp_description(panel: "Panel", story: "Story") -> str:
    from ipprompt.story.elements import panel_description

    return panel_description(panel, story)


def _reference_description(panel: "Panel", story: "Story") -> str:
    from ipprompt.story.elements import reference_text

    return reference_text(panel, story)  # the reference scores CLIP-T against the frame's text as written


def _theme_pool(library: Any, texts: Sequence[str], k: int, exclude_top: int, pinned: Sequence[str]) -> tuple[tuple["RefImage", ...], ...]:
    """Our retrieval: every image of the theme (once per distinct image), pinned ones left out."""
    from ipprompt.dvp.grid import RefImage

    matches = library.match(list(texts), k=k, exclude_top=exclude_top, pinned=pinned)
    return tuple(
        tuple(RefImage(m.image.sha256, m.image.path, m.image.caption, round(float(m.score), 6)) for m in em.refs) for em in matches
    )


def _reference_pool(library: Any, texts: Sequence[str], k: int, exclude_top: int, pinned: Sequence[str]) -> tuple[tuple["RefImage", ...], ...]:
    """The reference's pool: the theme folder's top-level .jpg/.jpeg/.png files, duplicates kept."""
    from ipprompt.dvp.reference_pool import reference_match

    return tuple(tuple(refs) for refs in reference_match(library, texts, k=k, exclude_top=exclude_top))


def _no_problems(story: "Story", settings: "Generation", numbers: Sequence[int] | None = None) -> None:
    return None


def _reference_problems(story: "Story", settings: "Generation", numbers: Sequence[int] | None = None) -> None:
    from ipprompt.dvp.ipprompter import reference_problems

    reference_problems(story, settings, numbers)


@dataclass(frozen=True)
class Method:
    """What one method decides: search, prompt, size, refusals, retrieval pool and image opening."""

    name: str
    title: str  # for the dry run's heading
    search_class: Callable[[], type["CandidateSearch"]]
    prompt: Callable[["Panel", "Story"], str]
    description: Callable[["Panel", "Story"], str]  # what CLIP-T compares the cell with
    problems: Callable[..., None]  # raises a StoryError for what it cannot lay out
    retrieve: Callable[..., tuple[tuple["RefImage", ...], ...]]  # (library, texts, k, exclude_top, pinned) -> per element
    rungs: bool  # candidates judged at rungs (else every candidate runs to the end)
    all_orderings: bool  # round 0 tries every ordering (else at most ``candidates``)
    offers_pinned: bool  # pinned references stay in the retrieval pool
    image_mode: str  # how ``ipprompt.images.open_image`` opens its references
    steps: int | None = None  # the method's own step count unless written (None: the budget's)

    def first_round(self, n_elements: int, candidates: int) -> int:
        orderings = math.factorial(n_elements) if n_elements else 0
        return orderings if self.all_orderings else min(candidates, orderings)

    def budget(self, settings: "SearchSettings", first_round: int, schedule: "Schedule") -> int:
        """The most NFE one panel costs (refinement may stop early; never more)."""
        if not self.rungs:
            return first_round * settings.steps
        n = settings.arrangements(first_round)
        return schedule.nfe(n) if settings.pruned and schedule.rungs else n * settings.steps


METHODS: dict[str, Method] = {
    "dvp": Method(
        "dvp", "DVP", _dvp_search, _dvp_prompt, _dvp_description, _no_problems, _theme_pool,
        rungs=True, all_orderings=False, offers_pinned=False, image_mode="upright",
    ),
    "reference": Method(
        "reference", "reference method (every permutation)", _reference_search, _reference_prompt, _reference_description, _reference_problems, _reference_pool,
        rungs=False, all_orderings=True, offers_pinned=True, image_mode="plain", steps=50,
    ),
}


def method_of(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}: one of {', '.join(METHODS)}") from None


def method_problems(story: "Story", settings: "Generation", numbers: Sequence[int] | None = None) -> None:
    """Refuse, before anything loads, what the story's method cannot lay out."""
    method_of(settings.method).problems(story, settings, numbers)
