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

State is bounded (`windows.py`): per playbook at most MAX_KEYS throttle-key values in each map, and at
most MAX_MATCH_TIMES sustained match times (so fewer keys for a large `count`); key values longer than
KEY_TEXT_MAX characters are kept as a hash. Expired windows go first; live ones evicted by the cap are
counted in `evictions` (by map: `sustained`, `throttle`). An evicted sustained window only delays a fire
(its key counts again from zero). An evicted throttle lets that key fire once more within its window when
it returns, which takes more than MAX_KEYS other keys of the same playbook firing within that window: a
flood that has already fired MAX_KEYS runs, which the dispatcher's guards (budget, breaker) and the
scheduler's coalescing bound, and which `evictions` shows.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.admission.priorities import decision_priority
from engine.playbooks.compiler import Index
from engine.playbooks.conditions import MISSING, lookup, split_path
from engine.playbooks.model import Playbook, Sustained, Throttle
from engine.playbooks.windows import Windows

SWEEP_EVERY_S = 60.0  # how often state whose windows have passed is dropped
MAX_KEYS = 10_000  # throttle-key values per playbook, in each map (≈ 12 MB of sustained windows at most)
MAX_MATCH_TIMES = 100_000  # sustained match times held per playbook: count × keys
KEY_TEXT_MAX = 256  # a longer key value is kept as its hash (values come from events, up to 64 KB)


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
    """A candidate that does not run for this event. `kind`: disabled, sustained, throttled, outranked.
    `key` is its throttle-key text; `retry_at` (epoch seconds) when the reason lapses, when that is known."""

    playbook_id: str
    kind: str
    reason: str
    confidence: float
    key: str = "[]"
    retry_at: float | None = None
    playbook: Playbook | None = field(default=None, repr=False, compare=False)
    detail: str = ""  # a hold's own sentence (who silenced or paused, until when)


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
    return paths_text(playbook.throttle.key, event)


