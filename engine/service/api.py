"""The HTTP API (contract §5) on aiohttp.

Every refusal is a JSON body with a status a client can act on: 400 (with the batch index and JSON
pointer), 401, 403 (a foreign Host on a loopback bind, a write from a foreign Origin), 404, 408, 413,
415, 503 with Retry-After. Handlers only translate HTTP to calls on `EngineAPI`; what the engine does
lives elsewhere. What aiohttp refuses before the application sees a request is in `edge.py`.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from engine.durations import parse_duration
from engine.events import EventError, parse_json_body
from engine.live.ws import HUB, websocket
from engine.score.feedback import FeedbackError
from engine.service import encodings
from engine.service.hosts import HostRule
from engine.service.interface import EngineAPI
from engine.service.pages import add_pages
from engine.store.reader import EventFilter, read_events, read_last
from engine.store.writer import StoreWriteError
from engine.timespec import parse_when

log = logging.getLogger("aios.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Edge:
    """What `server.*` fixes for the life of the server (changes there need a restart, as `reload` says)."""

    hosts: HostRule
    body_timeout_s: float
    max_body_bytes: int


ENGINE: web.AppKey[EngineAPI] = web.AppKey("engine")
EDGE: web.AppKey[Edge] = web.AppKey("edge")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = ("application/json", "application/x-ndjson")
MAX_PAGE = 1000
OFF_LOOP_BYTES = 64 << 10  # bodies this large are parsed off the event loop (~1 ms of orjson)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                        headers=headers)


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status)


def unavailable(message: str, retry_after_s: int) -> web.Response:
    return json_response({"error": message}, 503, {"Retry-After": str(retry_after_s)})


def same_token(offered: str, token: str) -> bool:
    """In constant time. Header bytes that are no UTF-8 arrive as lone surrogates (so may a query's `%ED%A0%80`):
    they are compared, never a reason to fail."""
    return hmac.compare_digest(offered.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass"))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host (DNS rebinding), token, same-origin writes, and JSON bodies for every error (never an HTML
    page or a traceback)."""
    engine, edge = request.app[ENGINE], request.app[EDGE]
    refused = edge.hosts.refusal(request.headers.get("Host"))
    if refused is not None:
        return error(*refused)
    token = engine.token
    if token and request.path != "/login":
        offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() \
            or request.cookies.get("aios_token", "")
        if not same_token(offered, token):
            return error(401, "missing or wrong token: send 'Authorization: Bearer <token>' or log in at /login")
    origin = request.headers.get("Origin")
    if origin is not None and (request.method in WRITE_METHODS or request.path == "/ws"):
        own = f"{request.scheme}://{request.host}"  # /ws too: another site's page must not read it with our cookie
        if origin != own:
            return error(403, f"cross-origin request refused: Origin {origin!r} is not {own!r}")
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = edge.max_body_bytes
        return error(413, f"request body over the limit of {limit} bytes", limit=limit)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects (login)
            raise
        refusal = error(exc.status, exc.reason)
        if "Allow" in exc.headers:  # 405 says which methods would do
            refusal.headers["Allow"] = exc.headers["Allow"]
        return refusal
    except Exception:  # a bug: logged with its trace, answered without one
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error(500, "internal error; see the engine log")


async def post_events(request: web.Request) -> web.Response:
    """Everything that can be refused from the head is refused before the body is read."""
    engine = request.app[ENGINE]
    if engine.stopping:
        return unavailable("the engine is shutting down", 5)
    content_type = request.content_type
    if content_type not in JSON_TYPES:
        return error(415, f"Content-Type must be application/json or application/x-ndjson, not {content_type!r}")
    coding = request.headers.get("Content-Encoding", "")
    unsupported = encodings.unsupported(coding)
    if unsupported is not None:
        return json_response(unsupported[1], unsupported[0])
    overloaded = engine.overloaded()
    if overloaded is not None:  # counted in aios_events_refused_total{reason="overload"} by the engine
        return unavailable(*overloaded)
    body = await _read_body(request, coding)
    if isinstance(body, web.Response):
        return body
    try:
        ndjson = content_type == "application/x-ndjson"
        # Parsing megabytes takes milliseconds: a large body is parsed in a worker thread, off the loop.
        raws = parse_json_body(body, ndjson) if len(body) < OFF_LOOP_BYTES \
            else await asyncio.to_thread(parse_json_body, body, ndjson)
        if not raws:
            raise EventError("no events in the body")
        result = await engine.intake.submit(raws, source="api", external=True)
    except EventError as exc:
        engine.metrics.refused.labels("invalid").inc()
        return error(400, exc.message, index=exc.index if exc.index is not None else 0, pointer=exc.pointer)
    except StoreWriteError as exc:
        engine.metrics.refused.labels("store").inc()
        return unavailable(f"the event store cannot write: {exc.strerror or exc}", 10)
    return json_response({"accepted": len(result.ids), "ids": result.ids,
                          "duplicates": result.stored.count(False)}, 202)


async def _read_body(request: web.Request, coding: str) -> bytes | web.Response:
    """The whole (decoded) body within `server.body_timeout`; else the refusal, which also closes the
    connection (what is left of the body is not worth reading): 408 for a client that stops sending, 400
    for a body that does not decode as its Content-Encoding says."""
    timeout = request.app[EDGE].body_timeout_s
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        refusal = error(408, f"the request body did not arrive within {timeout:g} s (server.body_timeout)")
    except RequestPayloadError as exc:
        if coding and "content-encoding" in str(exc).lower():
            status, body = encodings.undecodable(coding)
            refusal = json_response(body, status)
        else:
            refusal = error(400, f"the request body could not be read: {exc}")
    refusal.force_close()
    return refusal


async def read_json(request: web.Request, empty: Any = None) -> Any:
    """A small JSON request body (`empty` when there is none); the refusal (415, 400, 408) as a Response."""
    if request.body_exists and request.content_type != "application/json":
        return error(415, f"Content-Type must be application/json, not {request.content_type!r}")
    body = await _read_body(request, "")
    if isinstance(body, web.Response):
        return body
    if not body.strip():
        return empty
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return error(400, f"the body is not JSON: {exc}", pointer="")


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "").lower()
    if value not in ("", "0", "1", "false", "true", "no", "yes"):
        raise web.HTTPBadRequest(reason=f"{name} must be 1/true/yes or 0/false/no, not {value!r}")
    return value in ("1", "true", "yes")


