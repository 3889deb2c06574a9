"""Priorities (contract §4): which work goes first. Lower number first.

P0 `score.degraded` (the score engine emits it when a score falls below 0.3), P1 `resource.*` alerts,
P2 `agent.error` and `agent.down`, P3 everything else. A playbook's own `priority` overrides.
`problem.escalated` is P1: paging a person about a fault nothing could heal goes before routine work.
"""
from __future__ import annotations

from typing import Any

PRIORITIES = ("P0", "P1", "P2", "P3")
_P2_TYPES = frozenset({"agent.error", "agent.down"})


def event_priority(event_type: str) -> str:
    """The priority an event of `event_type` gives the work it triggers."""
    if event_type == "score.degraded":
        return "P0"
    if event_type.startswith("resource.") or event_type == "problem.escalated":
        return "P1"
    if event_type in _P2_TYPES:
        return "P2"
    return "P3"


def decision_priority(override: str | None, event: dict[str, Any]) -> str:
    """A playbook's `priority` when it has one, else the event's."""
    return override or event_priority(str(event.get("type", "")))


def rank(priority: str) -> int:
    """Sort key: 0 for P0 … 3 for P3 (unknown text sorts last)."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)
