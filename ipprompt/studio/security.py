"""Who may talk to the studio, and which files it may hand out.

The studio starts GPU jobs and writes the story file, so any web page the author visits must not
be able to drive it. Three rules, checked on every request before any route runs:

* **Token** (as Jupyter does): a random token is printed in the studio's URL. A request must carry
  it as ``?token=``, as the ``X-Studio-Token`` header, or as the cookie the first tokened page
  sets (HttpOnly, SameSite=Strict). A request that changes something is a POST and must carry the
  token itself (query or header): a cookie alone is what a cross-site form would send.
* **Host header** (DNS rebinding): a hostile name resolving to 127.0.0.1 reaches the server with
  its own name in ``Host``; only the bound ``host:port`` (and, on a loopback address, the other
  loopback names) are answered.
* **Files**: only regular files inside the run folder, reached through no symlink and no ``..``,
  and never hidden ones (locks); anything else is a 404, as if it did not exist.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import stat
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_HEADER = "x-studio-token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, port: int) -> set[str]:
    """The ``Host`` header values a server bound to ``host:port`` answers."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    hosts = {f"{name}:{port}"}
    if is_loopback(host):
        hosts.update(f"{n}:{port}" for n in LOOPBACK_NAMES)
    if port == 80:
        hosts.update(h.rsplit(":", 1)[0] for h in list(hosts))
    return hosts


@dataclass
class Guard:
    """The studio's secret and the hosts it answers; ``hosts`` is filled in once the port is known."""

    token: str = field(default_factory=new_token)
    hosts: set[str] = field(default_factory=set)

    @property
    def cookie_name(self) -> str:
        # Cookies ignore ports: two studios on one machine each get a cookie of their own.
        return "ipprompt_studio_" + hashlib.sha256(self.token.encode()).hexdigest()[:12]

    def token_ok(self, given: str | None) -> bool:
        return bool(given) and secrets.compare_digest(given.encode(), self.token.encode())  # type: ignore[union-attr]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class GuardMiddleware:
    """Pure ASGI middleware: refuse a request before the app sees it, set the token cookie after."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        guard = self.guard
        host = (_header(scope, b"host") or "").lower()
        if host not in guard.hosts:
            await PlainTextResponse(f"Refused: this studio does not answer to the host {host!r}.", status_code=403)(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        from_query = (query.get("token") or [None])[0]
        from_header = _header(scope, TOKEN_HEADER.encode())
        cookie = SimpleCookie()
        try:
            cookie.load(_header(scope, b"cookie") or "")
        except Exception:  # a malformed Cookie header is as good as none
            cookie = SimpleCookie()
        from_cookie = cookie[guard.cookie_name].value if guard.cookie_name in cookie else None
        explicit = guard.token_ok(from_query) or guard.token_ok(from_header)
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            allowed = explicit
        else:
            allowed = explicit or guard.token_ok(from_cookie)
        if not allowed:
            message = "Forbidden: open the studio with the URL (and its token) that `ipprompt studio` printed."
            await PlainTextResponse(message, status_code=403)(scope, receive, send)
            return
        if not guard.token_ok(from_query) or guard.token_ok(from_cookie):
            await self.app(scope, receive, send)
            return
        value = f"{guard.cookie_name}={guard.token}; Path=/; HttpOnly; SameSite=Strict"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"set-cookie", value.encode("latin-1"))]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def confined_file(root: Path, rel: str) -> Path | None:
    """The run folder's file ``rel`` names, or None when it must not be served.

    Refused: empty, absolute, backslashes, ``..`` or hidden parts, a symlink anywhere on the way
    (even one pointing back inside: a link is not the run's own file), anything that resolves
    outside the folder, and anything but a regular file.
    """
    if not rel or "\\" in rel or "\x00" in rel:
        return None
    parts = PurePosixPath(rel)
    if parts.is_absolute() or any(p in ("", ".", "..") or p.startswith(".") for p in parts.parts):
        return None
    try:
        base = root.resolve(strict=True)
        current = base
        for part in parts.parts:
            current = current / part
            if current.is_symlink():
                return None
        resolved = current.resolve(strict=True)
        if base not in resolved.parents or not stat.S_ISREG(resolved.lstat().st_mode):
            return None
    except (OSError, RuntimeError, ValueError):
        return None
    return resolved
