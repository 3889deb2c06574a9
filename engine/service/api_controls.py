"""The operators' controls over HTTP (docs/controls.md): silences, pause, runtime disable, resets, manual actions.

Handlers only translate: a JSON body in, a call on `engine.controls` / `engine.manual`, the answer out.
Refusals are JSON: 400 with a pointer into the body, 404 for an unknown agent, playbook, event or silence,
409 for what cannot be done now (not paused, nothing to reset, too many silences), 503 with Retry-After
when the store cannot record the control (nothing changes: a control is stored before it takes effect).
Every change names its actor (`engine/service/actor.py`).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from engine.controls.gate import ControlConflict, ControlUnavailable
from engine.controls.model import ControlError, NotFound, checked
from engine.events import EventError
from engine.service.actor import actor
from engine.service.api import ENGINE, error, json_response, read_json, unavailable
from engine.store.writer import StoreWriteError

Change = Callable[[web.Request, Any, str], Awaitable[Any]]


def _handler(change: Change, status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A POST/DELETE handler around `change(request, body, by)`, with every refusal mapped to its status."""
    async def handle(request: web.Request) -> web.Response:
        body = await read_json(request, empty={})
        if isinstance(body, web.Response):
            return body
        try:
            return json_response(await change(request, body, actor(request)), status)
        except NotFound as exc:
            return error(404, str(exc), pointer=exc.pointer)
        except ControlConflict as exc:
            return error(409, str(exc))
        except ControlUnavailable as exc:
            return unavailable(str(exc), 10)
        except ControlError as exc:
            return error(400, str(exc), pointer=exc.pointer)
        except EventError as exc:  # a manual trigger's fields
            return error(400, exc.message, pointer=f"/fields{exc.pointer}")
        except StoreWriteError as exc:
            return unavailable(f"the control could not be recorded: {exc.strerror or exc}", 10)
    return handle


def _reason(body: Any) -> str:
    return checked("reason", body).get("reason", "")


async def get_controls(request: web.Request) -> web.Response:
    return json_response(request.app[ENGINE].controls.view())


async def get_silences(request: web.Request) -> web.Response:
    return json_response({"silences": request.app[ENGINE].controls.view()["silences"]})


async def _silence(request: web.Request, body: Any, by: str) -> Any:
    controls = request.app[ENGINE].controls
    return {"silence": (await controls.add_silence(body, by)).view(controls.clock())}


async def _expire(request: web.Request, body: Any, by: str) -> Any:
    controls = request.app[ENGINE].controls
    silence = await controls.expire_silence(request.match_info["silence_id"], by, _reason(body))
    return {"expired": silence.id}


async def _pause(request: web.Request, body: Any, by: str) -> Any:
    return {"paused": (await request.app[ENGINE].controls.pause(body, by)).view()}


async def _resume(request: web.Request, body: Any, by: str) -> Any:
    return {"resumed": (await request.app[ENGINE].controls.resume(by, _reason(body))).view()}


async def _disable(request: web.Request, body: Any, by: str) -> Any:
    engine, playbook_id = request.app[ENGINE], request.match_info["playbook_id"]
    if engine.manual.playbooks(playbook_id) is None:
        raise NotFound(f"no loaded playbook {playbook_id!r}")
    return {"playbook": playbook_id, "disabled": (await engine.controls.disable(playbook_id, body, by)).view()}


async def _enable(request: web.Request, body: Any, by: str) -> Any:
    playbook_id = request.match_info["playbook_id"]
    await request.app[ENGINE].controls.enable(playbook_id, by, _reason(body))
    return {"playbook": playbook_id, "enabled": True}


def _manual(action: str, param: str) -> Change:
    """A manual action of `engine.manual` on the route's `param` (an agent or a playbook id)."""
    async def change(request: web.Request, body: Any, by: str) -> Any:
        return await getattr(request.app[ENGINE].manual, action)(request.match_info[param], body, by)
    return change


def add_control_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/api/controls", get_controls)
    router.add_get("/api/silences", get_silences)
    router.add_post("/api/silences", _handler(_silence, 201))
    router.add_delete("/api/silences/{silence_id}", _handler(_expire))
    router.add_post("/api/pause", _handler(_pause))
    router.add_post("/api/resume", _handler(_resume))
    router.add_post("/api/playbooks/{playbook_id}/disable", _handler(_disable))
    router.add_post("/api/playbooks/{playbook_id}/enable", _handler(_enable))
    router.add_post("/api/playbooks/{playbook_id}/trigger", _handler(_manual("trigger", "playbook_id"), 202))
    router.add_post("/api/agents/{agent}/restart", _handler(_manual("restart_agent", "agent"), 202))
    router.add_post("/api/agents/{agent}/stop", _handler(_manual("stop_agent", "agent")))
    router.add_post("/api/agents/{agent}/start", _handler(_manual("start_agent", "agent"), 202))
    router.add_post("/api/budget/{agent}/reset", _handler(_manual("reset_budget", "agent")))
    router.add_post("/api/breakers/{playbook_id}/reset", _handler(_manual("reset_breaker", "playbook_id")))
