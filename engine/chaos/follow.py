"""Following the problem a fault opens, through the engine's API, until it is healed or the deadline passes.

The engine is level-triggered (docs/problems.md): a fault opens a problem, or joins the one already open for
the same key, and the problem ends resolved or escalated. So the scenario looks for a problem of the kinds
it expects, about its subject, opened since the fault (or open at that time), and waits for it to resolve.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.chaos.engine_api import EngineApi, epoch_of

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
JOIN_SLACK_S = 2.0  # clocks of one machine; an event stamped just before the fault still belongs to it


@dataclass(slots=True)
class Followed:
    """What became of the fault: the problem (its whole record), when it was seen and healed, or why not."""

    problem: dict[str, Any] | None = None
    detected_at: float | None = None
    healed_at: float | None = None
    reason: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def healed(self) -> bool:
        return self.healed_at is not None


def matches(problem: dict[str, Any], kinds: tuple[str, ...], subject: dict[str, Any], since: float) -> bool:
    """A problem of one of `kinds` about `subject`, opened since `since` or open at the time."""
    if problem.get("kind") not in kinds:
        return False
    if any((problem.get("subject") or {}).get(k) != v for k, v in subject.items()):
        return False
    opened = epoch_of(problem.get("opened_at")) or 0.0
    resolved = epoch_of(problem.get("resolved_at"))
    if resolved is not None and resolved < since:
        return False  # over before the fault
    return opened >= since - JOIN_SLACK_S or problem.get("status") == "open"


async def follow(api: EngineApi, kinds: tuple[str, ...], subject: dict[str, Any], since: float, deadline: float,
                 *, poll_s: float = 0.25, clock: Clock = time.time, sleep: Sleep = asyncio.sleep) -> Followed:
    """Poll `GET /api/problems` until a matching problem resolves, or `deadline` (epoch seconds)."""
    followed = Followed()
    while True:
        candidates = [p for p in await api.problems() if matches(p, kinds, subject, since)]
        if followed.problem is not None:  # stay with the one found first
            candidates = [p for p in candidates if p["id"] == followed.problem["id"]] or candidates
        if candidates:
            found = max(candidates, key=lambda p: p.get("opened_at") or "")
            if followed.problem is None or followed.problem["id"] != found["id"]:
                followed.detected_at = max(since, epoch_of(found.get("opened_at")) or clock())
            followed.problem = found
            if found.get("status") == "resolved":
                whole = await api.problem(found["id"])
                followed.problem, followed.runs = whole, list(whole.get("runs") or [])
                followed.healed_at = epoch_of(whole.get("resolved_at")) or clock()
                return followed
        if clock() >= deadline:
            followed.reason = _why_not(followed.problem, kinds, subject)
            if followed.problem is not None:
                whole = await api.problem(followed.problem["id"])
                followed.problem, followed.runs = whole, list(whole.get("runs") or [])
            return followed
        await sleep(poll_s)


def _why_not(problem: dict[str, Any] | None, kinds: tuple[str, ...], subject: dict[str, Any]) -> str:
    if problem is None:
        return f"no {' or '.join(kinds)} problem about {subject or 'the host'} was opened before the deadline"
    if problem.get("escalated_at"):
        reasons = "; ".join(f"{k}: {v}" for k, v in (problem.get("reasons") or {}).items()) or "unhealed"
        return f"problem {problem['id']} was escalated, not healed ({reasons})"
    return f"problem {problem['id']} was still open at the deadline"
