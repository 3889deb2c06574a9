"""From a decision to a run: guards (loop, circuit breaker, unknown agent, budget) → scheduler → reactor.

The matcher says which playbooks an event triggers; this decides whether each may run now. Every guard
is checked before any is committed, and they are committed only once the scheduler has taken the run,
so a refusal by one never spends another's allowance. A decision set aside is announced
(`scheduler.decision` with `outcome: set_aside`, the reason code and a detail, plus the guard's own event
the first time: `reactor.circuit_open`, `escalation.budget_exhausted`, `reactor.loop_detected`) and
logged; one that passes goes to the scheduler, which starts it on the reactor.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Hashable, Iterable, Sequence
from typing import Any

from engine.admission.announce import AsideLimiter, set_aside_data
from engine.admission.guards import Budget, CircuitBreaker, LoopGuard, SetAside
from engine.admission.priorities import decision_priority
from engine.admission.scheduler import ACCEPTED, Job, Scheduler
from engine.emitter import EngineEmitter
from engine.playbooks import matcher
from engine.playbooks.model import Playbook, Step
from engine.playbooks.templates import TemplateError, render, resolve

log = logging.getLogger("aios.decisions")
AGENT_ACTIONS = ("restart_agent", "signal")
FAILED = ("failed", "timeout", "rolled_back")  # outcomes the breaker counts; `cancelled` (shutdown) is none


def _rendered_targets(steps: Iterable[Step], event: dict[str, Any]) -> set[str]:
    agents = set()
    for step in steps:
        target = step.with_.get("agent")
        if step.action in AGENT_ACTIONS and isinstance(target, str):
            try:
                agents.add(str(render(target, lambda path: resolve(event, path))))
            except (KeyError, TemplateError):
                continue  # depends on an earlier step's output: the action checks it when it runs
    return agents


def _matcher_detail(aside: matcher.SetAside) -> str:
    """A sentence for people, beside the matcher's reason code."""
    if aside.kind == "throttled":
        return "the playbook ran for this key within its throttle window"
    if aside.kind == "sustained":
        return f"{aside.reason.split(' ', 1)[1]} matches of its sustained count so far"
    if aside.detail:
        return aside.detail
    if aside.kind == "disabled":
        return aside.reason if aside.reason != "disabled" else "the playbook is disabled (enabled: false)"
    return aside.reason


def target_agents(playbook: Playbook, event: dict[str, Any]) -> set[str]:
    """The agents a run would restart or signal (its steps and its rollback steps)."""
    return _rendered_targets((*playbook.steps, *playbook.rollback), event)


def touched_agents(event: dict[str, Any], targets: set[str]) -> set[str]:
    """The agents a run acts on, for the budget: the event's agent and the agents its steps target."""
    return (targets | {event["agent"]}) if isinstance(event.get("agent"), str) else set(targets)


def check_guards(playbook: Playbook, event: dict[str, Any], key: Hashable, declared: Collection[str],
                 loop: LoopGuard, breaker: CircuitBreaker, budget: Budget) -> tuple[SetAside | None, set[str]]:
    """Why a run of `playbook` for `event` would be set aside now (None: it may go), spending nothing; and
    the agents it would spend budget on, for `commit_guards`. One function for the engine and `replay`, so a
    backtest applies the guards in the same order as the live engine."""
    targets = target_agents(playbook, event)
    touched = touched_agents(event, targets) if playbook.exclusive else set()  # targets rendered once
    unknown = sorted(targets - set(declared))
    if unknown:
        return SetAside("unknown_agent", f"not a declared agent: {', '.join(unknown)} (agents in aios.yaml)"), touched
    return loop.check(playbook.id, event) or breaker.check(key) or budget.check(touched), touched


def commit_guards(playbook: Playbook, event: dict[str, Any], key: Hashable, touched: set[str],
                  loop: LoopGuard, breaker: CircuitBreaker, budget: Budget) -> None:
    """Spend what a run that is certain to go spends: its loop-guard hit, a half-open breaker's probe, budget."""
    loop.commit(playbook.id, event)
    breaker.commit(key)
    budget.commit(touched)


