"""Backtest (contract §3): which playbook each stored event would have triggered. Runs no action.

Deterministic: events in store order (day by day, raw and archived, file order within a day), and
each event's own `ts` is the clock, so `sustained` and `throttle` windows, and the guards' (budget,
breaker, loop), are those of the time the events happened. An event without a readable `ts` takes the
time of the one before it. After the matcher, each decision goes through the live engine's admission
(`engine.admission.backtest`): guards and coalescing, with run outcomes taken from the history.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.admission.backtest import Admission
from engine.events import event_time
from engine.playbooks.compiler import Index
from engine.playbooks.matcher import HoldCheck, Match, Matcher

KINDS = ("disabled", "sustained", "throttled", "outranked")  # the matcher's reasons
GUARDS = ("budget", "circuit open", "unknown_agent", "loop", "coalesced")  # admission's: the scheduler's last
HOLDS = ("paused", "stopped", "maintenance", "silenced", "inhibited_by")  # controls: `silenced:<id>` counts as silenced


@dataclass(slots=True)
class Summary:
    """Totals of a replay: per playbook, runs and candidates set aside by kind of reason."""

    playbooks: list[str]
    events: int = 0
    matched: int = 0  # events with at least one candidate
    triggering: int = 0  # events with at least one decision
    fired: Counter[str] = field(default_factory=Counter)
    suppressed: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, match: Match) -> None:
        self.events += 1
        if match.decisions or match.set_aside:
            self.matched += 1
        if match.decisions:
            self.triggering += 1
        for decision in match.decisions:
            self.fired[decision.playbook_id] += 1
        for aside in match.set_aside:
            self.suppressed.setdefault(aside.playbook_id, Counter())[aside.kind.split(":", 1)[0]] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "matched": self.matched, "triggering": self.triggering,
                "runs": sum(self.fired.values()),
                "playbooks": {pid: {"fired": self.fired[pid], "suppressed": dict(self.suppressed.get(pid, {}))}
                              for pid in self.playbooks}}

    def text(self) -> list[str]:
        """A table: one row per playbook, a column per kind of reason."""
        width = max([len("playbook"), *map(len, self.playbooks)])
        columns = [(kind, max(10, len(kind))) for kind in (*KINDS, *HOLDS, *GUARDS)]
        lines = [f"{self.events} events, {self.matched} with candidates, {self.triggering} triggering "
                 f"events, {sum(self.fired.values())} runs",
                 f"{'playbook':<{width}}  {'fired':>7}" + "".join(f"  {kind:>{w}}" for kind, w in columns)]
        for pid in self.playbooks:
            counts = self.suppressed.get(pid, Counter())
            lines.append(f"{pid:<{width}}  {self.fired[pid]:>7}"
                         + "".join(f"  {counts[kind]:>{w}}" for kind, w in columns))
        return lines


class EventClock:
    """The replay's clock: the time of the event being replayed, for what asks a clock (the controls)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay(events: Iterable[dict[str, Any]], index: Index, summary: Summary, admission: Admission, *,
           hold: HoldCheck | None = None, disabled: Callable[[str], Any] | None = None,
           observers: Iterable[Callable[[dict[str, Any]], None]] = (),
           clock: EventClock | None = None) -> Iterator[tuple[dict[str, Any], Match]]:
    """Each event that has candidates, with what runs for it once admitted; every event is counted in `summary`.
    `admission` and the `observers` (the controls folding `control.*` events, inhibitions folding problems)
    learn from every event before the matcher sees it; `hold` and `disabled` are the engine's controls."""
    matcher = Matcher(index, disabled=disabled, hold=hold)
    observers = tuple(observers)
    clock = clock or EventClock()
    for event in events:
        now = clock.now = event_time(event, clock.now)
        for observe in observers:
            observe(event)
        admission.observe(event, now)
        match = admission.admit(matcher.match(event, now), event)
        summary.add(match)
        if match.decisions or match.set_aside:
            yield event, match


def json_records(match: Match) -> list[dict[str, Any]]:
    """§3: one object per decision that runs; when none, one with `"playbook": null` and the best candidate's
    reason (a guard's too: `budget`, `circuit open`, `unknown_agent`, `loop`, `coalesced`)."""
    if not match.decisions:
        return [{"event": match.event_id, "type": match.event_type, "playbook": None, "reason": match.reason}]
    return [{"event": match.event_id, "type": match.event_type, "playbook": d.playbook_id, "priority": d.priority,
             "confidence": d.confidence} for d in match.decisions]


def text_lines(event: dict[str, Any], match: Match) -> list[str]:
    """`ts  id  type  -> playbook (P1, 0.9)`, with the candidates set aside after the winner."""
    head = f"{event.get('ts', '-')}  {match.event_id}  {match.event_type}"
    if not match.decisions:
        return [f"{head}  -> none ({match.reason})"]
    aside = "; ".join(f"{s.playbook_id}: {s.reason}" for s in match.set_aside)
    lines = [f"{head}  -> {d.playbook_id} ({d.priority}, {d.confidence}"
             f"{'' if d.exclusive else ', beside'})" for d in match.decisions]
    if aside:
        lines[-1] += f"  [set aside: {aside}]"
    return lines
