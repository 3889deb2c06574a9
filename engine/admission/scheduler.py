"""The scheduler (contract §4): priority classes P0..P3, FIFO within a class, aging, a concurrency cap,
coalescing per (playbook, key), a bounded queue. It decides *when* a run starts; the reactor runs it.

Each class is a FIFO deque, so picking the next job compares four heads: O(1) whatever the backlog.
A head's effective class improves by one for every `aging_s` it has waited, so a flood of P3 work
cannot starve anything, and a P3 job that waited long enough runs before fresh P2 work.

A run that waits for a person (an `approve` step) holds no slot: `parked(run_id)` frees its slot while
it waits and queues it again, at its own priority, to take one before it goes on. `cancel(run_id)` takes
a queued run out of the queue.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.playbooks.model import PRIORITIES, Playbook

log = logging.getLogger("aios.scheduler")
ACCEPTED = ("queued", "waiting")  # outcomes of `place` that are certain to run
RANK = {name: rank for rank, name in enumerate(PRIORITIES)}


@dataclass(slots=True)
class Job:
    """One decided run: which playbook, for which event, at which priority, under which coalesce key."""

    playbook: Playbook
    event: dict[str, Any]
    priority: str
    key: tuple[Any, ...]
    run_id: str = ""
    queued_at: float = 0.0
    seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _KeyState:
    going: Job
    waiting: Job | None = None


class Scheduler:
    """Queue decisions and start runs through `start(job)`, never more than `max_concurrent` at once.

    `emit(type, data, job)` publishes `scheduler.decision` events; `new_id()` names runs.
    Overflow policy: when `queue_max` jobs wait, a new job displaces the newest job of a strictly lower
    class; if there is none it is refused (`queue_full`). Both are announced as decisions;
    `on_dropped(job)` hears of each displaced job (a recovered run must then be closed).
    """

    def __init__(self, *, start: Callable[[Job], Awaitable[Any]],
                 emit: Callable[[str, dict[str, Any], Job], Awaitable[Any]],
                 clock: Callable[[], float], new_id: Callable[[], str],
                 max_concurrent: int = 5, queue_max: int = 10_000, aging_s: float = 30.0,
                 on_dropped: Callable[[Job], None] | None = None) -> None:
        self._start = start
        self._emit = emit
        self._clock = clock
        self._new_id = new_id
        self.max_concurrent = max_concurrent
        self.queue_max = queue_max
        self.aging_s = aging_s
        self._classes: list[deque[Job]] = [deque() for _ in PRIORITIES]
        self._keys: dict[tuple[Any, ...], _KeyState] = {}
        self._running: dict[str, tuple[Job, asyncio.Task[Any]]] = {}
        self._parked: dict[str, tuple[Job, asyncio.Task[Any]]] = {}  # started runs waiting without a slot
        self._seq = itertools.count()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stopping = False  # set by `drain`: nothing more is queued or started
        self._displaced: list[tuple[Job, str]] = []
        self._on_dropped = on_dropped
        self.progress_at = clock()  # when a run last started or ended: health tells a stalled queue by it

    # -- intake of decisions ----------------------------------------------------------------------
    async def offer(self, job: Job) -> str:
        """Queue `job` (or hold it behind a run of the same key) and announce it; returns what became of it."""
        outcome, reason = self.place(job)
        await self.announce(job, outcome, reason)
        return outcome

    def place(self, job: Job) -> tuple[str, str | None]:
        """Decide at once, without waiting: queued, waiting (behind a run of its key), coalesced or
        queue_full, with the reason. The caller announces it (`announce`) — and can commit its guards
        in between, before any other decision is placed."""
        job.run_id = job.run_id or self._new_id()
        job.queued_at = self._clock()
        job.seq = next(self._seq)
        if self.stopping:
            return "stopping", "the engine is stopping"
        state = self._keys.get(job.key)
        if state is not None:
            if state.waiting is not None:
                return "coalesced", (f"a run for this key is going ({state.going.run_id}) "
                                     f"and one waits ({state.waiting.run_id})")
            state.waiting = job
            return "waiting", f"waits for run {state.going.run_id} of the same key"
        if self.depth >= self.queue_max and not self._displace(job):
            return "queue_full", f"{self.queue_max} runs already wait"
        self._keys[job.key] = _KeyState(job)
        self._classes[RANK[job.priority]].append(job)
        self._pump()
        return "queued", None

    async def announce(self, job: Job, outcome: str, reason: str | None = None) -> None:
        """The `scheduler.decision` of a placed job, and of the jobs its placing displaced."""
        displaced, self._displaced = self._displaced, []
        for dropped, why in displaced:
            await self._decide(dropped, "displaced", why)
        await self._decide(job, outcome, reason)

    def _displace(self, job: Job) -> bool:
        """Make room for `job` by dropping the newest job of the lowest class below it (announced with it)."""
        for rank in range(len(PRIORITIES) - 1, RANK[job.priority], -1):
            queue = self._classes[rank]
            victim = next((queued for queued in reversed(queue) if "wake" not in queued.extra), None)
            if victim is not None:  # a parked run queued to take its slot back has started: never displaced
                _remove(queue, victim)
                state = self._keys.pop(victim.key)  # a queued job is always its key's going one
                why = f"queue full; made room for {job.priority} work"
                for dropped in (victim, state.waiting):  # its waiting follower goes too: room is room
                    if dropped is not None:
                        self._displaced.append((dropped, why))
                        if self._on_dropped is not None:
                            self._on_dropped(dropped)
                return True
        return False

    async def _decide(self, job: Job, outcome: str, reason: str | None = None, **extra: Any) -> None:
        data = {"run_id": job.run_id, "playbook": job.playbook.id, "priority": job.priority,
                "cause": job.event.get("id"), "queue_depth": self.depth, "running": len(self._running),
                "outcome": outcome, "exclusive": job.playbook.exclusive}
        if reason:
            data["reason"] = reason
        if job.extra.get("redecision"):
            data["redecision"] = job.extra["redecision"]
        if job.extra.get("by"):  # a person's job (re-run, manual restart, trigger): who asked
            data["by"] = job.extra["by"]
        if job.extra.get("rerun_of"):
            data["rerun_of"] = job.extra["rerun_of"]
        data.update(extra)
        await self._emit("scheduler.decision", data, job)

    # -- starting runs ----------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return sum(len(q) for q in self._classes)

    @property
    def running(self) -> int:
        return len(self._running)

    def running_ids(self) -> list[str]:
        return list(self._running)

    def running_jobs(self) -> list[Job]:
        """The jobs whose runs are in progress, oldest first: what the live view shows acting on agents
        (parked runs, waiting for a person without a slot, too)."""
        return [job for job, _ in (*self._running.values(), *self._parked.values())]

    def started(self, run_id: str) -> bool:
        """Whether `run_id` has started (running or parked), though its runner may not have seen it yet."""
        return run_id in self._running or run_id in self._parked

    def going(self, run_id: str) -> bool:
        """Whether `run_id` is started, queued or waiting behind the run of its key."""
        return self.started(run_id) or any(
            job.run_id == run_id for job in (*(j for q in self._classes for j in q),
                                             *(s.waiting for s in self._keys.values() if s.waiting)))

    def depth_by_priority(self) -> dict[str, int]:
        return {name: len(self._classes[rank]) for name, rank in RANK.items()}

    def stalled_for(self, now: float) -> float:
        """Seconds that runs have waited with free slots and nothing started (0: not stalled)."""
        if self.stopping or not self.depth or len(self._running) >= self.max_concurrent:
            return 0.0
        return max(0.0, now - self.progress_at)

    def effective_rank(self, job: Job, now: float) -> int:
        """The class a waiting job competes in: one better per `aging_s` waited, never better than P0."""
        return max(0, RANK[job.priority] - int((now - job.queued_at) // self.aging_s))

    def _pop_best(self) -> Job | None:
        now = self._clock()
        heads = [q[0] for q in self._classes if q]
        if not heads:
            return None
        best = min(heads, key=lambda j: (self.effective_rank(j, now), j.seq))
        self._classes[RANK[best.priority]].popleft()
        return best

    def _pump(self) -> None:
        """Start queued jobs while there is room. Called whenever a job is queued or a run ends."""
        while not self.stopping and len(self._running) < self.max_concurrent:
            job = self._pop_best()
            if job is None:
                break
            wake = job.extra.pop("wake", None)
            if wake is not None:  # a parked run takes its slot back and goes on
                self._unpark(job.run_id)
                if not wake.done():
                    wake.set_result(None)
                continue
            task = asyncio.get_running_loop().create_task(self._run(job), name=f"run-{job.run_id}")
            self._running[job.run_id] = (job, task)  # held here and awaited by `drain`: not fire-and-forget
            self._idle.clear()
            self.progress_at = self._clock()

    async def _run(self, job: Job) -> None:
        stopping = False
        try:
            await self._start(job)
        except (asyncio.CancelledError, GeneratorExit):
            stopping = True  # shutdown: start nothing new from here
            raise
        except Exception:  # the run's own bookkeeping failed; the queue must go on
            log.exception("run %s of %s failed to run", job.run_id, job.playbook.id)
        finally:
            self._running.pop(job.run_id, None)
            self._parked.pop(job.run_id, None)
            self.progress_at = self._clock()
            self._release_key(job)
            if not stopping:
                self._pump()
            self._check_idle()

    def _check_idle(self) -> None:
        if not self._running and not self._parked and not self.depth:
            self._idle.set()

    def _release_key(self, job: Job) -> None:
        state = self._keys.get(job.key)
        if state is None or state.going is not job:
            return
        if state.waiting is None:
            del self._keys[job.key]
            return
        follower, state.going, state.waiting = state.waiting, state.waiting, None
        follower.seq = next(self._seq)  # keeps its original queued_at: it has been waiting all along
        self._classes[RANK[follower.priority]].append(follower)

    # -- runs that wait without a slot, and cancelled queued runs ---------------------------------
    @contextlib.asynccontextmanager
    async def parked(self, run_id: str) -> AsyncIterator[None]:
        """While the body runs, running `run_id` holds no slot (another run may start in it); after it,
        the run queues at its own priority (keeping its first queue time for aging) to take a slot
        before it goes on. When the body raises (the run is cancelled), the run still waits for a slot to
        roll back in, at the head of its class: a parked run never takes a slot that is not free. At
        shutdown it takes none (nothing starts any more). A run this scheduler did not start (tests) just
        runs the body."""
        entry = self._running.pop(run_id, None)
        if entry is None:
            yield
            return
        self._parked[run_id] = entry
        self._pump()
        try:
            yield
        except BaseException:
            await self._take_slot(entry[0], first=True)
            raise
        await self._take_slot(entry[0])

    async def _take_slot(self, job: Job, first: bool = False) -> None:
        """Queue parked `job` (at the head of its class when `first`: it was cancelled and must roll back)
        and wait until `_pump` gives it a slot. A run answered and then cancelled while it queues goes on
        queueing, to roll back in a slot; a further cancellation, or the engine stopping, takes it out of
        the queue without one (nothing else starts then)."""
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._classes[RANK[job.priority]]
        job.extra["wake"] = wake
        job.seq = next(self._seq)
        queue.appendleft(job) if first else queue.append(job)
        self._pump()
        patience, cancelled = (0 if first else 1), 0
        while not wake.done() and not self.stopping and cancelled <= patience:
            try:
                await asyncio.shield(wake)
            except asyncio.CancelledError:
                cancelled += 1
        if not wake.done():
            if job.extra.pop("wake", None) is not None:
                _remove(queue, job)
            self._unpark(job.run_id)
        if cancelled:
            raise asyncio.CancelledError

    def _unpark(self, run_id: str) -> None:
        entry = self._parked.pop(run_id, None)
        if entry is not None:
            self._running[run_id] = entry
            self.progress_at = self._clock()

    async def cancel(self, run_id: str, by: str, reason: str) -> Job | None:
        """Take `run_id` out of the queue (or from behind the run of its key) before it starts, announced
        as `dropped` with who and why; None when no such run waits (it runs, has ended, or never was)."""
        job = None
        for queue in self._classes:
            job = next((queued for queued in queue if queued.run_id == run_id and "wake" not in queued.extra), None)
            if job is not None:
                _remove(queue, job)
                self._release_key(job)  # its key's follower, if any, is queued in its place
                break
        else:
            state = next((s for s in self._keys.values() if s.waiting is not None and s.waiting.run_id == run_id),
                         None)
            if state is None:
                return None
            job, state.waiting = state.waiting, None
        self._pump()
        await self._decide(job, "dropped", reason, by=by, cancelled=True)
        self._check_idle()
        return job

    # -- shutdown ---------------------------------------------------------------------------------
    async def wait_idle(self) -> None:
        """Until nothing runs and nothing waits."""
        await self._idle.wait()

    async def drain(self, grace_s: float) -> list[str]:
        """Stop starting runs; let running ones finish up to `grace_s`, then cancel the rest.

        Returns the run ids that were cancelled (their runner rolls them back on cancellation).
        """
        self.stopping = True
        dropped = [job for queue in self._classes for job in queue if "wake" not in job.extra]
        dropped += [state.waiting for state in self._keys.values() if state.waiting is not None]
        for queue in self._classes:
            queue.clear()
        self._keys.clear()
        for job in dropped:  # every decision says what became of it, the last ones too
            try:
                await self._decide(job, "dropped", "the engine is stopping")
            except Exception:  # the store may already refuse: the log still says it
                log.exception("run %s of %s dropped at shutdown", job.run_id, job.playbook.id)
        parked = [task for _, task in self._parked.values()]
        for task in parked:  # waiting for a person: nothing to finish, the next engine goes on waiting
            task.cancel()
        tasks = [task for _, task in self._running.values()] + parked
        if not tasks:
            return []
        done, pending = await asyncio.wait(tasks, timeout=grace_s)
        cancelled = [t.get_name().removeprefix("run-") for t in pending]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return cancelled


def _remove(queue: deque[Job], job: Job) -> None:
    """Remove `job` itself from `queue` (by identity: two jobs may compare equal)."""
    for index, queued in enumerate(queue):
        if queued is job:
            del queue[index]
            return
