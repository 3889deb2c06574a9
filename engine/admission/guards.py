"""What stops a rule from "fixing" the same thing forever — and what stops anyone from using that to
switch remediation off: a circuit breaker per (playbook, key), a remediation budget per agent, a loop
guard on the engine's own event chains.

Each guard answers in two steps. `check` spends nothing: it says why a decision would be set aside, or
None (it may note that it announced an exhausted budget). `commit` records the decision once it is certain to run (every guard passed and the scheduler took
it), so a decision refused by one guard or by the scheduler never spends another guard's allowance,
and a half-open breaker's probe is only leased to a run that really goes. Outcomes come back through
`CircuitBreaker.record`. Every per-key map is capped (`engine.capped`); all time comes from the clock.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.capped import CappedMap
from engine.durations import parse_duration

MAX_KEYS = 10_000  # per guard: breakers, agents in the budget, playbooks in the loop guard


@dataclass(frozen=True, slots=True)
class SetAside:
    """Why a decision was not queued: a short `reason` code (contract §8), a `detail` for people, and the
    guard's own event to announce it with (None: nothing new to announce)."""

    reason: str
    detail: str
    event_type: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    retry_at: float | None = None  # when the reason lapses (epoch seconds), when known: a problem waits for it


@dataclass(slots=True)
class _Breaker:
    failures: deque[float] = field(default_factory=deque)
    open_until: float = 0.0
    probe_until: float = 0.0  # a probe run holds the half-open breaker until it reports or this passes


class CircuitBreaker:
    """Per (playbook, key): `failures` failed runs within `window_s` open it for `cooldown_s`; then one
    probe run is let through — success closes it, failure opens it again. The key is the decision's
    coalesce key (playbook id and throttle-key value), so a target that cannot be fixed stops the
    remediation of that target only. A probe's lease lasts `lease_s` (default: the cooldown): a probe
    whose outcome never comes back does not hold the breaker half-open forever."""

    def __init__(self, clock: Callable[[], float], failures: int = 3, window_s: float = 600.0,
                 cooldown_s: float = 900.0, lease_s: float | None = None, cap: int = MAX_KEYS) -> None:
        self._clock = clock
        self.failures = failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.lease_s = cooldown_s if lease_s is None else lease_s
        self.map: CappedMap[Hashable, _Breaker] = CappedMap("breakers", cap)

    def state(self, key: Hashable) -> str:
        """closed, open, half_open (a probe may go) or probing (a probe is going)."""
        breaker = self.map.peek(key)
        now = self._clock()
        if breaker is None or not breaker.open_until:
            return "closed"
        if now < breaker.open_until:
            return "open"
        return "probing" if now < breaker.probe_until else "half_open"

    def states(self, playbook: str) -> dict[str, int]:
        """How many keys of `playbook` are in each state other than closed (for views)."""
        counts: dict[str, int] = {}
        for key in self.map:
            if isinstance(key, tuple) and key and key[0] == playbook:
                state = self.state(key)
                if state != "closed":
                    counts[state] = counts.get(state, 0) + 1
        return counts

    def check(self, key: Hashable) -> SetAside | None:
        state = self.state(key)
        if state == "open":
            until = self.map.peek(key).open_until  # type: ignore[union-attr]
            return SetAside("circuit open", f"circuit open until {until:.0f} after {self.failures} failures",
                            retry_at=until)
        if state == "probing":
            return SetAside("circuit open", "circuit half-open: a probe run is going",
                            retry_at=self.map.peek(key).probe_until)  # type: ignore[union-attr]
        return None

    def commit(self, key: Hashable) -> None:
        """A run was admitted: when the breaker is half-open it is this run's probe."""
        if self.state(key) == "half_open":
            self.map.get(key).probe_until = self._clock() + self.lease_s  # type: ignore[union-attr]

    def record(self, key: Hashable, ok: bool) -> SetAside | None:
        """Count an outcome; returns the `reactor.circuit_open` announcement when this one opens it."""
        now = self._clock()
        breaker = self.map.get(key)
        if ok:
            if breaker is not None:
                self.map.pop(key)  # closed: nothing left to remember
            return None
        if breaker is None:
            breaker = self.map.setdefault(key, _Breaker)
        was_probe = bool(breaker.open_until) and now >= breaker.open_until
        breaker.probe_until = 0.0
        breaker.failures.append(now)
        while breaker.failures and breaker.failures[0] < now - self.window_s:
            breaker.failures.popleft()
        if was_probe or len(breaker.failures) >= self.failures:
            breaker.open_until = now + self.cooldown_s
            breaker.failures.clear()
            playbook = key[0] if isinstance(key, tuple) and key else key
            return SetAside("circuit open", "circuit opened", "reactor.circuit_open",
                            {"playbook": playbook, "key": _key_text(key), "cooldown_s": self.cooldown_s,
                             "probe_failed": was_probe})
        return None


