"""Start the studio: resolve what was given, bind a socket, serve with uvicorn.

The socket is bound here, before uvicorn starts, so ``--port 0`` yields the real port for the
printed URL and for the Host check, and nothing is answered before the guard knows its hosts.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ipprompt.errors import IppromptError
from ipprompt.runfolder.manifest import MANIFEST, read_manifest
from ipprompt.studio.actions import Studio
from ipprompt.studio.security import Guard, allowed_hosts, is_loopback


def resolve_target(target: str | Path, cwd: Path | None = None) -> tuple[Path, Path | None]:
    """(run folder, story file) for what the author gave: a run folder, or a story.

    A story uses the run folder ``story run`` would: ``runs/<story stem>/`` under the current folder.
    """
    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise IppromptError(f"{path} is a folder but not a run folder (no {MANIFEST}).", "Give a run folder, or the story file to start one.")
        read_manifest(path)  # a clear error for a damaged or foreign manifest
        return path, None
    if path.is_file():
        if path.suffix.lower() != ".toml":
            raise IppromptError(f"{path} is neither a run folder nor a story (.toml).", "Example: ipprompt studio stories/lighthouse.toml")
        return (cwd or Path.cwd()) / "runs" / path.stem, path
    raise IppromptError(f"{path} does not exist.", "Give a run folder (runs/NAME) or a story file (stories/NAME.toml).")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise IppromptError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.", "Choose another --port (0 picks a free one).") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@dataclass
class Running:
    """A studio being served: its URL (with the token), and how to stop it."""

    url: str
    port: int
    server: Any  # uvicorn.Server
    sock: socket.socket
    studio: Studio
    thread: threading.Thread | None = None

    def start_background(self) -> None:
        """Serve from a daemon thread (tests, and callers with their own loop)."""
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="ipprompt-studio-server", daemon=True)
        self.thread.start()

    def run_forever(self) -> None:
        """Serve in this thread until Ctrl-C; then cancel the studio's jobs."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.studio.close()

    def stop(self) -> None:
        self.server.should_exit = True
        self.studio.close()
        if self.thread is not None:
            self.thread.join(timeout=10)


def prepare(
    run_dir: Path,
    story: Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    run_options: Mapping[str, Any] | None = None,
    log_level: str = "warning",
) -> Running:
    """The studio, bound to ``host:port`` and ready to serve (``start_background`` or ``run_forever``).

    ``run_options`` go to every ``run_story`` call (None: the settings the run folder was made with).
    """
    import uvicorn

    from ipprompt.studio.app import create_app

    studio = Studio(run_dir, story, run_options=run_options)
    studio.ensure_manifest()
    sock = bind(host, port)
    real_port = sock.getsockname()[1]
    guard = Guard()
    guard.hosts = allowed_hosts(host, real_port)
    app = create_app(studio, guard)
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=2, lifespan="on")
    server = uvicorn.Server(config)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{real_port}/?token={quote(guard.token)}"
    if host in ("0.0.0.0", "::"):
        guard.hosts |= {f"{name}:{real_port}" for name in _machine_names()}
    return Running(url, real_port, server, sock, studio)


def _machine_names() -> set[str]:
    """Names this machine answers to on the network (for ``--host 0.0.0.0``)."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower(), *(f"{n}" for n in ("localhost", "127.0.0.1", "[::1]"))}
    try:
        names.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None) if ":" not in info[4][0])
    except OSError:
        pass
    return names


def exposed(host: str) -> bool:
    """True when ``host`` is reachable from other machines (anything but loopback)."""
    return not is_loopback(host)