class Dispatcher:
    def __init__(self, *, emitter: EngineEmitter, breaker: CircuitBreaker, budget: Budget, loop: LoopGuard,
                 declared: Callable[[], Collection[str]], scheduler: Scheduler | None = None,
                 limiter: AsideLimiter | None = None,
                 opens_problem: Callable[[dict[str, Any]], bool] = lambda event: False) -> None:
        self.emitter = emitter
        self.limiter = limiter or AsideLimiter(time.time)
        self.opens_problem = opens_problem  # the event opened a problem: its answers are never held back
        self.breaker = breaker
        self.budget = budget
        self.loop = loop
        self.declared = declared
        self.scheduler = scheduler

    def attach(self, scheduler: Scheduler) -> None:
        """The scheduler is built after the dispatcher (it emits through it), so it is attached here."""
        self.scheduler = scheduler

    async def dispatch(self, playbook: Playbook, event: dict[str, Any], priority: str,
                       key: tuple[Any, ...], redecision: str | None = None) -> str:
        """Queue a run of `playbook` for `event` unless a guard sets it aside; returns the outcome.
        `redecision`: why an open problem is decided again (it goes into the decision event)."""
        job = Job(playbook, event, priority, key, extra={"redecision": redecision} if redecision else {})
        return await self.dispatch_job(job)

    async def dispatch_job(self, job: Job) -> str:
        """Guards, then the scheduler, for a job built by the caller (a recovered run keeps its run id)."""
        assert self.scheduler is not None
        playbook, event = job.playbook, job.event
        aside, touched = check_guards(playbook, event, job.key, self.declared(), self.loop, self.breaker, self.budget)
        if aside is not None:
            await self._set_aside(job, aside)
            return "set_aside"
        outcome, reason = self.scheduler.place(job)
        if outcome in ACCEPTED:  # certain to run: only now is anything spent (before any other placement)
            commit_guards(playbook, event, job.key, touched, self.loop, self.breaker, self.budget)
        await self.scheduler.announce(job, outcome, reason)
        return outcome

    async def _set_aside(self, job: Job, aside: SetAside) -> None:
        job.extra["set_aside"] = {"reason": aside.reason, "detail": aside.detail}  # for a caller that answers
        redecision = job.extra.get("redecision")
        if aside.event_type:
            await self.emitter.emit(aside.event_type, aside.data, job.event, "warning")
        repeats = self._admit(job.playbook.id, str(job.key[-1]), aside.reason, job.event, redecision,
                              job.playbook.exclusive)
        if repeats is not None:
            await self._announce_all([set_aside_data(
                playbook=job.playbook.id, priority=job.priority, cause=job.event.get("id"), reason=aside.reason,
                detail=aside.detail, retry_at=aside.retry_at, run_id=job.run_id or None, repeats=repeats,
                redecision=redecision, exclusive=job.playbook.exclusive)], job.event)

    def _admit(self, playbook: str, key: str, reason: str, event: dict[str, Any], redecision: str | None,
               exclusive: bool) -> int | None:
        """The rate limit (None: not stored), which never holds back a problem's own answers: about a fix
        (exclusive) for the event that opened it, or for its re-decision."""
        if exclusive and (redecision or self.opens_problem(event)):
            return 0
        return self.limiter.admit(playbook, key, reason)

    def announce_set_aside(self, asides: Sequence[matcher.SetAside], event: dict[str, Any], redecision: str | None,
                           no_playbook: bool) -> Awaitable[None] | None:
        """The stored decisions about the matcher's candidates that do not run (and, for an event that opens
        a problem, that no exclusive playbook can act on it); None when the rate limit holds them all back."""
        batch = []
        for aside in asides:  # a problem needs the answers about its fixes; notifications beside them are limited
            exclusive = aside.playbook.exclusive if aside.playbook else True
            repeats = self._admit(aside.playbook_id, aside.key, aside.kind, event, redecision, exclusive)
            if repeats is not None:
                priority = decision_priority(aside.playbook.priority if aside.playbook else None, event)
                batch.append(set_aside_data(playbook=aside.playbook_id, priority=priority, cause=event.get("id"),
                                            reason=aside.reason if aside.kind == "sustained" else aside.kind,
                                            detail=_matcher_detail(aside),
                                            retry_at=aside.retry_at, repeats=repeats, redecision=redecision,
                                            exclusive=exclusive))
        if no_playbook:
            repeats = self._admit("", str(event.get("type")), "no_playbook", event, redecision, True)
            if repeats is not None:
                batch.append(set_aside_data(
                    playbook=None, priority=decision_priority(None, event), cause=event.get("id"),
                    reason="no_playbook", detail=f"no exclusive playbook acts on this {event.get('type')}",
                    repeats=repeats, redecision=redecision))
        return self._announce_all(batch, event) if batch else None

    async def _announce_all(self, batch: list[dict[str, Any]], event: dict[str, Any]) -> None:
        for data in batch:
            log.info("decision set aside", extra={"playbook": data["playbook"], "cause": data["cause"],
                                                  "agent": event.get("agent"), "outcome": "set_aside",
                                                  "reason": data["reason"], "detail": data["detail"]})
            await self.emitter.emit("scheduler.decision", data, event, source="engine.scheduler")

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

    async def on_outcome(self, job: Job, status: str) -> None:
        """Count a finished run toward its breaker; announce the breaker opening."""
        if status not in FAILED and status != "succeeded":
            return
        opened = self.breaker.record(job.key, status == "succeeded")
        if opened is not None and opened.event_type:
            log.warning("circuit opened", extra={"playbook": job.playbook.id, "key": opened.data["key"],
                                                 "cooldown_s": opened.data["cooldown_s"]})
            await self.emitter.emit(opened.event_type, opened.data, job.event, "warning")
