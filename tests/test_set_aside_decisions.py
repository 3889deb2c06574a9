"""Every decision that does not run is a stored scheduler.decision, the matcher's reasons too; a flood of
repeats stores one per (playbook, key, reason) a minute; re-decisions of a problem's fix are never held back."""
from __future__ import annotations

import asyncio
from typing import Any

from test_dispatch import Emitter
from test_problem_book import AGENT_DOWN

from engine.admission.announce import AsideLimiter
from engine.admission.dispatch import Dispatcher
from engine.admission.guards import Budget, CircuitBreaker, LoopGuard
from engine.admission.scheduler import Job, Scheduler
from engine.bus import Bus
from engine.deciding import Decider
from engine.events import format_ts
from engine.playbooks.compiler import Index
from engine.playbooks.matcher import Matcher
from engine.playbooks.model import playbook_from
from engine.problems.book import Book
from engine.problems.kinds import KindSet

RESTART = playbook_from({"id": "restart", "on": "agent.down", "throttle": {"within": "2m", "key": ["agent"]},
                         "steps": [{"id": "r", "action": "restart_agent", "with": {"agent": "{agent}"}}]})
SPIKE = playbook_from({"id": "spike", "on": "resource.cpu_spike", "sustained": {"count": 3, "within": "2m"},
                       "steps": [{"id": "r", "action": "restart_agent", "with": {"agent": "{agent}"}}]})
NOTIFY = playbook_from({"id": "notify", "on": ["agent.down", "resource.disk_full"], "exclusive": False,
                        "steps": [{"id": "n", "action": "emit", "with": {"type": "ops.page"}}]})


def engine(now: list[float], book: Book | None = None):
    clock = lambda: now[0]  # noqa: E731
    emitter = Emitter()

    async def start(job: Job) -> None:
        await asyncio.Event().wait()

    dispatcher = Dispatcher(emitter=emitter, breaker=CircuitBreaker(clock), declared=lambda: {"coder"},
                            budget=Budget(clock, max_runs=100), loop=LoopGuard(clock), limiter=AsideLimiter(clock),
                            opens_problem=book.opened_by if book else lambda e: False)
    dispatcher.attach(Scheduler(start=start, emit=dispatcher.emit_decision, clock=clock, new_id=lambda: "r1"))
    matcher = Matcher(Index([RESTART, SPIKE, NOTIFY]), clock)
    bus = Bus()

    async def dispatch(decision: Any, event: dict, why: str | None) -> str:
        return await dispatcher.dispatch(decision.playbook, event, decision.priority, decision.coalesce_key,
                                         redecision=why)

    decider = Decider(bus.subscribe("d", "*", policy="lossless"), matcher, dispatch, (book.fold,) if book else (),
                      announce=dispatcher.announce_set_aside,
                      opens_problem=lambda e: e["type"] in ("agent.down", "resource.disk_full"))
    return decider, bus, emitter, dispatcher


def set_asides(emitter: Emitter) -> list[dict]:
    return [d for t, d in emitter.events if t == "scheduler.decision" and d["outcome"] == "set_aside"]


async def settle(decider: Decider) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
    while decider.in_flight:
        await asyncio.sleep(0)


def test_a_flood_inside_a_throttle_stores_one_set_aside_a_minute_with_the_repeats_counted():
    async def scenario():
        now = [1000.0]
        decider, bus, emitter, dispatcher = engine(now)
        task = asyncio.create_task(decider.run())
        for n in range(500):
            await bus.publish({"id": f"d{n}", "type": "agent.down", "agent": "coder", "data": {}})
        await settle(decider)
        first = [d for d in set_asides(emitter) if d["playbook"] == "restart"]
        now[0] += 61
        await bus.publish({"id": "late", "type": "agent.down", "agent": "coder", "data": {}})
        await settle(decider)
        task.cancel()
        return first, [d for d in set_asides(emitter) if d["playbook"] == "restart"], dispatcher.limiter.held

    first, after, held = asyncio.run(scenario())
    assert len(first) == 1 and first[0]["reason"] == "throttled" and first[0]["retry_at"]
    assert len(after) == 2 and after[1]["cause"] == "late" and after[1]["repeats"] == 498
    assert held >= 498


