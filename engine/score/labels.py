"""Labels: was a degradation real? Operators say so (`feedback`), and outcomes say so by themselves.

Labels are what weight tuning learns from (engine/score/tuning.py). They are appended, fsynced, one JSON
object per line to `data/score/labels.jsonl`; a torn last line (a crash mid-append) is skipped when read.
An operator's label for an event always wins over the automatic one (docs/score.md, "Labels and tuning").
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from engine.capped import CappedMap
from engine.events import event_time, format_ts
from engine.osutil.files import fsync_dir

log = logging.getLogger("aios.score")

WINDOW_S = 600.0  # evidence counts within ±10 min of a degradation; it is decided 10 min after it
MAX_PENDING = 10_000  # agents with degradations waiting
MAX_AGENTS = 20_000
SELF_KIND = "score-degraded"  # the problem a degradation opens itself is no evidence either way
FAULT_TYPES = ("agent.down", "agent.error", "resource.agent_cpu", "resource.agent_memory")


def label_record(*, agent: str, at: float, label: bool, source: str, components: dict[str, float] | None,
                 event: str | None = None, now: float) -> dict[str, Any]:
    """One line of labels.jsonl."""
    return {"ts": format_ts(now), "agent": agent, "at": format_ts(at), "label": bool(label), "source": source,
            "event": event, "components": dict(components or {})}


class LabelFile:
    """`data/score/labels.jsonl`. Blocking: call from a thread in async code."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "score" / "labels.jsonl"

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(record) + b"\n" for record in records)
        if not data:
            return
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line: the new ones start afresh
                data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.path.parent)

    def load(self) -> list[dict[str, Any]]:
        """Every readable label, in file order; damaged lines are logged and skipped."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        found = []
        for number, line in enumerate(raw.splitlines(), 1):
            try:
                record = orjson.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("agent"), str) \
                        or not isinstance(record.get("label"), bool) or not isinstance(record.get("at"), str):
                    raise ValueError("not a label object (agent, at, label)")
                found.append(record)
            except ValueError as exc:
                log.warning("label line skipped", extra={"file": f"{self.path}:{number}", "error": str(exc)})
        return found


def effective(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The labels that count: per event (or, for a missed degradation, per agent and moment) the operator's
    latest label, else the automatic one."""
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (record["agent"], str(record.get("event") or record.get("at")))
        held = chosen.get(key)
        if held is None or record.get("source") != "auto" or held.get("source") == "auto":
            chosen[key] = record
    return list(chosen.values())


class AutoLabeler:
    """Labels each `score.degraded` WINDOW_S after it: true when a problem of another kind opened for the
    agent, or a run for it failed, within ±WINDOW_S; false when nothing at all went wrong for it in that
    window (no problem, no `agent.down`/`agent.error`, no failed task, no resource alert); otherwise it
    stays unlabelled (a fault that needed no fix says nothing either way)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        # per agent: its degradations waiting for their window to pass, event id -> what was seen
        self.pending: CappedMap[str, dict[str, dict[str, Any]]] = CappedMap("score_label_pending", MAX_PENDING)
        self._last: CappedMap[str, dict[str, float]] = CappedMap("score_label_evidence", MAX_AGENTS)
        self.dropped = 0  # degradations left unlabelled by the per-agent cap (/metrics)
        self.known: set[str] = set()  # ids labelled before a restart: not labelled again (set by the rebuild)

    def fold(self, event: dict[str, Any]) -> None:
        agent, event_type = event.get("agent"), event.get("type")
        if not isinstance(agent, str) or not isinstance(event_type, str):
            return
        at = event_time(event, self._clock())
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if event_type == "score.degraded" and isinstance(event.get("id"), str):
            if event["id"] in self.known:
                return
            last = self._last.peek(agent) or {}
            components = data.get("components") if isinstance(data.get("components"), dict) else {}
            waiting = self.pending.setdefault(agent, dict)
            waiting[event["id"]] = {"at": at, "components": components,
                                    "problem": at - last.get("problem", -1e18) <= WINDOW_S,
                                    "fault": at - last.get("fault", -1e18) <= WINDOW_S}
            while len(waiting) > 100:  # one agent degrading in a loop: its oldest go unlabelled (counted)
                del waiting[next(iter(waiting))]
                self.dropped += 1
            return
        evidence = _evidence(event_type, data)
        if evidence is None:
            return
        last = self._last.setdefault(agent, dict)
        last[evidence] = max(at, last.get(evidence, at))
        for item in (self.pending.peek(agent) or {}).values():
            if abs(at - item["at"]) <= WINDOW_S:
                item[evidence] = True
                item["fault"] = True

    def capped_maps(self) -> tuple[CappedMap[str, Any], ...]:
        return self.pending, self._last

    def due(self, now: float | None = None) -> list[dict[str, Any]]:
        """The labels decided by now (each degradation once)."""
        now = self._clock() if now is None else now
        out = []
        for agent in list(self.pending):
            waiting = self.pending.peek(agent) or {}
            for event_id in [k for k, item in waiting.items() if now - item["at"] >= WINDOW_S]:
                item = waiting.pop(event_id)
                if item["problem"] or not item["fault"]:
                    out.append(label_record(agent=agent, at=item["at"], label=item["problem"], source="auto",
                                            components=item["components"], event=event_id, now=now))
            if not waiting:
                self.pending.pop(agent)
        return out


def _evidence(event_type: str, data: dict[str, Any]) -> str | None:
    """"problem" (it needed a fix), "fault" (something went wrong), or None."""
    if event_type == "problem.opened":
        return "problem" if data.get("kind") != SELF_KIND else None
    if event_type == "reactor.failed":
        return "problem"
    if event_type in FAULT_TYPES or (event_type == "agent.task_done" and data.get("ok") is False):
        return "fault"
    return None
