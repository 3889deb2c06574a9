"""From an event to decisions: candidates → enabled → sustained → throttle → best by confidence.

The compiled index says which playbooks' `on` + `when` hold; this module applies the contract's §2
rules with an injected clock, so tests and `replay` (event time as the clock) get the same answers as
the live engine:
- every enabled candidate counts toward its `sustained` window, whether or not it wins; the count
  resets when the playbook fires. Counts and throttles are kept per value of the throttle `key`;
- the throttle window starts when the playbook last fired;
- of the exclusive candidates left, the highest confidence runs (ties: the smaller id); every
  non-exclusive one left runs beside it;
- each candidate set aside gets a reason: `disabled`, `sustained 1/2`, `throttled`,
  `lower confidence than <id>`.
Windows: a match `within` seconds old still counts; a playbook fired `within` seconds ago may fire again.
"""
from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.playbooks.compiler import Index
from engine.playbooks.conditions import MISSING, lookup, split_path
from engine.playbooks.model import Playbook
from engine.admission.priorities import decision_priority

SWEEP_EVERY_S = 60.0  # how often state whose windows have passed is dropped


@dataclass(frozen=True, slots=True)
class Decision:
    """Run `playbook_id` because of event `cause`. `coalesce_key` is (playbook id, throttle-key value as
    JSON text): the scheduler keeps one run going and one waiting per key."""

    playbook_id: str
    priority: str
    confidence: float
    exclusive: bool
    cause: str | None
    coalesce_key: tuple[str, str]
    playbook: Playbook = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class SetAside:
    """A candidate that does not run for this event. `kind`: disabled, sustained, throttled, outranked."""

    playbook_id: str
    kind: str
    reason: str
    confidence: float


@dataclass(frozen=True, slots=True)
class Match:
    """What one event triggers: decisions (the winner first) and the candidates set aside."""

    event_id: str | None
    event_type: str
    decisions: tuple[Decision, ...] = ()
    set_aside: tuple[SetAside, ...] = ()

    @property
    def reason(self) -> str | None:
        """Why nothing runs: the reason of the best candidate set aside (None when something runs)."""
        if self.decisions or not self.set_aside:
            return None
        return self.set_aside[0].reason


def key_text(playbook: Playbook, event: dict[str, Any]) -> str:
    """The throttle-key value of `event` for `playbook`, as JSON text (`[]` for the one global key)."""
    if playbook.throttle is None or not playbook.throttle.key:
        return "[]"
    values = [lookup(event, split_path(path)) for path in playbook.throttle.key]
    values = [None if value is MISSING else value for value in values]
    try:
        return orjson.dumps(values, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # text orjson refuses (lone surrogates) or a value JSON does not have
        return json.dumps(values, sort_keys=True, default=repr)


def _best_first(candidate: tuple[Playbook, str]) -> tuple[float, str]:
    return -candidate[0].confidence, candidate[0].id


class Matcher:
    """Decides what each event triggers. Not thread-safe: feed it from one thread (the engine loop)."""

    def __init__(self, index: Index, clock: Callable[[], float] = time.time) -> None:
        self._index = index
        self._clock = clock
        self._seen: dict[tuple[str, str], deque[float]] = {}  # sustained: recent match times
        self._fired: dict[tuple[str, str], float] = {}  # throttle: last time fired
        self._next_sweep = float("-inf")

    @property
    def index(self) -> Index:
        return self._index

    @index.setter
    def index(self, index: Index) -> None:
        """Swap in a reloaded index; state of playbooks that remain (by id) is kept."""
        self._index = index
        self._sweep(None)

    @property
    def tracked(self) -> int:
        """Sustained and throttle windows held (per playbook and key value): a gauge for /metrics."""
        return len(self._seen) + len(self._fired)

    def match(self, event: dict[str, Any], now: float | None = None) -> Match:
        """Decisions for `event` at `now` (default: the clock)."""
        candidates = self._index.candidates(event)
        event_id, event_type = event.get("id"), str(event.get("type", ""))
        if not candidates:
            return Match(event_id, event_type)
        now = self._clock() if now is None else now
        if now >= self._next_sweep:
            self._sweep(now)
        ready: list[tuple[Playbook, str]] = []
        aside: list[SetAside] = []
        for playbook in candidates:
            reason = self._hold_back(playbook, key := key_text(playbook, event), now)
            if reason is None:
                ready.append((playbook, key))
            else:
                aside.append(SetAside(playbook.id, reason.split(" ", 1)[0], reason, playbook.confidence))
        exclusive = sorted((c for c in ready if c[0].exclusive), key=_best_first)
        running = exclusive[:1] + sorted((c for c in ready if not c[0].exclusive), key=lambda c: c[0].id)
        if exclusive:
            winner = exclusive[0][0].id
            aside.extend(SetAside(p.id, "outranked", f"lower confidence than {winner}", p.confidence)
                         for p, _ in exclusive[1:])
        decisions = tuple(self._fire(playbook, key, event, now) for playbook, key in running)
        aside.sort(key=lambda s: (-s.confidence, s.playbook_id))
        return Match(event_id, event_type, decisions, tuple(aside))

    def _hold_back(self, playbook: Playbook, key: str, now: float) -> str | None:
        """Why `playbook` cannot run now (after counting this match toward `sustained`), or None."""
        if not playbook.enabled:
            return "disabled"
        slot = (playbook.id, key)
        if playbook.sustained is not None:
            count, within = playbook.sustained.count, playbook.sustained.within_s
            seen = self._seen.get(slot)
            if seen is None or seen.maxlen != count:
                seen = self._seen[slot] = deque(seen or (), maxlen=count)
            seen.append(now)
            while now - seen[0] > within:
                seen.popleft()
            if len(seen) < count:
                return f"sustained {len(seen)}/{count}"
        if playbook.throttle is not None:
            last = self._fired.get(slot)
            if last is not None and now - last < playbook.throttle.within_s:
                return "throttled"
        return None

    def _fire(self, playbook: Playbook, key: str, event: dict[str, Any], now: float) -> Decision:
        slot = (playbook.id, key)
        self._seen.pop(slot, None)
        if playbook.throttle is not None:
            self._fired[slot] = now
        return Decision(playbook.id, decision_priority(playbook.priority, event), playbook.confidence,
                        playbook.exclusive, event.get("id"), slot, playbook)

    def _sweep(self, now: float | None) -> None:
        """Drop state of playbooks gone from the index and, given `now`, of windows that have passed."""
        playbooks = self._index.playbooks
        for slot, seen in list(self._seen.items()):
            playbook = playbooks.get(slot[0])
            if playbook is None or playbook.sustained is None or (
                    now is not None and now - seen[-1] > playbook.sustained.within_s):
                del self._seen[slot]
        for slot, last in list(self._fired.items()):
            playbook = playbooks.get(slot[0])
            if playbook is None or playbook.throttle is None or (
                    now is not None and now - last >= playbook.throttle.within_s):
                del self._fired[slot]
        if now is not None:
            self._next_sweep = now + SWEEP_EVERY_S
