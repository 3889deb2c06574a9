"""Runs waiting for a person: the `approve` steps now asking, and the answers they get.

A waiting run is registered here while it waits (`GET /api/approvals`, the live state's `runs`); an
answer (`approve`/`deny`) resolves its future, and no answer by `expires_at` is a denial `by: timeout`
(a timer that fails is logged, counted and a denial `by: engine` that says so).
Time is the reactor's injected clock and sleep, so tests wait for nothing real.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.events import format_ts

log = logging.getLogger("aios.reactor")
TIMEOUT_BY = "timeout"
TIMER_FAILED_BY = "engine"  # `by` of a denial because the expiry timer itself failed


@dataclass(slots=True)
class Waiting:
    """One run waiting at one `approve` step."""

    run_id: str
    playbook: str
    agent: str | None
    cause: str | None
    step: str
    message: str
    requested_at: float
    expires_at: float
    answer: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # True once the run has journaled and announced the answer; False when it stopped before (cancelled)
    recorded: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def view(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "playbook": self.playbook, "agent": self.agent, "cause": self.cause,
                "step": self.step, "message": self.message, "requested_at": format_ts(self.requested_at),
                "expires_at": format_ts(self.expires_at)}


class WaitingRoom:
    """The runs waiting for an answer, by run id (a run waits at one step at a time)."""

    def __init__(self) -> None:
        self.waiting: dict[str, Waiting] = {}
        self.timer_failures = 0  # expiry timers that raised (each such run is denied, saying why)

    def answer(self, run_id: str, approved: bool, by: str, reason: str | None) -> asyncio.Future[bool] | None:
        """Give `run_id` its answer: the future the run resolves once the answer is journaled and announced
        (await it before telling anyone it counts); None when it is not waiting (never was, answered, timed out)."""
        waiting = self.waiting.pop(run_id, None)
        if waiting is None or waiting.answer.done():
            return None
        waiting.answer.set_result({"approved": approved, "by": by, "reason": reason})
        return waiting.recorded

    async def wait(self, waiting: Waiting, clock: Callable[[], float],
                   sleep: Callable[[float], Awaitable[None]]) -> dict[str, Any]:
        """Until `waiting` is answered or expires (a denial by `timeout`); it is registered meanwhile."""
        self.waiting[waiting.run_id] = waiting
        timer = asyncio.ensure_future(_until(waiting.expires_at, clock, sleep))
        try:
            await asyncio.wait({waiting.answer, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if self.waiting.get(waiting.run_id) is waiting:  # from here on an answer comes too late
                del self.waiting[waiting.run_id]
        if waiting.answer.done():
            return waiting.answer.result()
        failed = timer.exception() if timer.done() and not timer.cancelled() else None
        if failed is not None:  # the injected sleep or clock broke: say so, never pass it off as an expiry
            self.timer_failures += 1
            log.error("approval timer failed", extra={"run_id": waiting.run_id, "playbook": waiting.playbook,
                                                      "step": waiting.step, "error": repr(failed)})
            return {"approved": False, "by": TIMER_FAILED_BY,
                    "reason": f"the approval timer failed ({type(failed).__name__}: {failed})"}
        return {"approved": False, "by": TIMEOUT_BY, "reason": f"no answer by {format_ts(waiting.expires_at)}"}

    def view(self) -> list[dict[str, Any]]:
        """The waiting runs, the one expiring first first."""
        return [w.view() for w in sorted(self.waiting.values(), key=lambda w: w.expires_at)]


async def _until(when: float, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]) -> None:
    while (left := when - clock()) > 0:
        await sleep(left)
