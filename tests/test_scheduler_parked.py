"""Parked runs (waiting for a person) hold no slot, take one back at their priority, and a queued run can
be cancelled; with an injected clock and runs the test releases."""
from __future__ import annotations

import asyncio
import itertools
from typing import Any

from engine.admission.scheduler import Job, Scheduler
from engine.playbooks.model import Playbook


class Harness:
    def __init__(self, max_concurrent: int) -> None:
        self.order: list[str] = []  # what got a slot, in order ("name" at start, "name+" when it took one back)
        self.decisions: list[dict[str, Any]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.answers: dict[str, asyncio.Event] = {}
        self.asking: dict[str, asyncio.Future[None]] = {}
        self.peak = 0  # the most runs that ever held a slot at once
        ids = itertools.count()
        self.scheduler = Scheduler(start=self._start, emit=self._emit, clock=lambda: 0.0,
                                   new_id=lambda: f"r{next(ids):04d}", max_concurrent=max_concurrent)

    async def _start(self, job: Job) -> None:
        name = job.event["id"]
        self.order.append(name)
        self.peak = max(self.peak, self.scheduler.running)
        if name.startswith("ask"):  # as the reactor does, the waiting runs in a task a cancel can stop
            self.asking[name] = asyncio.ensure_future(self._ask(job, name))
            try:
                await self.asking[name]
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():  # the engine stops
                    raise
                self.order.append(name + "x")  # a person cancelled it: it rolls back, holding a slot
                self.peak = max(self.peak, self.scheduler.running)
        await self.gates.setdefault(name, asyncio.Event()).wait()

    async def _ask(self, job: Job, name: str) -> None:
        async with self.scheduler.parked(job.run_id):
            await self.answers.setdefault(name, asyncio.Event()).wait()
        self.order.append(name + "+")
        self.peak = max(self.peak, self.scheduler.running)

    async def _emit(self, type_: str, data: dict[str, Any], job: Job) -> None:
        self.decisions.append(data)

    async def offer(self, name: str, priority: str) -> Job:
        job = Job(Playbook(id="pb", on=("a.b",)), {"id": name, "type": "a.b"}, priority, ("pb", name))
        await self.scheduler.offer(job)
        await settle()
        return job


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_parked_runs_free_their_slot_and_take_one_back_at_their_priority():
    async def scenario() -> Harness:
        h = Harness(max_concurrent=1)
        await h.offer("ask-0", "P1")
        await h.offer("ask-1", "P3")
        assert h.order == ["ask-0", "ask-1"] and h.scheduler.running == 0  # both wait, neither holds the slot
        await h.offer("busy", "P2")
        assert h.scheduler.running == 1
        await h.offer("later", "P3")
        for name in ("ask-1", "ask-0"):  # answered while the slot is taken: both queue for it
            h.answers.setdefault(name, asyncio.Event()).set()
        await settle()
        assert h.scheduler.running == 1 and "ask-0+" not in h.order
        for name in ("busy", "ask-0", "ask-1", "later"):
            h.gates.setdefault(name, asyncio.Event()).set()
        await h.scheduler.wait_idle()
        return h

    h = asyncio.run(scenario())
    # ask-0 takes a slot back first (P1), then P3 in queue order: `later` queued before ask-1 was answered
    assert h.order == ["ask-0", "ask-1", "busy", "ask-0+", "later", "ask-1+"]


def test_a_queued_run_is_cancelled_and_drain_does_not_wait_for_parked_runs():
    async def scenario() -> tuple[Harness, list[str]]:
        h = Harness(max_concurrent=1)
        await h.offer("ask-0", "P2")
        await h.offer("busy", "P2")
        queued = await h.offer("queued", "P2")
        assert await h.scheduler.cancel(queued.run_id, "ann", "cancelled by ann") is queued
        assert await h.scheduler.cancel(queued.run_id, "ann", "again") is None
        assert h.scheduler.depth == 0
        h.gates["busy"].set()
        await settle()
        cancelled = await asyncio.wait_for(h.scheduler.drain(grace_s=60), 5)  # the parked run is not waited for
        return h, cancelled

    h, cancelled = asyncio.run(scenario())
    dropped = [d for d in h.decisions if d["outcome"] == "dropped"]
    assert [(d["run_id"], d["by"], d["cancelled"]) for d in dropped] == [("r0002", "ann", True)]
    assert "queued" not in h.order and cancelled == []


def test_a_cancelled_parked_run_waits_for_a_free_slot_to_roll_back_in():
    async def scenario() -> Harness:
        h = Harness(max_concurrent=1)
        await h.offer("ask-0", "P2")
        await h.offer("busy", "P2")
        await h.offer("later", "P2")  # queued before the cancel
        assert h.scheduler.running == 1
        h.asking["ask-0"].cancel()  # a person cancels the waiting run while the only slot is taken
        await settle()
        assert h.scheduler.running == 1 and "ask-0x" not in h.order
        h.gates["busy"].set()
        await settle()
        assert h.scheduler.running == 1 and h.order[-1] == "ask-0x"  # head of its class: it has started
        h.gates["ask-0"].set()
        h.gates.setdefault("later", asyncio.Event()).set()
        await asyncio.wait_for(h.scheduler.wait_idle(), 5)
        return h

    h = asyncio.run(scenario())
    assert h.order == ["ask-0", "busy", "ask-0x", "later"] and h.peak == 1