def _selector(request: web.Request) -> EventFilter:
    query = request.query
    try:
        return EventFilter(parse_when(query["since"]) if "since" in query else None,
                           parse_when(query["until"]) if "until" in query else None,
                           tuple(query.getall("type", [])), query.get("agent"))
    except ValueError as exc:
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
    return json_response(health, 503 if health["status"] == "failing" else 200)  # degraded still serves


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


async def get_problems(request: web.Request) -> web.Response:
    return json_response({"problems": request.app[ENGINE].problems_view(_flag(request, "open"))})


async def get_problem(request: web.Request) -> web.Response:
    problem_id = request.match_info["problem_id"]
    found = request.app[ENGINE].problem(problem_id)
    return json_response(found) if found is not None else error(404, f"no problem {problem_id}")


async def get_score(request: web.Request) -> web.Response:
    return json_response({"agents": request.app[ENGINE].score_view(request.query.get("agent") or None)})


async def post_feedback(request: web.Request) -> web.Response:
    """A label: `{"event": ID, "label": bool}` or `{"agent": A, "at": T, "label": true}` (docs/score.md)."""
    if request.content_type != "application/json":
        return error(415, f"Content-Type must be application/json, not {request.content_type!r}")
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    try:
        record = await request.app[ENGINE].feedback(body)
    except FeedbackError as exc:
        return error(400, str(exc), pointer=exc.pointer)
    return json_response({"label": record}, 201)


async def post_tune(request: web.Request) -> web.Response:
    """`dry_run=1`: what tuning would change; `revert=1`: undo the last version."""
    dry_run, revert = _flag(request, "dry_run"), _flag(request, "revert")
    if dry_run and revert:
        return error(400, "dry_run and revert cannot go together")
    return json_response(await request.app[ENGINE].tune(dry_run, revert))


async def post_rollback(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    run_id = request.match_info["run_id"]
    status, body = await engine.rollback(run_id, _flag(request, "force"))
    return json_response(body, status)


async def post_compact(request: web.Request) -> web.Response:
    """Retention now (`dry_run=1`: only report what it would do); the same report `compact` prints."""
    return json_response(await request.app[ENGINE].compact(_flag(request, "dry_run")))


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
    if not same_token(offered, engine.token):
        return error(401, "wrong token")
    response = web.HTTPFound("/")
    response.set_cookie("aios_token", offered, httponly=True, samesite="Strict")
    raise response


async def api_not_found(request: web.Request) -> web.Response:
    return error(404, f"no such endpoint: {request.method} {request.path}")


def build_app(engine: EngineAPI) -> web.Application:
    """The application; serve it with `edge.make_runner` (timeouts, JSON for aiohttp's own refusals)."""
    server = engine.config.raw["server"]
    edge = Edge(HostRule.for_bind(engine.host, server["allowed_hosts"]), parse_duration(server["body_timeout"]),
                server["max_body_bytes"])
    app = web.Application(middlewares=[guard], client_max_size=edge.max_body_bytes)
    app[ENGINE] = engine
    app[EDGE] = edge
    app.router.add_post("/api/events", post_events)
    app.router.add_get("/api/events", get_events)
    app.router.add_get("/api/health", get_health)
    app.router.add_get("/api/agents", get_agents)
    app.router.add_get("/api/playbooks", get_playbooks)
    app.router.add_get("/api/problems", get_problems)
    app.router.add_get("/api/problems/{problem_id}", get_problem)
    app.router.add_get("/api/score", get_score)
    app.router.add_post("/api/feedback", post_feedback)
    app.router.add_post("/api/tune", post_tune)
    app.router.add_get("/api/runs", get_runs)
    app.router.add_get("/api/runs/{run_id}", get_run)
    app.router.add_post("/api/runs/{run_id}/rollback", post_rollback)
    from engine.service.api_runs import add_run_controls  # noqa: PLC0415 - it imports this module's helpers

    add_run_controls(app)  # cancel, rerun, approve, deny; /api/approvals
    app.router.add_post("/api/reload", post_reload)
    app.router.add_post("/api/compact", post_compact)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/login", get_login)
    app[HUB] = engine.hub
    app.router.add_get("/ws", websocket)
    from engine.service.api_controls import add_control_routes  # noqa: PLC0415 - it imports this module's helpers

    add_control_routes(app)
    add_pages(app)
    app.router.add_route("*", "/api/{tail:.*}", api_not_found)
    return app
