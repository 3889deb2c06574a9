"""Manual actions: what an operator does by hand goes through the same guards as a playbook, and is audited.

`agent restart NAME` (and `agent start NAME` after `agent stop NAME`) is a run of the built-in playbook
`manual-restart-agent` (restart, then wait for a heartbeat), caused by a stored `control.agent_restart`
(`control.agent_start`) event naming who asked and why: the loop guard, the
circuit breaker and the agent's remediation budget apply, the run has a record, a snapshot and a place
in the problem's timeline. `trigger PLAYBOOK` runs a loaded playbook now for a stored event or for fields
given by hand (stored first, as an outside event), without its `when`, sustained or throttle: the person
asked. Silences, maintenance windows and the pause hold automation, not a person's own request: they are
asked by the matcher, which manual jobs never pass through. Budget and breaker resets are here too: they
undo what the guards counted.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Protocol

import orjson

from engine.admission.dispatch import Dispatcher
from engine.admission.priorities import decision_priority
from engine.admission.scheduler import Job
from engine.controls.gate import ControlConflict, Controls
from engine.controls.model import ControlError, NotFound, checked
from engine.playbooks.matcher import key_text
from engine.playbooks.model import Playbook, playbook_from
from engine.store.reader import find_event

MANUAL_RESTART = playbook_from({
    "id": "manual-restart-agent", "on": "control.agent_restart", "priority": "P1", "confidence": 1.0,
    "description": "An operator's restart of an agent (aios-engine agent restart NAME)",
    "labels": {"manual": "true"},
    "steps": [{"id": "restart", "action": "restart_agent", "with": {"agent": "{agent}"}},
              {"id": "verify", "needs": ["restart"], "action": "wait_for", "timeout": "65s",
               "with": {"type": "agent.heartbeat", "where": {"agent": "{agent}"}, "within": "60s"}}],
}, file="<engine: manual actions>")


class Stopper(Protocol):
    """What stops an agent for good (the supervisor)."""

    async def stop(self, name: str, by: str, reason: str) -> dict[str, Any]: ...

    def release(self, name: str) -> None: ...


class ManualActions:
    def __init__(self, *, dispatcher: Dispatcher, controls: Controls, declared: Callable[[], Collection[str]],
                 playbooks: Callable[[str], Playbook | None], submit: Callable[[dict[str, Any]], Any],
                 events_dir: Path, agents: Stopper) -> None:
        self.dispatcher = dispatcher
        self.agents = agents
        self.controls = controls
        self.declared = declared
        self.playbooks = playbooks
        self.submit = submit  # intake of an outside event (validated as one): the stored event
        self.events_dir = events_dir

    def _declared(self, name: str) -> None:
        if name not in self.declared():
            raise NotFound(f"no declared agent {name!r} (agents in aios.yaml)")

    async def _restart(self, name: str, cause: dict[str, Any], by: str) -> dict[str, Any]:
        """A run of `manual-restart-agent` for `name`, caused by `cause`, through the guards: its decision."""
        key = (MANUAL_RESTART.id, orjson.dumps([name]).decode())
        return await self._dispatch(Job(MANUAL_RESTART, cause, MANUAL_RESTART.priority or "P1", key,
                                        extra={"by": by}))

    async def restart_agent(self, name: str, body: Any, by: str) -> dict[str, Any]:
        """Queue a manual restart of `name`; the decision (queued, or set aside with the guard's reason)."""
        reason = checked("reason", body).get("reason", "restart by hand")
        self._declared(name)
        stopped = self.controls.state.stopped.get(name)
        if stopped is not None:
            raise ControlConflict(f"{name} was stopped by {stopped.by} ({stopped.reason}): "
                                  f"use agent start {name}")
        cause = await self.controls.audit("control.agent_restart", {"by": by, "reason": reason, "agent": name}, name)
        return await self._restart(name, cause, by)

    async def stop_agent(self, name: str, body: Any, by: str) -> dict[str, Any]:
        """Stop `name` and keep it stopped (across engine restarts) until `start_agent`: no playbook restarts it
        meanwhile (its decisions are set aside with `stopped:<name>`)."""
        reason = checked("reset", body)["reason"]
        self._declared(name)
        if name in self.controls.state.stopped:
            raise ControlConflict(f"{name} is already stopped")
        hold = await self.controls.stop_agent(name, reason, by)
        return {**await self.agents.stop(name, by, reason), "stopped": hold.view()}

    async def start_agent(self, name: str, body: Any, by: str) -> dict[str, Any]:
        """Start a stopped agent: the hold ends, then a run of `manual-restart-agent` starts it and waits for its
        heartbeat, through the guards like `restart_agent`."""
        reason = checked("reason", body).get("reason", "start by hand")
        self._declared(name)
        cause = await self.controls.start_agent(name, reason, by)
        self.agents.release(name)
        return await self._restart(name, cause, by)

    async def trigger(self, playbook_id: str, body: Any, by: str) -> dict[str, Any]:
        """Run `playbook_id` now for a stored event (`event`) or for new `fields`; its decision."""
        body = checked("trigger", body)
        playbook = self.playbooks(playbook_id)
        if playbook is None:
            raise NotFound(f"no loaded playbook {playbook_id!r}")
        if ("event" in body) == ("fields" in body):
            raise ControlError("give event (a stored event's id) or fields (a new event), one of them", "")
        if "event" in body:
            cause = await self._stored(body["event"])
        else:
            cause = await self.submit(body["fields"])
        await self.controls.audit("control.triggered", {"by": by, "reason": body["reason"], "playbook": playbook_id,
                                                        "cause": cause["id"]}, cause.get("agent"))
        job = Job(playbook, cause, decision_priority(playbook.priority, cause),
                  (playbook.id, key_text(playbook, cause)), extra={"by": by})
        return await self._dispatch(job)

    async def _stored(self, event_id: str) -> dict[str, Any]:
        event = await asyncio.to_thread(find_event, self.events_dir, event_id)
        if event is None:
            raise NotFound(f"no stored event {event_id}", "/event")
        return event

    async def _dispatch(self, job: Job) -> dict[str, Any]:
        outcome = await self.dispatcher.dispatch_job(job)
        answer = {"outcome": outcome, "playbook": job.playbook.id, "cause": job.event.get("id")}
        if outcome == "set_aside":
            answer.update(job.extra.get("set_aside") or {})
        else:  # queued or waiting: it will run; coalesced, queue_full: the scheduler said why
            answer["run_id"] = job.run_id
        return answer

    # -- resets --------------------------------------------------------------------------------------
    async def reset_budget(self, agent: str, body: Any, by: str) -> dict[str, Any]:
        """Forget the runs counted against `agent`'s remediation budget."""
        reason = checked("reset", body)["reason"]
        budget = self.dispatcher.budget
        runs = budget.map.peek(agent)
        if runs is None:
            raise ControlConflict(f"no runs are counted against {agent}'s budget")
        await self.controls.audit("control.budget_reset", {"by": by, "reason": reason, "agent": agent,
                                                           "runs": len(runs), "lifts": [f"budget:{agent}"]}, agent)
        budget.map.pop(agent)
        return {"agent": agent, "forgotten_runs": len(runs)}

    async def reset_breaker(self, playbook_id: str, body: Any, by: str) -> dict[str, Any]:
        """Close the circuit breakers of `playbook_id` (one key value, or all)."""
        body = checked("breaker_reset", body)
        breaker = self.dispatcher.breaker
        keys = [k for k in breaker.map if isinstance(k, tuple) and k and k[0] == playbook_id
                and ("key" not in body or k[1] == body["key"])]
        if not keys:
            raise ControlConflict(f"no breaker of {playbook_id} holds anything"
                                  + (f" for key {body['key']}" if "key" in body else ""))
        states = {str(k[1]): breaker.state(k) for k in keys}
        await self.controls.audit("control.breaker_reset", {"by": by, "reason": body["reason"],
                                                            "playbook": playbook_id, "keys": states,
                                                            "lifts": [f"circuit open:{playbook_id}"]}, None)
        for key in keys:
            breaker.map.pop(key)
        return {"playbook": playbook_id, "reset": states}
