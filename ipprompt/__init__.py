"""ipprompt: theme-true comic storyboards from a TOML story, by visual prompting (IP-Prompter, DVP)."""

__version__ = "0.1.0"
