"""ViStoryBench support: import its stories, run them, export the images its official code scores.

ViStoryBench (arXiv 2505.24862) is a story-visualisation benchmark with reference images of every
character. Its metrics need their own models and a VLM, so ipprompt does not re-implement them: it
converts the benchmark's stories into ipprompt stories (``convert``), and finished runs into the
folder layout the benchmark's reader expects (``outputs``). ``dataset`` reads the benchmark's files
by the same rules as its own loader, so that the shots ipprompt draws are the shots it scores.
"""

from __future__ import annotations

# The Lite split, as the benchmark's loader lists it (``get_story_name_list(split="lite")``).
LITE_SPLIT = (
    "01", "08", "09", "15", "17", "19", "24", "27", "28", "29",
    "32", "41", "52", "53", "55", "57", "60", "64", "68", "79",
)
LANGUAGES = ("en", "ch")
SIDECAR = "vistorybench.json"  # next to each imported story.toml: story id, language, shot index per panel