class Budget:
    """Per agent, across playbooks: at most `max_runs` remediation runs touching it per `window_s`
    (successes too). Only exclusive playbooks spend it: notifications and audits beside a fix do not."""

    def __init__(self, clock: Callable[[], float], max_runs: int = 5, window_s: float = 3600.0,
                 cap: int = MAX_KEYS) -> None:
        self._clock = clock
        self.max_runs = max_runs
        self.window_s = window_s
        self.map: CappedMap[str, deque[float]] = CappedMap("budget", cap)
        self._announced: CappedMap[str, float] = CappedMap("budget_announced", cap)

    def _runs(self, agent: str, now: float) -> deque[float] | None:
        runs = self.map.get(agent)
        if runs is None:
            return None
        while runs and runs[0] <= now - self.window_s:
            runs.popleft()
        if not runs:
            self.map.pop(agent)
            return None
        return runs

    def check(self, agents: Iterable[str]) -> SetAside | None:
        now = self._clock()
        for agent in sorted(agents):
            runs = self._runs(agent, now)
            if runs is None or len(runs) < self.max_runs:
                continue
            until = runs[0] + self.window_s
            detail = f"remediation budget for {agent} exhausted ({self.max_runs} runs per {self.window_s:.0f}s)"
            if (self._announced.peek(agent) or 0.0) < runs[0]:  # once per exhausted window
                self._announced[agent] = now
                return SetAside("budget", detail, "escalation.budget_exhausted",
                                {"agent": agent, "max_runs": self.max_runs, "window_s": self.window_s,
                                 "until": until}, until)
            return SetAside("budget", detail, retry_at=until)
        return None

    def commit(self, agents: Iterable[str]) -> None:
        now = self._clock()
        for agent in agents:
            self.map.setdefault(agent, deque).append(now)


class LoopGuard:
    """Refuses chains deeper than `max_depth`, and a playbook re-triggered by events its own runs emitted
    more than `max_self` times per `window_s`. Remembers the last `memory` emitted ids (bounded). Only the
    engine sets `chain` (intake refuses it from outside), so no outside event can trip this guard."""

    def __init__(self, clock: Callable[[], float], max_depth: int = 8, max_self: int = 3,
                 window_s: float = 600.0, memory: int = 10_000, cap: int = MAX_KEYS) -> None:
        self._clock = clock
        self.max_depth = max_depth
        self.max_self = max_self
        self.window_s = window_s
        self.emitted_by: CappedMap[str, str] = CappedMap("loop_emitted", memory)
        self.map: CappedMap[str, deque[float]] = CappedMap("loop_self_triggers", cap)

    def emitted(self, event_id: str, playbook: str) -> None:
        """Remember that a run of `playbook` emitted `event_id`."""
        self.emitted_by[event_id] = playbook

    def _self_triggered(self, playbook: str, event: dict[str, Any]) -> bool:
        chain = event.get("chain") or []
        return any(self.emitted_by.peek(cause) == playbook for cause in [*chain, event.get("id")])

    def _hits(self, playbook: str, now: float) -> deque[float]:
        hits = self.map.setdefault(playbook, deque)
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        return hits

    def check(self, playbook: str, event: dict[str, Any]) -> SetAside | None:
        chain = event.get("chain") or []
        if len(chain) >= self.max_depth:
            return SetAside("loop", f"event chain is {len(chain)} deep (limit {self.max_depth})",
                            "reactor.loop_detected", {"playbook": playbook, "cause": event.get("id"),
                                                      "depth": len(chain), "why": "chain too deep"})
        if not self._self_triggered(playbook, event):
            return None
        hits = self._hits(playbook, self._clock())
        if len(hits) >= self.max_self:
            return SetAside("loop", f"re-triggered by its own results {len(hits)} times in {self.window_s:.0f}s",
                            "reactor.loop_detected", {"playbook": playbook, "cause": event.get("id"),
                                                      "why": "self-trigger", "count": len(hits)},
                            hits[0] + self.window_s)
        return None

    def commit(self, playbook: str, event: dict[str, Any]) -> None:
        if self._self_triggered(playbook, event):
            now = self._clock()
            self._hits(playbook, now).append(now)


def _key_text(key: Hashable) -> str:
    """The throttle-key part of a coalesce key, as shown in events (`[]` for a playbook's one key)."""
    return str(key[1]) if isinstance(key, tuple) and len(key) > 1 else "[]"


def guards_from_config(reactor: Mapping[str, Any], clock: Callable[[], float]
                       ) -> tuple[LoopGuard, CircuitBreaker, Budget]:
    """The guards of the config's `reactor` section (defaults filled), as the engine builds them."""
    breaker, budget, loop = reactor["breaker"], reactor["budget"], reactor["loop"]
    return (LoopGuard(clock, loop["max_depth"], loop["max_self"], parse_duration(loop["window"])),
            CircuitBreaker(clock, breaker["failures"], parse_duration(breaker["window"]),
                           parse_duration(breaker["cooldown"])),
            Budget(clock, budget["max_runs"], parse_duration(budget["window"])))
