"""What stops a rule from "fixing" the same thing forever: a circuit breaker per playbook, a remediation
budget per agent across playbooks, and a loop guard on event chains.

Each guard is consulted before a decision is queued and answers with a reason to set it aside (or None);
outcomes are reported back after each run. All time comes from the injected clock.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SetAside:
    """Why a decision was not queued, and the event to announce it with (None: already announced)."""

    reason: str
    event_type: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Breaker:
    failures: deque[float] = field(default_factory=deque)
    open_until: float = 0.0
    probing: bool = False


class CircuitBreaker:
    """Per playbook: `failures` failed runs within `window_s` open it for `cooldown_s`; then one probe
    run is let through — success closes it, failure opens it again."""

    def __init__(self, clock: Callable[[], float], failures: int = 3, window_s: float = 600.0,
                 cooldown_s: float = 900.0) -> None:
        self._clock = clock
        self.failures = failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._state: dict[str, _Breaker] = {}

    def state(self, playbook: str) -> str:
        breaker = self._state.get(playbook)
        if breaker is None or not breaker.open_until:
            return "closed"
        if breaker.probing:
            return "probing"
        return "open" if self._clock() < breaker.open_until else "half_open"

    def admit(self, playbook: str) -> SetAside | None:
        breaker = self._state.get(playbook)
        if breaker is None or not breaker.open_until:
            return None
        if self._clock() < breaker.open_until:
            return SetAside(f"circuit open until {breaker.open_until:.0f} after {self.failures} failures")
        if breaker.probing:
            return SetAside("circuit half-open: a probe run is going")
        breaker.probing = True
        return None

    def record(self, playbook: str, ok: bool) -> SetAside | None:
        """Count an outcome; returns the `reactor.circuit_open` announcement when this one opens it."""
        now = self._clock()
        breaker = self._state.setdefault(playbook, _Breaker())
        if ok:
            if breaker.open_until:
                self._state[playbook] = _Breaker()
            return None
        was_probe = breaker.probing
        breaker.probing = False
        breaker.failures.append(now)
        while breaker.failures and breaker.failures[0] < now - self.window_s:
            breaker.failures.popleft()
        if was_probe or len(breaker.failures) >= self.failures:
            breaker.open_until = now + self.cooldown_s
            breaker.failures.clear()
            return SetAside("circuit opened", "reactor.circuit_open",
                            {"playbook": playbook, "cooldown_s": self.cooldown_s, "probe_failed": was_probe})
        return None


class Budget:
    """Per agent, across playbooks: at most `max_runs` runs touching it per `window_s` (successes too)."""

    def __init__(self, clock: Callable[[], float], max_runs: int = 5, window_s: float = 3600.0) -> None:
        self._clock = clock
        self.max_runs = max_runs
        self.window_s = window_s
        self._runs: dict[str, deque[float]] = {}
        self._announced: dict[str, float] = {}

    def admit(self, agents: set[str]) -> SetAside | None:
        now = self._clock()
        for agent in sorted(agents):
            runs = self._runs.setdefault(agent, deque())
            while runs and runs[0] <= now - self.window_s:
                runs.popleft()
            if len(runs) >= self.max_runs:
                until = runs[0] + self.window_s
                reason = f"remediation budget for {agent} exhausted ({self.max_runs} runs per {self.window_s:.0f}s)"
                if self._announced.get(agent, 0.0) < runs[0]:  # once per exhausted window
                    self._announced[agent] = now
                    return SetAside(reason, "escalation.budget_exhausted",
                                    {"agent": agent, "max_runs": self.max_runs, "window_s": self.window_s,
                                     "until": until})
                return SetAside(reason)
        for agent in agents:
            self._runs[agent].append(now)
        return None


class LoopGuard:
    """Refuses chains deeper than `max_depth`, and a playbook re-triggered by events its own runs emitted
    more than `max_self` times per `window_s`. Remembers the last `memory` emitted ids (bounded)."""

    def __init__(self, clock: Callable[[], float], max_depth: int = 8, max_self: int = 3,
                 window_s: float = 600.0, memory: int = 10_000) -> None:
        self._clock = clock
        self.max_depth = max_depth
        self.max_self = max_self
        self.window_s = window_s
        self._memory = memory
        self._emitted_by: OrderedDict[str, str] = OrderedDict()
        self._self_triggers: dict[str, deque[float]] = {}

    def emitted(self, event_id: str, playbook: str) -> None:
        """Remember that a run of `playbook` emitted `event_id`."""
        self._emitted_by[event_id] = playbook
        while len(self._emitted_by) > self._memory:
            self._emitted_by.popitem(last=False)

    def admit(self, playbook: str, event: dict[str, Any]) -> SetAside | None:
        chain = event.get("chain") or []
        if len(chain) >= self.max_depth:
            return SetAside(f"event chain is {len(chain)} deep (limit {self.max_depth})", "reactor.loop_detected",
                            {"playbook": playbook, "cause": event.get("id"), "depth": len(chain),
                             "why": "chain too deep"})
        if not any(self._emitted_by.get(cause) == playbook for cause in chain + [event.get("id")]):
            return None
        now = self._clock()
        hits = self._self_triggers.setdefault(playbook, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.max_self:
            return SetAside(f"re-triggered by its own results {len(hits)} times in {self.window_s:.0f}s",
                            "reactor.loop_detected",
                            {"playbook": playbook, "cause": event.get("id"), "why": "self-trigger",
                             "count": len(hits)})
        hits.append(now)
        return None
