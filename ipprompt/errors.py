"""Errors a user can act on.

Every failure a user can cause or fix (a typo in a story, a missing model, a corrupt image) is an
``IppromptError``. The CLI prints its message and hint and exits with ``exit_code``; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class IppromptError(Exception):
    """A problem the user can fix; ``hint`` says how."""

    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle as class, message, hint and attributes, so an error raised on a Ray worker reaches
        the driver as itself: callers tell errors apart by class (``except ManifestDamaged``), never
        by message text. Subclasses whose constructors take other arguments are rebuilt without
        calling their constructor."""
        return (_restore_error, (type(self), self.message, self.hint), dict(self.__dict__))


def _restore_error(cls: type[IppromptError], message: str, hint: str | None) -> IppromptError:
    """An ``IppromptError`` (or subclass) with ``message`` and ``hint``, its constructor bypassed."""
    error = cls.__new__(cls)
    IppromptError.__init__(error, message, hint)
    return error


def hf_cache_dir() -> Path:
    """Where Hugging Face keeps downloaded models (honours HF_HUB_CACHE / HF_HOME)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - huggingface_hub is a dependency
        home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
        return home / "hub"


class ModelUnavailable(IppromptError):
    """A model could not be loaded from a local folder, the cache, or the Hub."""

    def __init__(self, model_id: str, role: str, option: str, cause: BaseException | None = None) -> None:
        reason = f" ({type(cause).__name__}: {str(cause).splitlines()[0][:200]})" if cause and str(cause) else ""
        path_like = "/" in model_id and (model_id.startswith((".", "/", "~")) or model_id.count("/") > 1)
        if path_like and not Path(model_id).expanduser().exists():
            reason = f" (the folder {Path(model_id).expanduser()} does not exist)"
        message = f"Could not load the {role} model '{model_id}'{reason}."
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint_lines = [
            f"  - It is neither a local folder nor in the Hugging Face cache ({hf_cache_dir()}).",
            "  - Download it once on a machine with network access: `hf download " + model_id + "`,"
            " or point "
            + option
            + " at a local folder saved with save_pretrained.",
            "  - Gated models (FLUX.1-Fill-dev) need the licence accepted on huggingface.co and a"
            " token: `hf auth login` or HF_TOKEN.",
        ]
        if offline:
            hint_lines.append("  - HF_HUB_OFFLINE is set, so nothing is downloaded.")
        else:
            hint_lines.append("  - Set HF_HUB_OFFLINE=1 to stop ipprompt trying the network.")
        hint_lines.append("  - To plan a story without any model, use `--backend preview`.")
        super().__init__(message, "\n".join(hint_lines))
        self.model_id = model_id
        self.role = role


# Operating-system errors a user can fix, in words: a symlink loop, a full disk, no permission.
# These come from the user's disk, not from a bug: a ``--out`` that is a symbolic link pointing at
# itself, a story path that loops, a read-only or full file system. The CLI turns them into a
# message and exit 2 (``ipprompt.cli.console.run_cli_errors``) wherever they surface, so no code
# path can forget one; modules that know better (the file being read) raise ``user_os_error``
# themselves with that context.

# errno -> (what happened, what to do)
_KNOWN: dict[int, tuple[str, str]] = {
    errno.ELOOP: ("is a symbolic link loop (a link that leads back to itself)", "Remove or fix the link, or give another path."),
    errno.ENOSPC: ("cannot be written: the disk is full", "Free some space on that disk (or write elsewhere) and run the command again."),
    errno.EROFS: ("is on a read-only file system", "Give a folder on a writable disk."),
    errno.EACCES: ("cannot be accessed: permission denied", "Check the permissions of the file and its folders, or give another path."),
    errno.EPERM: ("cannot be changed: operation not permitted", "Check the permissions of the file and its folders, or give another path."),
    errno.ENAMETOOLONG: ("has a name too long for the file system", "Give a shorter path."),
    errno.ENOTDIR: ("goes through a file where a folder is expected", "Check the path: one of its parts is a file."),
}
if hasattr(errno, "EDQUOT"):
    _KNOWN[errno.EDQUOT] = ("cannot be written: the disk quota is exceeded", "Free some space (or write elsewhere) and run the command again.")


def loops(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` (or a folder on the way to it) is a symbolic link loop."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _looping_part(path: Path) -> Path | None:
    """The shortest prefix of ``path`` that loops, to name the link the user must fix."""
    parts = path.parts
    for i in range(1, len(parts) + 1):
        prefix = Path(*parts[:i])
        if loops(prefix):
            return prefix
    return None


def classify(exc: OSError) -> IppromptError | None:
    """The user error an OSError stands for, or None when it is not one we can explain.

    ``mkdir`` on a link that loops says "File exists" (EEXIST), so a path that loops is recognised
    by looking at the path itself, whatever errno came with it.
    """
    name = exc.filename
    if name is not None and not isinstance(name, int):
        path = Path(os.fsdecode(name))
        looping = _looping_part(path)
        if looping is not None:
            what, fix = _KNOWN[errno.ELOOP]
            return IppromptError(f"{looping} {what}.", fix)
    if exc.errno not in _KNOWN:
        return None
    what, fix = _KNOWN[exc.errno]
    subject = os.fsdecode(name) if name is not None and not isinstance(name, int) else "A file"
    return IppromptError(f"{subject} {what}.", fix)


def user_os_error(exc: OSError, doing: str) -> IppromptError:
    """An IppromptError for ``exc``, raised while ``doing`` (e.g. "Cannot read the story file x")."""
    known = classify(exc)
    if known is not None:
        return IppromptError(f"{doing}: {known.message}", known.hint)
    return IppromptError(f"{doing}: {exc.strerror or exc}.", "Check the path and its permissions.")
