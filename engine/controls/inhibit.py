"""Inhibition (`inhibited_by` in a playbook): hold a fix off while a bigger fault is being dealt with.

A restart of an agent is pointless while the disk is full; a playbook says so with
`inhibited_by: [{problem: disk-full, same: [host]}]` (an open problem of that kind) or
`[{event: resource.disk_full, where: {...}, within: 10m}]` (a recent event). While one holds, its decisions
are set aside with `inhibited_by:<problem id>` (decided again when that problem resolves: the problem book
lifts it on `problem.resolved`) or `inhibited_by:<event id>` (with `retry_at` when the window passes).

Folded from the stored stream like the problem book (`observe`, synchronous, a dict update per event):
the open problems by kind, and per (playbook, inhibitor) the latest matching event. Both maps are capped.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.admission.guards import SetAside
from engine.capped import CappedMap
from engine.events import event_time
from engine.playbooks.conditions import holds
from engine.playbooks.model import Inhibitor, Playbook
from engine.playbooks.templates import resolve

MAX_PROBLEMS = 2_000  # as the problem book's open problems
MAX_EVENTS = 10_000


class Inhibitions:
    def __init__(self, is_open: Callable[[str], bool] = lambda problem_id: True) -> None:
        self._is_open = is_open  # the problem book's answer: a problem withdrawn or forgotten says nothing
        self.problems: CappedMap[str, tuple[str, dict[str, Any]]] = CappedMap("inhibit_problems", MAX_PROBLEMS)
        self.events: CappedMap[tuple[str, int], dict[str, Any]] = CappedMap("inhibit_events", MAX_EVENTS)
        self._by_type: dict[str, list[tuple[str, int, Inhibitor]]] = {}

    def set_playbooks(self, playbooks: Mapping[str, Playbook]) -> None:
        """The loaded playbooks (after each reload): which event types to watch for whom."""
        by_type: dict[str, list[tuple[str, int, Inhibitor]]] = {}
        for playbook in playbooks.values():
            for index, inhibitor in enumerate(playbook.inhibited_by):
                if inhibitor.event:
                    by_type.setdefault(inhibitor.event, []).append((playbook.id, index, inhibitor))
        self._by_type = by_type

    def seed(self, open_problems: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        """The problems open at start (id, kind, subject), read from their files by the problem book."""
        for problem_id, kind, subject in open_problems:
            self.problems[problem_id] = (kind, dict(subject))

    def observe(self, event: dict[str, Any]) -> None:
        event_type = event.get("type")
        data = event.get("data") or {}
        if event_type == "problem.opened" and isinstance(data.get("problem"), str):
            self.problems[data["problem"]] = (str(data.get("kind")), dict(data.get("subject") or {}))
        elif event_type == "problem.resolved" and isinstance(data.get("problem"), str):
            self.problems.pop(data["problem"])
        for playbook_id, index, inhibitor in self._by_type.get(str(event_type), ()):
            if all(holds(condition, event) for condition in inhibitor.where):
                self.events[(playbook_id, index)] = event

    def check(self, playbook: Playbook, event: dict[str, Any], now: float) -> SetAside | None:
        """Why `playbook` holds off for `event` now (None: nothing inhibits it)."""
        for index, inhibitor in enumerate(playbook.inhibited_by):
            if inhibitor.problem:
                for problem_id in list(self.problems):
                    kind, subject = self.problems.peek(problem_id)  # type: ignore[misc]
                    if kind == inhibitor.problem and not self._is_open(problem_id):
                        self.problems.pop(problem_id)  # closed without a problem.resolved (withdrawn, forgotten)
                        continue
                    if kind == inhibitor.problem and _same(inhibitor.same, subject.get, event):
                        return SetAside(f"inhibited_by:{problem_id}", f"held off while problem {problem_id} "
                                        f"({kind} {_subject(subject)}) is open")
                continue
            seen = self.events.peek((playbook.id, index))
            if seen is None:
                continue
            until = event_time(seen, now) + inhibitor.within_s
            if now < until and _same(inhibitor.same, lambda path: _value(seen, path), event):
                return SetAside(f"inhibited_by:{seen.get('id')}", f"held off for {inhibitor.within_s:g}s after "
                                f"{inhibitor.event} {seen.get('id')}", retry_at=until)
        return None


def _value(event: Mapping[str, Any], path: str) -> Any:
    try:
        return resolve(event, path)
    except KeyError:
        return None


def _same(paths: tuple[str, ...], inhibitor_value: Any, event: Mapping[str, Any]) -> bool:
    return all(inhibitor_value(path) == _value(event, path) for path in paths)


def _subject(subject: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(subject.items()))
