"""From a decision to a run: guards (loop, circuit breaker, budget) → scheduler → reactor → outcome.

The matcher says which playbooks an event triggers; this decides whether each may run now. A decision
set aside by a guard is announced (`scheduler.decision` with `outcome: set_aside` and the reason, plus
the guard's own event the first time: `reactor.circuit_open`, `escalation.budget_exhausted`,
`reactor.loop_detected`); one that passes goes to the scheduler, which starts it on the reactor.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from engine.emitter import EngineEmitter
from engine.playbooks.model import Playbook
from engine.playbooks.templates import TemplateError, render, resolve
from engine.admission.guards import Budget, CircuitBreaker, LoopGuard, SetAside
from engine.admission.scheduler import Job, Scheduler

AGENT_ACTIONS = ("restart_agent", "signal")


def touched_agents(playbook: Playbook, event: dict[str, Any]) -> set[str]:
    """The agents a run acts on: the event's agent, and agents its steps restart or signal."""
    agents = {event["agent"]} if isinstance(event.get("agent"), str) else set()
    for step in playbook.steps:
        target = step.with_.get("agent")
        if step.action in AGENT_ACTIONS and isinstance(target, str):
            try:
                agents.add(str(render(target, lambda path: resolve(event, path))))
            except (KeyError, TemplateError):
                continue
    return agents


class Dispatcher:
    def __init__(self, *, emitter: EngineEmitter, clock: Callable[[], float], breaker: CircuitBreaker,
                 budget: Budget, loop: LoopGuard) -> None:
        self.emitter = emitter
        self.clock = clock
        self.breaker = breaker
        self.budget = budget
        self.loop = loop
        self.scheduler: Scheduler | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def attach(self, scheduler: Scheduler) -> None:
        """The scheduler is built after the dispatcher (it emits through it), so it is attached here."""
        self.scheduler = scheduler

    async def dispatch(self, playbook: Playbook, event: dict[str, Any], priority: str,
                       key: tuple[Any, ...]) -> str:
        """Queue a run of `playbook` for `event` unless a guard sets it aside; returns the outcome."""
        assert self.scheduler is not None
        job = Job(playbook, event, priority, key)
        aside = (self.loop.admit(playbook.id, event) or self.breaker.admit(playbook.id)
                 or self.budget.admit(touched_agents(playbook, event)))
        if aside is not None:
            await self._set_aside(job, aside)
            return "set_aside"
        return await self.scheduler.offer(job)

    async def _set_aside(self, job: Job, aside: SetAside) -> None:
        if aside.event_type:
            await self.emitter.emit(aside.event_type, aside.data, job.event, "warning")
        await self.emitter.emit("scheduler.decision", {
            "playbook": job.playbook.id, "priority": job.priority, "cause": job.event.get("id"),
            "outcome": "set_aside", "reason": aside.reason}, job.event, source="engine.scheduler")

    # -- hooks for the scheduler and the reactor ---------------------------------------------------
    async def emit_decision(self, type_: str, data: dict[str, Any], job: Job) -> None:
        await self.emitter.emit(type_, data, job.event, source="engine.scheduler")

    async def emit_run_event(self, type_: str, data: dict[str, Any], cause: dict[str, Any],
                             severity: str) -> dict[str, Any]:
        """Events a run emits: remembered by the loop guard as that playbook's own results."""
        stored = await self.emitter.emit(type_, data, cause, severity)
        if isinstance(data.get("playbook"), str):
            self.loop.emitted(stored["id"], data["playbook"])
        return stored

    def on_outcome(self, job: Job, status: str) -> None:
        opened = self.breaker.record(job.playbook.id, status == "succeeded")
        if opened is not None and opened.event_type:
            task = asyncio.get_running_loop().create_task(
                self.emitter.emit(opened.event_type, opened.data, job.event, "warning"))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
