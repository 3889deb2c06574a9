"""The HTTP API (contract §5) on aiohttp.

Every error is a JSON body with a status a client can act on: 400 (with the batch index and JSON
pointer), 401, 403 (a write from a foreign Origin), 404, 413, 415, 503 with Retry-After. Handlers only
translate HTTP to engine calls; what the engine does lives elsewhere.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from engine.cli.common import parse_when
from engine.events import EventError, parse_json_body
from engine.store.reader import EventFilter, read_events, read_last
from engine.store.writer import StoreWriteError

if TYPE_CHECKING:
    from engine.service.app import Engine

log = logging.getLogger("aios.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINE: web.AppKey[Engine] = web.AppKey("engine")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = ("application/json", "application/x-ndjson")
MAX_PAGE = 1000


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                        headers=headers)


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Token, same-origin writes, and JSON bodies for every error (never an HTML page or a traceback)."""
    engine = request.app[ENGINE]
    token = engine.token
    if token and request.path != "/login":
        offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() \
            or request.cookies.get("aios_token", "")
        if not hmac.compare_digest(offered.encode(), token.encode()):
            return error(401, "missing or wrong token: send 'Authorization: Bearer <token>' or log in at /login")
    origin = request.headers.get("Origin")
    if request.method in WRITE_METHODS and origin is not None:
        own = f"{request.scheme}://{request.host}"
        if origin != own:
            return error(403, f"cross-origin write refused: Origin {origin!r} is not {own!r}")
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = engine.config.raw["server"]["max_body_bytes"]
        return error(413, f"request body over the limit of {limit} bytes", limit=limit)
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith("/api/"):
            return error(exc.status, exc.reason)
        raise
    except Exception:  # a bug: logged with its trace, answered without one
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error(500, "internal error; see the engine log")


async def post_events(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    if engine.stopping:
        return json_response({"error": "the engine is shutting down"}, 503, {"Retry-After": "5"})
    content_type = request.content_type
    if content_type not in JSON_TYPES:
        return error(415, f"Content-Type must be application/json or application/x-ndjson, not {content_type!r}")
    body = await request.read()
    try:
        raws = parse_json_body(body, ndjson=content_type == "application/x-ndjson")
        if not raws:
            raise EventError("no events in the body")
        result = await engine.intake.submit(raws, source="api", external=True)
    except EventError as exc:
        engine.metrics.refused.labels("invalid").inc()
        return error(400, exc.message, index=exc.index if exc.index is not None else 0, pointer=exc.pointer)
    except StoreWriteError as exc:
        engine.metrics.refused.labels("store").inc()
        return json_response({"error": f"the event store cannot write: {exc.strerror or exc}"}, 503,
                             {"Retry-After": "10"})
    return json_response({"accepted": len(result.ids), "ids": result.ids,
                          "duplicates": result.stored.count(False)}, 202)


def _selector(request: web.Request) -> EventFilter:
    query = request.query
    try:
        return EventFilter(parse_when(query["since"]) if "since" in query else None,
                           parse_when(query["until"]) if "until" in query else None,
                           tuple(query.getall("type", [])), query.get("agent"))
    except Exception as exc:  # UserError from parse_when
        raise web.HTTPBadRequest(reason=str(exc)) from None


def _limit(request: web.Request, default: int = 100) -> int:
    try:
        limit = int(request.query.get("limit", default))
    except ValueError:
        raise web.HTTPBadRequest(reason="limit must be an integer") from None
    if not 1 <= limit <= MAX_PAGE:
        raise web.HTTPBadRequest(reason=f"limit must be between 1 and {MAX_PAGE}")
    return limit


async def get_events(request: web.Request) -> web.Response:
    """Oldest first from `since`, paged with `after=<id>`; or `last=N`: the newest N. Files are read in a
    worker thread: a month of archives must not stall the engine."""
    engine = request.app[ENGINE]
    selector = _selector(request)
    if "last" in request.query:
        count = _limit(request.clone(rel_url=request.rel_url.update_query(limit=request.query["last"])))
        events = await asyncio.to_thread(read_last, engine.events_dir, count, selector)
        return json_response({"events": events, "next": None})
    return json_response(await asyncio.to_thread(_page, engine.events_dir, selector, _limit(request),
                                                 request.query.get("after")))


def _page(events_dir: Path, selector: EventFilter, limit: int, after: str | None) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    skipping = after is not None
    for event in read_events(events_dir, selector.since, selector.until, selector.types, selector.agent):
        if skipping:
            skipping = event.get("id") != after
            continue
        events.append(event)
        if len(events) > limit:
            break
    more = len(events) > limit
    events = events[:limit]
    return {"events": events, "next": events[-1]["id"] if more else None}


async def get_health(request: web.Request) -> web.Response:
    health = request.app[ENGINE].health()
    return json_response(health, 200 if health["status"] == "ok" else 503)


async def get_agents(request: web.Request) -> web.Response:
    return json_response({"agents": request.app[ENGINE].agents_view()})


async def get_playbooks(request: web.Request) -> web.Response:
    return json_response(request.app[ENGINE].playbooks_view())


async def get_runs(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    records = await asyncio.to_thread(engine.runs.list, _limit(request), request.query.get("playbook"),
                                      request.query.get("status"))
    return json_response({"runs": [r.to_dict() for r in records]})


async def get_run(request: web.Request) -> web.Response:
    run_id = request.match_info["run_id"]
    try:
        record = await asyncio.to_thread(request.app[ENGINE].runs.get, run_id)
    except KeyError:
        return error(404, f"no run {run_id}")
    return json_response(record.to_dict())


async def post_rollback(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    run_id = request.match_info["run_id"]
    force = request.query.get("force", "").lower() in ("1", "true", "yes")
    status, body = await engine.rollback(run_id, force)
    return json_response(body, status)


async def post_reload(request: web.Request) -> web.Response:
    return json_response(await request.app[ENGINE].reload())


async def get_metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[ENGINE].render_metrics()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def get_login(request: web.Request) -> web.Response:
    """`/login?token=T` sets the `aios_token` cookie for browsers (HttpOnly, SameSite=Strict)."""
    engine = request.app[ENGINE]
    offered = request.query.get("token", "")
    if not engine.token:
        return json_response({"login": "not needed: no token is configured"})
    if not hmac.compare_digest(offered.encode(), engine.token.encode()):
        return error(401, "wrong token")
    response = web.HTTPFound("/")
    response.set_cookie("aios_token", offered, httponly=True, samesite="Strict")
    raise response


async def api_not_found(request: web.Request) -> web.Response:
    return error(404, f"no such endpoint: {request.method} {request.path}")


def build_app(engine: Engine) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=engine.config.raw["server"]["max_body_bytes"])
    app[ENGINE] = engine
    app.router.add_post("/api/events", post_events)
    app.router.add_get("/api/events", get_events)
    app.router.add_get("/api/health", get_health)
    app.router.add_get("/api/agents", get_agents)
    app.router.add_get("/api/playbooks", get_playbooks)
    app.router.add_get("/api/runs", get_runs)
    app.router.add_get("/api/runs/{run_id}", get_run)
    app.router.add_post("/api/runs/{run_id}/rollback", post_rollback)
    app.router.add_post("/api/reload", post_reload)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/login", get_login)
    app.router.add_route("*", "/api/{tail:.*}", api_not_found)
    return app
