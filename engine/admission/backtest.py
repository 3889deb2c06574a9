"""The live engine's admission over a recorded history, for `replay`: guards, then coalescing.

Each decision of the matcher goes through `check_guards` (unknown agent, loop, breaker, budget: the
dispatcher's own function, in its order) and then through the scheduler's coalescing (one run going and
one waiting per coalesce key), and spends what it spends with `commit_guards` once accepted, all with the
replay time as the guards' clock. Replay runs no action, so what only runs can tell comes from the
history itself (the engine stores its own events):

- the breaker counts the recorded outcomes (`reactor.succeeded`, `reactor.failed`; a `reactor.rolled_back`
  that ends a run without a failure before it is the engine's error, counted by nothing), at their time;
- a coalesce key is held by the runs the history shows accepted (`scheduler.decision` queued or waiting,
  `reactor.started`) until they end (first outcome event, or a `displaced`/`dropped` decision), and by
  replay's own accepted decisions: one the history shows accepted becomes that run; one it shows refused
  (another outcome for the same playbook and cause) ends at once; one it never shows holds its key for
  `UNRECORDED_HOLD_S` (its live decision is stored just after the event, and a run nobody recorded has no
  known length);
- a run that starts ends the hold of the runs of its key accepted before it that never started (a queue
  lost when the engine was killed: they never ran);
- the loop guard learns which playbook emitted each run event (`data.playbook` with `data.run_id`).

A recorded run's coalesce key comes from its cause event (`data.cause`), remembered among the last
`RECENT_EVENTS` events of a type some replayed playbook is `on`; a run whose cause is not remembered
(before `--since`, or of a type no replayed playbook handles) is not counted. The scheduler's `queue_full`
and `stopping` are not replayed.
"""
from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.admission.dispatch import check_guards, commit_guards
from engine.admission.guards import MAX_KEYS, guards_from_config
from engine.admission.scheduler import ACCEPTED
from engine.capped import CappedMap
from engine.playbooks import matcher
from engine.playbooks.compiler import Index
from engine.playbooks.matcher import Decision, Match, key_text

RECENT_EVENTS = 100_000  # cause events remembered, and run ids known
UNRECORDED_HOLD_S = 5.0
ENDS = ("reactor.succeeded", "reactor.failed", "reactor.rolled_back")
UNCOUNTED = ("cancelled", "error", "abandoned")  # `reactor.failed` statuses that are no failed fix
GONE = ("displaced", "dropped")  # decisions about an accepted run that will not run


@dataclass(slots=True)
class _Run:
    """A run holding its coalesce key: replay's own (no `run_id` yet) or one the history recorded."""

    cause: Any
    at: float
    run_id: str | None = None
    started: bool = False


