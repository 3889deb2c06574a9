"""In-process publish/subscribe by event-type glob, with bounded queues.

Publishing never waits. A publisher that waited on a full queue could be the very consumer of that
queue (the decision loop emits `scheduler.decision` for each event it decides): a burst would then
deadlock the engine. So a subscriber is either `lossless`, an unbounded queue for the engine's own
decision loop, whose size the edges bound instead (intake refuses outside events with 503 above
`server.max_undecided`), or `drop_oldest`, a bounded queue for observers such as dashboards, which would
rather lose an old event than slow the engine (drops are counted). Events reach the bus only after they
are stored.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from engine.events import type_pattern

Policy = Literal["lossless", "drop_oldest"]


@dataclass(slots=True)
class Subscription:
    """A subscriber's queue; iterate with `await sub.get()` or `async for event in sub`."""

    name: str
    patterns: tuple[str, ...]
    queue: asyncio.Queue[dict[str, Any]]
    policy: Policy
    _match: re.Pattern[str]
    dropped: int = 0
    closed: bool = False
    every: bool = False  # subscribed to "*": no type to match

    def matches(self, event_type: str) -> bool:
        return self._match.match(event_type) is not None

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self.queue.get()


class Bus:
    """Fan-out of stored events to subscribers whose type globs match."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self.published = 0

    def subscribe(self, name: str, patterns: str | tuple[str, ...] = "*", maxsize: int = 10_000,
                  policy: Policy = "drop_oldest") -> Subscription:
        """Register a subscriber for the types matching any of `patterns` (shell globs). `maxsize`
        bounds a `drop_oldest` queue; a `lossless` one is unbounded (its producers are bounded)."""
        if policy == "drop_oldest" and maxsize < 1:
            raise ValueError("a drop_oldest subscription needs a bounded queue (maxsize >= 1)")
        globs = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        regex = type_pattern(globs)
        sub = Subscription(name, globs, asyncio.Queue(maxsize if policy == "drop_oldest" else 0), policy, regex,
                           every="*" in globs)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        if sub in self._subs:
            self._subs.remove(sub)

    async def publish(self, event: dict[str, Any]) -> None:
        """Deliver to every matching subscriber. Never waits (a coroutine only so callers stay uniform)."""
        self.deliver((event,))

    def deliver(self, events: Iterable[dict[str, Any]]) -> None:
        """Deliver stored events, in order, to every matching subscriber: intake hands over a whole batch
        in one call. Never waits."""
        for event in events:
            self.published += 1
            event_type = event["type"]
            for sub in self._subs:
                if not (sub.every or sub.matches(event_type)):
                    continue
                if sub.policy == "drop_oldest" and sub.queue.full():
                    sub.queue.get_nowait()
                    sub.dropped += 1
                sub.queue.put_nowait(event)

    def depth(self) -> dict[str, int]:
        """Queue depth per subscriber, for health and metrics."""
        return {sub.name: sub.queue.qsize() for sub in self._subs}
