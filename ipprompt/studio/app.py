"""The studio's Starlette application: routes only; the work is in ``actions``.

Every route that changes something is POST-only (a GET to it is answered 405 by the router), and
``GuardMiddleware`` has checked the token and the Host header before any route runs. Answers to
the page's ``fetch`` calls are JSON: ``{"message", "job"}``, or ``{"error", "hint"}`` with status
400 for a user error, which the page shows as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ipprompt.errors import IppromptError
from ipprompt.story.editing import DialogueLine, PanelText
from ipprompt.studio.actions import Outcome, Studio
from ipprompt.studio.events import stream
from ipprompt.studio.page import render_page
from ipprompt.studio.security import Guard, GuardMiddleware, confined_file

Handler = Callable[[Request], Awaitable[Response]]
NO_STORE = {"Cache-Control": "no-store"}


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        raise IppromptError(f"'{key}' must be a number, not {value!r}.", "Reload the page and try again.")
    return int(value)


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise IppromptError(f"'{key}' must be text.", "Reload the page and try again.")
    return value


def _dialogue(data: dict[str, Any]) -> list[DialogueLine] | None:
    lines = data.get("dialogue")
    if lines is None:
        return None
    if not isinstance(lines, list) or not all(isinstance(d, dict) for d in lines):
        raise IppromptError("'dialogue' must be a list of {speaker, text}.", "Reload the page and try again.")
    return [DialogueLine(str(d.get("speaker") or ""), str(d.get("text") or "")) for d in lines]


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise IppromptError("The request body must be a JSON object.", "Reload the page and try again.")
    return data


def _answer(action: Callable[[Studio, dict[str, Any]], Outcome]) -> Callable[[Request], Awaitable[Response]]:
    """A POST route: parse the JSON body, run the action in a thread, answer JSON."""
    from starlette.concurrency import run_in_threadpool

    async def route(request: Request) -> Response:
        studio: Studio = request.app.state.studio
        try:
            data = await _json_body(request)
            outcome = await run_in_threadpool(action, studio, data)
        except IppromptError as error:
            return JSONResponse({"error": error.message, "hint": error.hint}, status_code=400)
        return JSONResponse(outcome.to_json())

    return route


async def index(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    studio: Studio = request.app.state.studio
    try:
        html = await run_in_threadpool(render_page, studio, request.app.state.guard.token)
    except IppromptError as error:
        return PlainTextResponse(f"{error.message}\n{error.hint or ''}", status_code=500)
    return HTMLResponse(html, headers={**NO_STORE, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})


async def files(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    path = confined_file(studio.root, request.path_params["path"])
    if path is None:
        return PlainTextResponse("Not found.", status_code=404)
    return FileResponse(path, headers=NO_STORE)


async def events(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    given = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    last = int(given) if given.isdigit() else 0
    headers = {**NO_STORE, "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(studio.hub, last, request.is_disconnected), media_type="text/event-stream", headers=headers)


async def jobs(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    return JSONResponse([job.to_json() for job in studio.queue.jobs()], headers=NO_STORE)


async def export(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    studio: Studio = request.app.state.studio
    try:
        data, name, media = await run_in_threadpool(studio.export, request.path_params["kind"])
    except IppromptError as error:
        return PlainTextResponse(f"{error.message}\n{error.hint or ''}", status_code=400)
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"', **NO_STORE})


def _edit(studio: Studio, data: dict[str, Any]) -> Outcome:
    text = PanelText(prompt=_text(data, "prompt"), caption=_text(data, "caption"), dialogue=_dialogue(data))
    return studio.edit(_int(data, "panel"), text)


def create_app(studio: Studio, guard: Guard) -> Starlette:
    """The ASGI app over ``studio``, guarded by ``guard`` (whose ``hosts`` the caller fills in)."""
    routes = [
        Route("/", index, methods=["GET"]),
        Route("/files/{path:path}", files, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
        Route("/api/jobs", jobs, methods=["GET"]),
        Route("/api/pick", _answer(lambda s, d: s.pick(_int(d, "panel"), _int(d, "candidate"))), methods=["POST"]),
        Route("/api/auto", _answer(lambda s, d: s.pick_auto(_int(d, "panel"))), methods=["POST"]),
        Route("/api/restore", _answer(lambda s, d: s.restore(_int(d, "panel"), _text(d, "name") or "")), methods=["POST"]),
        Route("/api/reroll", _answer(lambda s, d: s.reroll(_int(d, "panel"))), methods=["POST"]),
        Route("/api/run", _answer(lambda s, d: s.run()), methods=["POST"]),
        Route("/api/edit", _answer(_edit), methods=["POST"]),
        Route("/api/cancel", _answer(lambda s, d: s.cancel(_int(d, "job"))), methods=["POST"]),
        Route("/api/export/{kind}", export, methods=["POST"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        studio.close()  # cancel queued jobs; end the event streams so the server can stop

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.studio = studio
    app.state.guard = guard
    app.add_middleware(GuardMiddleware, guard=guard)
    return app