class Admission:
    """Feed every event to `observe` (in store order, with its time), then `admit` its match."""

    def __init__(self, index: Index, reactor: Mapping[str, Any], declared: Collection[str]) -> None:
        self.now = 0.0
        self.index = index
        self.declared = frozenset(declared)
        self.loop, self.breaker, self.budget = guards_from_config(reactor, lambda: self.now)
        self._types = {t for playbook in index.playbooks.values() for t in playbook.on}
        self._recent: CappedMap[str, dict[str, Any]] = CappedMap("replay_causes", RECENT_EVENTS)
        self._keys: CappedMap[Hashable, list[_Run]] = CappedMap("replay_runs", MAX_KEYS)
        self._run_keys: CappedMap[str, Hashable] = CappedMap("replay_run_ids", RECENT_EVENTS)
        self._ended: CappedMap[str, bool] = CappedMap("replay_ended", RECENT_EVENTS)

    # -- the history --------------------------------------------------------------------------------
    def observe(self, event: dict[str, Any], now: float) -> None:
        """Remember `event` as a possible cause, and learn from it when it is one of the engine's records."""
        self.now = now
        event_id, type_, data = event.get("id"), event.get("type"), event.get("data")
        if isinstance(event_id, str) and type_ in self._types:
            self._recent[event_id] = event
        if not isinstance(data, dict):
            return
        run_id, playbook = data.get("run_id"), data.get("playbook")
        if type_ == "scheduler.decision":
            self._decision(data)
            return
        if not isinstance(run_id, str) or not isinstance(playbook, str):
            return
        if type_ == "reactor.started":
            self._started(run_id, self._key_of(data), data.get("cause"))
        elif type_ in ENDS:
            self._end(run_id, self._key_of(data), type_, data.get("status"))
        if isinstance(event_id, str):  # a run's own event: the loop guard knows it as that playbook's result
            self.loop.emitted(event_id, playbook)

    def _key_of(self, data: dict[str, Any]) -> Hashable | None:
        """The coalesce key of a recorded run, from its playbook (as replayed) and its cause event."""
        playbook = self.index.playbooks.get(data.get("playbook"))  # type: ignore[arg-type]
        cause = self._recent.peek(data["cause"]) if isinstance(data.get("cause"), str) else None
        if playbook is None or cause is None:
            return None
        return (playbook.id, key_text(playbook, cause))

    def _decision(self, data: dict[str, Any]) -> None:
        outcome, run_id, cause = data.get("outcome"), data.get("run_id"), data.get("cause")
        if outcome in GONE and isinstance(run_id, str):
            self._forget(run_id)
            return
        key = self._key_of(data) if isinstance(data.get("playbook"), str) else None
        if key is None:
            return
        if outcome in ACCEPTED and isinstance(run_id, str):
            self._recorded(key, run_id, None if data.get("redecision") else cause)
        elif not data.get("redecision"):  # the live engine did not run what replay may have: no known length
            runs = self._keys.peek(key) or []
            self._keys[key] = [r for r in runs if r.run_id is not None or r.cause != cause]

    def _recorded(self, key: Hashable, run_id: str, cause: Any) -> _Run:
        """The run `run_id` of `key`: known already, replay's own for the same cause, or a new one."""
        runs = self._keys.setdefault(key, list)
        run = next((r for r in runs if r.run_id == run_id), None)
        if run is None:
            run = next((r for r in runs if r.run_id is None and cause is not None and r.cause == cause), None)
        if run is None:
            run = _Run(cause, self.now)
            runs.append(run)
        run.run_id = run_id
        self._run_keys[run_id] = key
        return run

    def _started(self, run_id: str, key: Hashable | None, cause: Any) -> None:
        key = self._run_keys.peek(run_id) or key
        if key is None:
            return
        run = self._recorded(key, run_id, cause)
        run.started = True
        runs = self._keys.peek(key) or []
        at = runs.index(run)  # the runs of its key accepted before it that never started never will
        self._keys[key] = [r for r in runs[:at] if r.started] + runs[at:]

    def _end(self, run_id: str, key: Hashable | None, type_: str, status: Any) -> None:
        if run_id in self._ended:  # a rollback after the failure: one outcome per run
            return
        self._ended[run_id] = True
        key = self._run_keys.peek(run_id) or key
        self._forget(run_id)
        if key is None or type_ == "reactor.rolled_back":
            return
        if type_ == "reactor.succeeded":
            self.breaker.record(key, True)
        elif status not in UNCOUNTED:
            self.breaker.record(key, False)

    def _forget(self, run_id: str) -> None:
        key = self._run_keys.pop(run_id)
        runs = self._keys.peek(key) if key is not None else None
        if runs is not None:
            runs[:] = [r for r in runs if r.run_id != run_id]

    # -- decisions ----------------------------------------------------------------------------------
    def admit(self, match: Match, event: dict[str, Any]) -> Match:
        """`match` with each decision a guard or coalescing sets aside moved to its candidates set aside."""
        if not match.decisions:
            return match
        kept, aside = [], list(match.set_aside)
        for decision in match.decisions:
            reason, retry_at = self._place(decision, event)
            if reason is None:
                kept.append(decision)
            else:
                aside.append(matcher.SetAside(decision.playbook_id, reason, reason, decision.confidence,
                                              decision.coalesce_key[1], retry_at, decision.playbook))
        aside.sort(key=lambda s: (-s.confidence, s.playbook_id))
        return Match(match.event_id, match.event_type, tuple(kept), tuple(aside))

    def _place(self, decision: Decision, event: dict[str, Any]) -> tuple[str | None, float | None]:
        """Why `decision` is set aside (and when that lapses), or None when it runs (its guards spent)."""
        playbook, key = decision.playbook, decision.coalesce_key
        aside, touched = check_guards(playbook, event, key, self.declared, self.loop, self.breaker, self.budget)
        if aside is not None:
            return aside.reason, aside.retry_at
        runs = [r for r in self._keys.peek(key) or () if r.run_id is not None or self.now - r.at <= UNRECORDED_HOLD_S]
        if len(runs) >= 2:  # one going and one waiting
            self._keys[key] = runs
            return "coalesced", None
        self._keys[key] = [*runs, _Run(event.get("id"), self.now)]
        commit_guards(playbook, event, key, touched, self.loop, self.breaker, self.budget)
        return None, None