def paths_text(paths: tuple[str, ...], event: dict[str, Any]) -> str:
    """The values at `paths` in `event` as JSON text (absent: null; sorted keys), a hash when long: the one
    form of a key value, for throttles and problem kinds alike."""
    values = [lookup(event, split_path(path)) for path in paths]
    values = [None if value is MISSING else value for value in values]
    try:
        text = orjson.dumps(values, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # text orjson refuses (lone surrogates) or a value JSON does not have
        text = json.dumps(values, sort_keys=True, default=repr)
    if len(text) > KEY_TEXT_MAX:
        return "#" + hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return text


def sustained_cap(sustained: Sustained) -> int:
    """Keys a playbook's sustained windows may hold: MAX_KEYS, fewer when each holds many match times."""
    return min(MAX_KEYS, max(1, MAX_MATCH_TIMES // sustained.count))


def _lapsed_matches(sustained: Sustained, now: float) -> Callable[[deque[float]], bool]:
    return lambda seen: now - seen[-1] > sustained.within_s


def _lapsed_fire(throttle: Throttle, now: float) -> Callable[[float], bool]:
    return lambda last: now - last >= throttle.within_s


def _best_first(candidate: tuple[Playbook, str]) -> tuple[float, str]:
    return -candidate[0].confidence, candidate[0].id


# (playbook, event) -> (reason code, detail, retry_at) when something holds what would run (a silence, the
# pause, a maintenance window, an inhibition), else None
HoldCheck = Callable[[Playbook, dict[str, Any]], tuple[str, str, float | None] | None]


class Matcher:
    """Decides what each event triggers. Not thread-safe: feed it from one thread (the engine loop)."""

    def __init__(self, index: Index, clock: Callable[[], float] = time.time,
                 disabled: Callable[[str], tuple[str, float | None] | None] | None = None,
                 hold: HoldCheck | None = None) -> None:
        self._index = index
        self._clock = clock
        self._disabled = disabled  # runtime disables (engine/controls): (detail, until) while one holds
        self._hold = hold  # operators' holds and inhibitions, asked for what would run, before it fires
        self._seen: dict[str, Windows[deque[float]]] = {}  # sustained, per playbook id: recent match times
        self._fired: dict[str, Windows[float]] = {}  # throttle, per playbook id: last time fired
        self.evictions: dict[str, int] = {"sustained": 0, "throttle": 0}  # live windows the caps pushed out
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
        return sum(map(len, self._seen.values())) + sum(map(len, self._fired.values()))

    def match(self, event: dict[str, Any], now: float | None = None, *, again: bool = False,
              exclude: frozenset[str] = frozenset()) -> Match:
        """Decisions for `event` at `now` (default: the clock).

        `again`: a re-decision of an event already matched (an open problem's): it does not count toward
        `sustained` a second time. `exclude`: playbooks to skip while another enabled exclusive candidate is
        left (those whose runs already failed for that problem)."""
        candidates = self._index.candidates(event)
        if exclude:
            kept = [p for p in candidates if p.id not in exclude]
            if any(p.exclusive and p.enabled for p in kept):
                candidates = kept
        event_id, event_type = event.get("id"), str(event.get("type", ""))
        if not candidates:
            return Match(event_id, event_type)
        now = self._clock() if now is None else now
        if now >= self._next_sweep:
            self._sweep(now)
        ready: list[tuple[Playbook, str]] = []
        aside: list[SetAside] = []
        for playbook in candidates:
            reason, retry_at = self._hold_back(playbook, key := key_text(playbook, event), now, count=not again)
            if reason is None:
                ready.append((playbook, key))
            else:
                aside.append(SetAside(playbook.id, reason.split(" ", 1)[0], reason, playbook.confidence, key,
                                      retry_at, playbook))
        exclusive = sorted((c for c in ready if c[0].exclusive), key=_best_first)
        running = exclusive[:1] + sorted((c for c in ready if not c[0].exclusive), key=lambda c: c[0].id)
        if exclusive:
            winner = exclusive[0][0].id
            aside.extend(SetAside(p.id, "outranked", f"lower confidence than {winner}", p.confidence, key, None, p)
                         for p, key in exclusive[1:])
        decisions = []
        for playbook, key in running:
            held = self._hold(playbook, event) if self._hold is not None else None
            if held is None:
                decisions.append(self._fire(playbook, key, event, now))
            else:  # not fired: its throttle and sustained count are untouched, so it may run when the hold ends
                aside.append(SetAside(playbook.id, held[0], held[0], playbook.confidence, key, held[2], playbook,
                                      held[1]))
        aside.sort(key=lambda s: (-s.confidence, s.playbook_id))
        return Match(event_id, event_type, tuple(decisions), tuple(aside))

    def _hold_back(self, playbook: Playbook, key: str, now: float,
                   count: bool = True) -> tuple[str | None, float | None]:
        """Why `playbook` cannot run now (after counting this match toward `sustained`, unless not `count`),
        or None; and when that reason lapses, when known."""
        if not playbook.enabled:
            return "disabled", None
        held = self._disabled(playbook.id) if self._disabled is not None else None
        if held is not None:  # "disabled by <who> until <when>: <why>": the kind is still `disabled`
            return held[0], held[1]
        sustained, throttle = playbook.sustained, playbook.throttle
        if sustained is not None and not count:
            windows = self._seen.get(playbook.id)
            seen = windows.get(key) if windows is not None else None
            recent = sum(1 for at in seen or () if now - at <= sustained.within_s)
            if recent < sustained.count:
                return f"sustained {recent}/{sustained.count}", None
        elif sustained is not None:
            windows = self._seen.get(playbook.id)
            if windows is None:
                windows = self._seen[playbook.id] = Windows(sustained_cap(sustained))
            seen = windows.get(key)
            if seen is None or seen.maxlen != sustained.count:
                seen = deque(seen or (), maxlen=sustained.count)
            seen.append(now)
            while now - seen[0] > sustained.within_s:
                seen.popleft()
            self.evictions["sustained"] += windows.put(key, seen, _lapsed_matches(sustained, now))
            if len(seen) < sustained.count:
                return f"sustained {len(seen)}/{sustained.count}", None
        if throttle is not None:
            fired = self._fired.get(playbook.id)
            last = fired.get(key) if fired is not None else None
            if last is not None and now - last < throttle.within_s:
                return "throttled", last + throttle.within_s
        return None, None

    def _fire(self, playbook: Playbook, key: str, event: dict[str, Any], now: float) -> Decision:
        windows = self._seen.get(playbook.id)
        if windows is not None:
            windows.pop(key)
        if playbook.throttle is not None:
            fired = self._fired.get(playbook.id)
            if fired is None:
                fired = self._fired[playbook.id] = Windows(MAX_KEYS)
            self.evictions["throttle"] += fired.put(key, now, _lapsed_fire(playbook.throttle, now))
        return Decision(playbook.id, decision_priority(playbook.priority, event), playbook.confidence,
                        playbook.exclusive, event.get("id"), (playbook.id, key), playbook)

    def _sweep(self, now: float | None) -> None:
        """Drop state of playbooks gone from the index (or that no longer keep it) and, given `now`, the
        windows that have passed; a playbook whose `count` changed gets its new cap."""
        playbooks = self._index.playbooks
        for pid, seen in list(self._seen.items()):
            sustained = getattr(playbooks.get(pid), "sustained", None)
            if sustained is None:
                del self._seen[pid]
            elif now is not None:
                seen.expire(_lapsed_matches(sustained, now))
                if not len(seen):
                    del self._seen[pid]
            elif seen.cap != sustained_cap(sustained):
                self.evictions["sustained"] += seen.resize(sustained_cap(sustained), lambda _: False)
        for pid, fired in list(self._fired.items()):
            throttle = getattr(playbooks.get(pid), "throttle", None)
            if throttle is None:
                del self._fired[pid]
            elif now is not None:
                fired.expire(_lapsed_fire(throttle, now))
                if not len(fired):
                    del self._fired[pid]
        if now is not None:
            self._next_sweep = now + SWEEP_EVERY_S