def test_sustained_short_of_its_count_is_stored_with_its_count_and_a_re_decision_does_not_count_again():
    async def scenario():
        now = [1000.0]
        decider, bus, emitter, _ = engine(now)
        task = asyncio.create_task(decider.run())
        spike = {"id": "s1", "type": "resource.cpu_spike", "agent": "coder", "data": {}}
        await bus.publish(spike)
        await settle(decider)
        for _ in range(3):  # decided again three times: still one real spike
            decider.redecide(spike, "resync")
        await settle(decider)
        task.cancel()
        return set_asides(emitter)

    seen = asyncio.run(scenario())
    assert [d["reason"] for d in seen] == ["sustained 1/3"] * 4
    assert [d.get("redecision") for d in seen] == [None, "resync", "resync", "resync"]  # never held back


def test_an_event_that_opens_a_problem_no_fix_matches_is_stored_as_no_playbook():
    async def scenario():
        decider, bus, emitter, _ = engine([1000.0])
        task = asyncio.create_task(decider.run())
        await bus.publish({"id": "f1", "type": "resource.disk_full", "data": {}})  # only the notification matches
        await bus.publish({"id": "o1", "type": "ops.other", "data": {}})  # opens no problem: nothing to say
        await settle(decider)
        task.cancel()
        return set_asides(emitter)

    [only] = asyncio.run(scenario())
    assert only["reason"] == "no_playbook" and only["cause"] == "f1" and only["playbook"] is None


def test_a_second_kill_inside_the_throttle_opens_a_problem_that_hears_its_answer_and_is_decided_when_it_lapses():
    """The rate limit is keyed (playbook, key, reason); a new problem for the same agent within the minute
    must still get its `throttled` answer stored, or it would wait for news that never comes."""
    async def scenario():
        now = [1000.0]
        book = Book(KindSet([AGENT_DOWN]), emit=lambda *a: None, new_id=iter(f"{n}" for n in range(99)).__next__,
                    clock=lambda: now[0])
        decider, bus, emitter, dispatcher = engine(now, book)
        task = asyncio.create_task(decider.run())
        folded = [0]

        async def post(event: dict) -> None:
            await bus.publish({"agent": "coder", "data": {}, "ts": format_ts(now[0]), **event})
            await settle(decider)
            for type_, data in emitter.events[folded[0]:]:  # what the engine stores comes back to the book
                book.fold({"id": f"x{folded[0]}", "type": type_, "ts": format_ts(now[0]), "data": data})
                folded[0] += 1

        await post({"id": "d1", "type": "agent.down"})  # runs
        await post({"id": "d2", "type": "agent.down"})  # joins: throttled, stored
        await post({"id": "s", "type": "agent.started"})
        await post({"id": "h", "type": "agent.heartbeat"})  # healed
        now[0] += 3
        await post({"id": "d3", "type": "agent.down"})  # killed again: a new problem, inside the throttle
        second = next(p for p in book.problems() if p.status == "open")
        for n in range(20):
            await post({"id": f"flood{n}", "type": "agent.down"})
        plan = second.next_at, second.why
        now[0] = 1120.0
        due = book.due()
        task.cancel()
        return second, plan, due, set_asides(emitter), dispatcher.limiter.held

    second, plan, due, stored, held = asyncio.run(scenario())
    mine = [d for d in stored if d["cause"] == "d3" and d["playbook"] == "restart"]
    assert len(mine) == 1 and mine[0]["reason"] == "throttled"
    assert second.timeline[0]["what"] == "opened"
    assert [e["reason"] for e in second.timeline if e.get("playbook") == "restart"] == ["throttled"]  # shown
    assert plan == (1120.0, "throttled lapsed")  # the window's end, from the answer it heard
    assert [(r.problem, r.why) for r in due] == [(second.id, "throttled lapsed")]
    assert held >= 20  # the flood joined the open problem and was held back as before
