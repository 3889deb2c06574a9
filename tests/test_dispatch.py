"""The dispatcher: all guards checked before any is committed, committed only for runs the scheduler took."""
from __future__ import annotations

import asyncio
import itertools
from typing import Any

from engine.admission.dispatch import Dispatcher
from engine.admission.guards import Budget, CircuitBreaker, LoopGuard
from engine.admission.scheduler import Job, Scheduler
from engine.playbooks.model import playbook_from


class Emitter:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def emit(self, type_: str, data: dict[str, Any], cause: Any = None, severity: str = "info",
                   source: str | None = None) -> dict[str, Any]:
        self.events.append((type_, data))
        return {"id": f"e{len(self.events)}", "type": type_, "data": data}


def harness(max_runs: int = 5) -> tuple[Dispatcher, Emitter, list[Job], asyncio.Event]:
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    emitter = Emitter()
    started: list[Job] = []
    gate = asyncio.Event()

    async def start(job: Job) -> None:
        started.append(job)
        await gate.wait()

    dispatcher = Dispatcher(emitter=emitter, breaker=CircuitBreaker(clock, failures=1), declared=lambda: {"coder"},
                            budget=Budget(clock, max_runs=max_runs), loop=LoopGuard(clock))
    ids = itertools.count()
    scheduler = Scheduler(start=start, emit=dispatcher.emit_decision, clock=clock, new_id=lambda: f"r{next(ids)}",
                          max_concurrent=1)
    dispatcher.attach(scheduler)
    return dispatcher, emitter, started, gate


RESTART = playbook_from({"id": "restart", "on": "agent.down",
                         "steps": [{"id": "r", "action": "restart_agent", "with": {"agent": "{agent}"}}]})
NOTIFY = playbook_from({"id": "notify", "on": "agent.down", "exclusive": False,
                        "steps": [{"id": "n", "action": "emit", "with": {"type": "ops.page"}}]})


def decisions(emitter: Emitter) -> list[tuple[str, str | None]]:
    return [(d["outcome"], d.get("reason")) for t, d in emitter.events if t == "scheduler.decision"]


def test_a_run_for_an_undeclared_agent_is_set_aside_before_it_runs_and_spends_nothing():
    async def scenario():
        dispatcher, emitter, started, gate = harness()
        event = {"id": "x1", "type": "agent.down", "agent": "ghost"}
        outcome = await dispatcher.dispatch(RESTART, event, "P2", ("restart", '["ghost"]'))
        await asyncio.sleep(0)
        return outcome, decisions(emitter), started, len(dispatcher.budget.map)

    outcome, seen, started, budget_keys = asyncio.run(scenario())
    assert outcome == "set_aside" and seen == [("set_aside", "unknown_agent")]
    assert not started and budget_keys == 0


def test_notifications_do_not_spend_the_remediation_budget_of_their_agent():
    async def scenario():
        dispatcher, emitter, started, gate = harness(max_runs=1)
        gate.set()
        for n in range(3):
            await dispatcher.dispatch(NOTIFY, {"id": f"n{n}", "type": "agent.down", "agent": "coder"}, "P3",
                                      ("notify", f"[{n}]"))
            await asyncio.sleep(0)
        fix = await dispatcher.dispatch(RESTART, {"id": "f1", "type": "agent.down", "agent": "coder"}, "P2",
                                        ("restart", '["coder"]'))
        return fix

    assert asyncio.run(scenario()) == "queued"


def test_a_coalesced_decision_spends_no_budget():
    async def scenario():
        dispatcher, emitter, started, gate = harness(max_runs=5)
        key = ("restart", '["coder"]')
        outcomes = [await dispatcher.dispatch(RESTART, {"id": f"d{n}", "type": "agent.down", "agent": "coder"},
                                              "P2", key) for n in range(4)]
        return outcomes, len(dispatcher.budget.map.peek("coder") or [])

    outcomes, spent = asyncio.run(scenario())
    assert outcomes == ["queued", "waiting", "coalesced", "coalesced"]
    assert spent == 2  # the run going and the one waiting behind it; the coalesced ones never run


def test_only_the_admitted_run_takes_the_half_open_probe():
    async def scenario():
        dispatcher, emitter, started, gate = harness(max_runs=2)
        key = ("restart", '["coder"]')
        dispatcher.breaker.record(key, False)  # failures=1: open
        dispatcher.breaker._clock = lambda: 1000.0 + 901  # cooldown over: half-open
        dispatcher.budget._clock = dispatcher.breaker._clock
        outcomes = []
        for n in range(3):  # one goes (the probe), then the breaker is probing: set aside
            outcomes.append(await dispatcher.dispatch(RESTART, {"id": f"d{n}", "type": "agent.down", "agent": "coder"},
                                                      "P2", key))
        return outcomes, decisions(emitter), list(dispatcher.budget.map.peek("coder") or []), dispatcher.limiter.held

    outcomes, seen, spent, held = asyncio.run(scenario())
    assert outcomes == ["queued", "set_aside", "set_aside"]
    # the same reason for the same key within a minute is stored once: the repeat is counted, not stored
    assert seen[1:] == [("set_aside", "circuit open")] and held == 1
    assert len(spent) == 1  # only the run that went spent the budget
