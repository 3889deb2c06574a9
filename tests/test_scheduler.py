"""Priority order, aging, the concurrency cap, coalescing and overflow, with an injected clock."""
from __future__ import annotations

import asyncio
import itertools
from typing import Any

from engine.playbooks.model import Playbook
from engine.admission.scheduler import Job, Scheduler


class Harness:
    """A scheduler whose runs wait until the test releases them; the clock only moves when told."""

    def __init__(self, max_concurrent: int = 1, queue_max: int = 10_000, aging_s: float = 30.0) -> None:
        self.now = 0.0
        self.started: list[str] = []
        self.decisions: list[dict[str, Any]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.active = 0
        self.peak = 0
        ids = itertools.count()
        self.scheduler = Scheduler(start=self._start, emit=self._emit, clock=lambda: self.now,
                                   new_id=lambda: f"r{next(ids):04d}", max_concurrent=max_concurrent,
                                   queue_max=queue_max, aging_s=aging_s)

    async def _start(self, job: Job) -> None:
        self.started.append(job.event["id"])
        self.active += 1
        self.peak = max(self.peak, self.active)
        gate = self.gates.setdefault(job.event["id"], asyncio.Event())
        await gate.wait()
        self.active -= 1

    async def _emit(self, type_: str, data: dict[str, Any], job: Job) -> None:
        assert type_ == "scheduler.decision"
        self.decisions.append(data)

    async def offer(self, name: str, priority: str, key: Any = None, playbook: str = "pb") -> str:
        job = Job(Playbook(id=playbook, on=("a.b",)), {"id": name, "type": "a.b"}, priority,
                  (playbook, key if key is not None else name))
        return await self.scheduler.offer(job)

    async def finish(self, name: str) -> None:
        self.gates.setdefault(name, asyncio.Event()).set()
        for _ in range(5):
            await asyncio.sleep(0)


def test_higher_priority_runs_first_and_fifo_within_a_class():
    async def scenario() -> list[str]:
        h = Harness(max_concurrent=1)
        await h.offer("blocker", "P3")
        await asyncio.sleep(0)
        for i in range(200):
            await h.offer(f"p3-{i}", "P3")
        await h.offer("p2-a", "P2")
        await h.offer("p0", "P0")
        await h.offer("p1", "P1")
        await h.offer("p2-b", "P2")
        order = []
        for _ in range(6):
            running = h.started[-1]
            await h.finish(running)
            order.append(h.started[-1])
        return order

    assert asyncio.run(scenario()) == ["p0", "p1", "p2-a", "p2-b", "p3-0", "p3-1"]


def test_waiting_work_ages_so_a_flood_of_fresh_work_cannot_starve_it():
    async def scenario() -> tuple[int, list[str]]:
        h = Harness(max_concurrent=1, aging_s=30.0)
        await h.offer("blocker", "P2")
        await asyncio.sleep(0)
        await h.offer("old-p3", "P3")
        served = 0
        # a steady flood of fresh P2 work, one every 10 s; each run takes 10 s
        for i in range(100):
            h.now += 10
            await h.offer(f"p2-{i}", "P2")
            await h.finish(h.started[-1])
            served += 1
            if "old-p3" in h.started:
                break
        decided = [d["outcome"] for d in h.decisions]
        return served, decided[:3]

    served, decided = asyncio.run(scenario())
    # P3 competes as P2 after 30 s, and as the older of the two it wins: it ran within 4 runs, not never
    assert served <= 4
    assert decided == ["queued", "queued", "queued"]


def test_an_aged_p3_beats_fresh_p1_work_once_it_waited_long_enough():
    async def scenario() -> list[str]:
        h = Harness(max_concurrent=1, aging_s=30.0)
        await h.offer("blocker", "P3")
        await asyncio.sleep(0)
        await h.offer("old-p3", "P3")
        h.now = 95  # 3 agings: P3 competes as P0
        await h.offer("fresh-p1", "P1")
        await h.finish("blocker")
        return h.started

    assert asyncio.run(scenario()) == ["blocker", "old-p3"]


def test_running_runs_never_exceed_max_concurrent_with_200_simultaneous_decisions():
    async def scenario() -> tuple[int, int, int]:
        h = Harness(max_concurrent=5)
        await asyncio.gather(*(h.offer(f"e{i}", ("P0", "P1", "P2", "P3")[i % 4]) for i in range(200)))
        assert h.scheduler.running == 5 and h.scheduler.depth == 195
        while len(h.started) < 200 or h.active:
            for name in list(h.started):
                await h.finish(name)
        await asyncio.wait_for(h.scheduler.wait_idle(), 1)
        return h.peak, len(h.started), len(set(h.started))

    assert asyncio.run(scenario()) == (5, 200, 200)


def test_one_run_per_key_goes_one_waits_further_ones_are_coalesced():
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        h = Harness(max_concurrent=5)
        outcomes = [await h.offer(f"e{i}", "P2", key="coder") for i in range(4)]
        await h.offer("other-agent", "P2", key="analyst")
        await asyncio.sleep(0)
        running_before = list(h.started)
        await h.finish("e0")
        return outcomes, running_before, h.started

    outcomes, before, after = asyncio.run(scenario())
    assert outcomes == ["queued", "waiting", "coalesced", "coalesced"]
    assert before == ["e0", "other-agent"]
    assert after == ["e0", "other-agent", "e1"]


def test_a_full_queue_displaces_lower_priority_work_or_refuses():
    async def scenario() -> tuple[list[str], list[dict[str, Any]]]:
        h = Harness(max_concurrent=1, queue_max=3)
        await h.offer("running", "P3")
        await asyncio.sleep(0)
        outcomes = [await h.offer(name, prio) for name, prio in
                    [("a", "P3"), ("b", "P3"), ("c", "P3"), ("urgent", "P1"), ("late", "P3")]]
        await asyncio.sleep(0)
        return outcomes, h.decisions

    outcomes, decisions = asyncio.run(scenario())
    assert outcomes == ["queued", "queued", "queued", "queued", "queue_full"]
    displaced = [d for d in decisions if d["outcome"] == "displaced"]
    assert [d["cause"] for d in displaced] == ["c"]
    queued = [d for d in decisions if d["outcome"] == "queued"]
    assert {"run_id", "playbook", "priority", "cause", "queue_depth", "running"} <= set(queued[0])
    assert queued[-1]["cause"] == "urgent" and queued[-1]["queue_depth"] == 3


def test_drain_lets_runs_finish_within_grace_and_cancels_the_rest():
    async def scenario() -> tuple[list[str], list[str]]:
        h = Harness(max_concurrent=2)
        await h.offer("quick", "P2")
        await h.offer("stuck", "P2")
        await h.offer("queued", "P2")
        await asyncio.sleep(0)
        asyncio.get_running_loop().call_later(0.01, h.gates.setdefault("quick", asyncio.Event()).set)
        cancelled = await h.scheduler.drain(grace_s=0.2)
        return cancelled, h.started

    cancelled, started = asyncio.run(scenario())
    assert started == ["quick", "stuck"]
    assert len(cancelled) == 1


def test_displacing_a_job_with_a_waiting_follower_drops_both_and_keeps_the_bound():
    async def scenario() -> tuple[int, list[str]]:
        h = Harness(max_concurrent=1, queue_max=2)
        await h.offer("running", "P3")
        await asyncio.sleep(0)
        await h.offer("a", "P3", key="k")
        await h.offer("a-follower", "P3", key="k")  # waits behind a
        await h.offer("b", "P3")
        await h.offer("urgent", "P1")  # displaces b (the newest P3)
        await h.offer("urgent2", "P1")  # displaces a, and its follower with it
        await asyncio.sleep(0)
        displaced = [d["cause"] for d in h.decisions if d["outcome"] == "displaced"]
        return h.scheduler.depth, displaced

    depth, displaced = asyncio.run(scenario())
    assert depth == 2
    assert displaced == ["b", "a", "a-follower"]


def test_shutdown_announces_the_runs_it_drops_and_refuses_new_ones():
    async def scenario():
        h = Harness(max_concurrent=1)
        await h.offer("running", "P2", key="a")
        await asyncio.sleep(0)
        await h.offer("queued", "P2", key="b")
        await h.offer("behind", "P2", key="b")
        drain = asyncio.create_task(h.scheduler.drain(grace_s=5))
        await asyncio.sleep(0)
        late = await h.offer("late", "P2", key="c")
        await h.finish("running")
        await drain
        return late, [(d["cause"], d["outcome"]) for d in h.decisions]

    late, decisions = asyncio.run(scenario())
    assert late == "stopping"
    assert decisions[-3:] == [("queued", "dropped"), ("behind", "dropped"), ("late", "stopping")]
