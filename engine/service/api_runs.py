"""Run controls over HTTP: cancel, re-run, approve and deny a run; the runs waiting for an approval.

`POST /api/runs/{id}/cancel|rerun|approve|deny` take an optional JSON object body (`{"reason": "..."}`;
`rerun` takes no field); a body that is not one, or a path whose run id is no run id, is 400 with the
JSON pointer of what is wrong (`/run_id` for the path). Who asked
comes from `actor(request)` and goes into the events. The answers are `RunControls`' (200, 202, 404, 409).
"""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from engine.reactor.snapshot import valid_run_id
from engine.service.actor import actor
from engine.service.api import ENGINE, _read_body, error, json_response
from engine.yaml_loader import pointer_join

MAX_REASON = 1000
SHOWN_ID = 40  # characters of a bad run id echoed back


async def _fields(request: web.Request, allowed: tuple[str, ...]) -> dict[str, Any] | web.Response:
    """The body's fields (`{}` when there is no body), or the refusal."""
    body = await _read_body(request, "")
    if isinstance(body, web.Response):
        return body
    if not body.strip():
        return {}
    if request.content_type not in ("application/json", "application/octet-stream"):
        return error(415, f"Content-Type must be application/json, not {request.content_type!r}")
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return error(400, f"the body is not JSON: {exc}", pointer="")
    if not isinstance(fields, dict):
        return error(400, f"the body must be a JSON object, not {type(fields).__name__}", pointer="")
    for name, value in fields.items():
        if name not in allowed:
            known = ", ".join(allowed) or "none"
            return error(400, f"unknown field {name!r} (known: {known})", pointer=pointer_join("", name))
        if not (value is None or isinstance(value, str)) or (isinstance(value, str) and len(value) > MAX_REASON):
            return error(400, f"{name} must be a string of at most {MAX_REASON} characters",
                         pointer=pointer_join("", name))
    return fields


async def _asked(request: web.Request, allowed: tuple[str, ...]) -> tuple[str, dict[str, Any]] | web.Response:
    """The path's run id and the body's fields, or the refusal. A bad run id is echoed only in part: ids name
    directories, so only plain names pass."""
    run_id = request.match_info["run_id"]
    if not valid_run_id(run_id):
        shown = repr(run_id[:SHOWN_ID]) + ("…" if len(run_id) > SHOWN_ID else "")
        return error(400, f"not a run id: {shown} (letters, digits, `_` and `-`, at most 64)", pointer="/run_id")
    fields = await _fields(request, allowed)
    return fields if isinstance(fields, web.Response) else (run_id, fields)


async def post_cancel(request: web.Request) -> web.Response:
    asked = await _asked(request, ("reason",))
    if isinstance(asked, web.Response):
        return asked
    run_id, fields = asked
    status, body = await request.app[ENGINE].run_controls.cancel(run_id, actor(request), fields.get("reason"))
    return json_response(body, status)


async def post_rerun(request: web.Request) -> web.Response:
    asked = await _asked(request, ())
    if isinstance(asked, web.Response):
        return asked
    run_id, _ = asked
    status, body = await request.app[ENGINE].run_controls.rerun(run_id, actor(request))
    return json_response(body, status)


async def _answer(request: web.Request, approved: bool) -> web.Response:
    asked = await _asked(request, ("reason",))
    if isinstance(asked, web.Response):
        return asked
    run_id, fields = asked
    status, body = await request.app[ENGINE].run_controls.answer(run_id, approved, actor(request),
                                                                 fields.get("reason"))
    return json_response(body, status)


async def post_approve(request: web.Request) -> web.Response:
    return await _answer(request, True)


async def post_deny(request: web.Request) -> web.Response:
    return await _answer(request, False)


async def get_approvals(request: web.Request) -> web.Response:
    return json_response({"approvals": request.app[ENGINE].run_controls.approvals()})


def add_run_controls(app: web.Application) -> None:
    app.router.add_post("/api/runs/{run_id}/cancel", post_cancel)
    app.router.add_post("/api/runs/{run_id}/rerun", post_rerun)
    app.router.add_post("/api/runs/{run_id}/approve", post_approve)
    app.router.add_post("/api/runs/{run_id}/deny", post_deny)
    app.router.add_get("/api/approvals", get_approvals)
