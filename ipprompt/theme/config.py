"""``theme.toml``: a theme's name, description and the encoder its embeddings are made with.

The file is optional. Themes created by ``ipprompt theme add`` get one; a plain folder of images
that a story points at has none and is described by its folder name and the default encoder, so
ipprompt never writes anything but its index into a user's own folder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ipprompt.atomic import atomic_write_text
from ipprompt.encoders.clip import DEFAULT_ENCODER
from ipprompt.errors import IppromptError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "theme.toml"
_KEYS = ("name", "description", "encoder")


@dataclass(frozen=True)
class ThemeConfig:
    """What ``theme.toml`` says (or the defaults for a folder without one)."""

    name: str
    description: str = ""
    encoder: str = DEFAULT_ENCODER


def read_config(folder: Path) -> ThemeConfig:
    """Read ``folder/theme.toml``; a folder without one is named after itself.

    Unknown keys are an error: a typo such as ``encodr`` would otherwise silently pick the default
    model and make every search quietly worse.
    """
    path = folder / CONFIG_FILE
    if not path.is_file():
        return ThemeConfig(name=folder.name)
    try:
        # utf-8-sig: a byte-order mark (some Windows editors write one) is accepted, as in stories
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except RecursionError:
        raise IppromptError(
            f"{path} nests arrays or tables too deeply to read.",
            "A theme.toml holds only name, description and encoder strings; fix the file or delete it.",
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IppromptError(f"{path} is not valid TOML: {exc}", "Fix the file or delete it.") from exc
    except OSError as exc:
        raise IppromptError(f"Cannot read {path}: {exc.strerror or exc}.", "Check the file and its permissions.") from None
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise IppromptError(
            f"{path}: unknown key(s) {', '.join(unknown)}.",
            f"A theme.toml may contain only: {', '.join(_KEYS)}.",
        )
    for key in _KEYS:
        if key in data and not isinstance(data[key], str):
            raise IppromptError(f"{path}: '{key}' must be a string.", f'Write it as {key} = "..."')
    return ThemeConfig(
        name=data.get("name") or folder.name,
        description=data.get("description", ""),
        encoder=_encoder_location(data.get("encoder") or DEFAULT_ENCODER, folder),
    )


def _encoder_location(encoder: str, folder: Path) -> str:
    """A Hub id as written; a local path (``./models/clip``) relative to the theme folder.

    Relative to the theme, not the working directory, so the theme works wherever it is used from.
    """
    if encoder.startswith((".", "~")) or Path(encoder).is_absolute():
        return str((folder / Path(encoder).expanduser()).resolve())
    return encoder


def _toml_string(value: str) -> str:
    """A TOML basic string (the standard library reads TOML but cannot write it)."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def write_config(folder: Path, config: ThemeConfig) -> Path:
    """Write ``theme.toml`` atomically (temp file + rename), so a reader never sees half a file."""
    text = "".join(f"{key} = {_toml_string(getattr(config, key))}\n" for key in _KEYS)
    atomic_write_text(folder / CONFIG_FILE, text)
    return folder / CONFIG_FILE
