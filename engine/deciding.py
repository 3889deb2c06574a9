"""The decision loop: every stored event, in order, through the observers (wait_for watcher, supervisor,
metrics) and the matcher, and each decision handed to the dispatcher.

It reads a lossless bus subscription, so it never drops an event, and nothing it triggers waits on it:
dispatches run as tasks of their own (at most `max_in_flight` at once; they wait only on the store's
writer thread, never on this loop). How far behind it is (`undecided`) bounds intake at the edge, and
`stalled_for` tells health when events wait and nothing gets decided.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from engine.bus import Subscription
from engine.playbooks.matcher import Decision, Match, Matcher, SetAside

log = logging.getLogger("aios.decider")
Observer = Callable[[dict[str, Any]], None]
# (decision, event, redecision): queue a run through the guards; `redecision` says why a problem is decided again
Dispatch = Callable[[Decision, dict[str, Any], str | None], Awaitable[Any]]
# (set aside, event, redecision, no_playbook): the stored decisions about what does not run (None: nothing to store)
Announce = Callable[[Sequence[SetAside], dict[str, Any], str | None, bool], Awaitable[Any] | None]
# `queue.get()` on a non-empty queue does not yield to other tasks, so a backlog is decided in slices of
# this long: the API and health keep answering. A slice is time, not a count of events: each request
# handler's turn takes in a whole batch (100 events in a few ms), and a loop that gave up after a fixed
# few events per turn fell behind intake it could easily keep up with, refusing outside events for no cause.
SLICE_S = 0.005
# Dispatches in flight at once. Each one resumes on the event loop when its decision is stored; a thousand
# of them finishing in one loop pass kept health waiting ~300 ms under overload (measured: bench/service.py),
# 64 keeps it near 5 ms at the median, and 64 per group commit is still far more than the runs 5 slots start.
MAX_IN_FLIGHT = 64


class Decider:
    def __init__(self, subscription: Subscription, matcher: Matcher, dispatch: Dispatch,
                 observers: Sequence[Observer] = (), *, announce: Announce | None = None,
                 opens_problem: Callable[[dict[str, Any]], bool] = lambda event: False,
                 max_in_flight: int = MAX_IN_FLIGHT, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.subscription = subscription
        self.matcher = matcher
        self._dispatch = dispatch
        self._announce = announce
        self._opens_problem = opens_problem
        self._observers = tuple(observers)
        self.max_in_flight = max_in_flight
        self._monotonic = monotonic
        self._in_flight: set[asyncio.Task[Any]] = set()
        self.progress_at = monotonic()
        self.errors = 0  # observers, matcher or dispatches that raised (/metrics: aios_decision_errors)
        self._busy = False
        self._waiting = False

    @property
    def undecided(self) -> int:
        """Stored events not yet through the matcher."""
        return self.subscription.queue.qsize() + self._busy

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds since the last decision while events wait (0 when none wait)."""
        if not self.undecided or self._waiting:  # waiting: an event just arrived and wakes it next
            return 0.0
        return max(0.0, (self._monotonic() if now is None else now) - self.progress_at)

    async def run(self) -> None:
        """Decide events until cancelled; then wait for dispatches in flight (their decisions are announced)."""
        queue = self.subscription.queue
        slice_ends = time.perf_counter() + SLICE_S
        try:
            while True:
                if queue.empty():  # about to wait: a new slice starts when the next event arrives
                    self._waiting = True
                    try:
                        event = await queue.get()
                    finally:
                        self._waiting = False
                    slice_ends = time.perf_counter() + SLICE_S
                else:
                    event = queue.get_nowait()
                self._busy = True
                try:
                    await self._decide(event)
                finally:
                    self._busy = False
                    self.progress_at = self._monotonic()
                if time.perf_counter() >= slice_ends:
                    await asyncio.sleep(0)
                    slice_ends = time.perf_counter() + SLICE_S
        finally:
            if self._in_flight:
                await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def _decide(self, event: dict[str, Any]) -> None:
        for observe in self._observers:
            try:
                observe(event)
            except Exception:
                self.errors += 1
                log.exception("observer failed on event %s", event.get("id"))
        try:
            match = self.matcher.match(event)
        except Exception:  # one bad event or playbook must not stop the engine
            self.errors += 1
            log.exception("matcher failed on event %s", event.get("id"))
            return
        self._act(match, event, None)
        while len(self._in_flight) >= self.max_in_flight:  # safe to wait: dispatches never wait on this loop
            await asyncio.wait(list(self._in_flight), return_when=asyncio.FIRST_COMPLETED)

    def redecide(self, event: dict[str, Any], why: str, exclude: frozenset[str] = frozenset()) -> None:
        """Decide an open problem's event again (level-triggered): it does not count toward `sustained`
        again, and playbooks in `exclude` are skipped while another candidate is left. Never waits."""
        try:
            match = self.matcher.match(event, again=True, exclude=exclude)
        except Exception:
            self.errors += 1
            log.exception("matcher failed re-deciding event %s", event.get("id"))
            return
        self._act(match, event, why)

    def _act(self, match: Match, event: dict[str, Any], why: str | None) -> None:
        """Dispatch each decision; store what was set aside (and that nothing can fix a problem's event)."""
        for decision in match.decisions:
            self._spawn(self._dispatch(decision, event, why))
        if self._announce is None:
            return
        no_playbook = (not any(d.exclusive for d in match.decisions)
                       and not any(a.playbook is not None and a.playbook.exclusive for a in match.set_aside)
                       and self._opens_problem(event))
        if match.set_aside or no_playbook:
            announcing = self._announce(match.set_aside, event, why, no_playbook)
            if announcing is not None:
                self._spawn(announcing)

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._dispatched)

    def _dispatched(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors += 1
            log.error("dispatch failed", exc_info=task.exception())
