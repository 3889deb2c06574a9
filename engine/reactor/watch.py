"""`wait_for` steps: wait for an event matching a type and conditions, within a time limit.

Fed with every stored event. It keeps the recent ones in a bounded ring so that an event that arrived
between the moment the step started and the moment it began waiting (a heartbeat right after a restart)
is not missed: a waiter first looks back at events since its step started, then waits for new ones.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from engine.playbooks.conditions import all_hold
from engine.playbooks.model import Condition, conditions_from


class EventWatcher:
    def __init__(self, clock: Callable[[], float], capacity: int = 5000) -> None:
        self._clock = clock
        self._recent: deque[tuple[float, dict[str, Any]]] = deque(maxlen=capacity)
        self._waiters: list[tuple[str, tuple[Condition, ...], asyncio.Future[dict[str, Any]]]] = []

    def feed(self, event: dict[str, Any]) -> None:
        """Record a stored event and wake the waiters it satisfies."""
        self._recent.append((self._clock(), event))
        if not self._waiters:
            return
        keep = []
        for waiter in self._waiters:
            type_, conditions, future = waiter
            if future.done():
                continue
            if event.get("type") == type_ and all_hold(conditions, event):
                future.set_result(event)
            else:
                keep.append(waiter)
        self._waiters = keep

    def recent(self, predicate: Callable[[dict[str, Any]], bool], since: float) -> list[dict[str, Any]]:
        """Events seen since `since` (epoch s) for which `predicate` holds, oldest first."""
        return [event for seen_at, event in self._recent if seen_at >= since and predicate(event)]

    async def wait_for(self, type_: str, where: dict[str, Any], within_s: float,
                       since: float) -> dict[str, Any] | None:
        """The first event of `type_` matching `where` seen since `since` (epoch s), or None at the limit."""
        conditions = conditions_from(where)
        for seen_at, event in self._recent:
            if seen_at >= since and event.get("type") == type_ and all_hold(conditions, event):
                return event
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((type_, conditions, future))
        try:
            return await asyncio.wait_for(future, max(0.0, within_s - (self._clock() - since)))
        except asyncio.TimeoutError:
            return None
        finally:
            future.cancel()
