"""The run journal: `data/runs/<run_id>/journal.jsonl`, one fsynced line per state change.

It is what makes runs transactional across crashes: at start-up the reactor reads the journals that
have no `end` line. A run that was waiting for a retry resumes; a run that was inside a step has the
processes it recorded killed and is rolled back. Entries (`t` is the kind):
`start` (playbook, event, priority), `step` (id, attempt, started), `pid` (step, attempt, pid; for the
record: recovery finds a step's processes by the marker its `step` line implies),
`result` (step, attempt, status, exit_code, stdout tail…), `wait` (step, attempt, until),
`approval` (step, attempt, message, requested_at, expires_at: an `approve` step waits for a person),
`answer` (step, approved, by, reason), `skip` (step), `cancel` (by, reason: written before the cancel
acts), `end` (status). A run caught waiting for an approval is not caught inside a step: nothing of it
runs, so the next engine goes on waiting, with the same expiry (and takes an answer already given as
given). A run with a `cancel` line finishes its cancel at the next start, once: the steps that succeeded
after the line (rollback steps) are not run again.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engine.osutil.files import fsync_dir
from engine.store.layout import iter_lines


class Journal:
    """Append-only, fsynced after every entry: a crash loses nothing the run already did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if new:
            fsync_dir(path.parent)

    def write(self, kind: str, **fields: Any) -> None:
        os.write(self._fd, orjson.dumps({"t": kind, **fields}) + b"\n")
        os.fsync(self._fd)

    async def awrite(self, kind: str, **fields: Any) -> None:
        """`write` off the event loop: an fsync must not stall every other run and the intake."""
        await asyncio.to_thread(self.write, kind, **fields)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(slots=True)
class JournalState:
    """What an unfinished run had done when the engine stopped."""

    run_id: str
    start: dict[str, Any]
    results: dict[str, dict[str, Any]]  # last result per step
    in_step: dict[str, int]  # steps started and not finished: step -> attempt
    waiting: dict[str, dict[str, Any]]  # steps waiting for a retry: step -> the wait entry
    skipped: set[str]
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)  # approve steps: step -> approval entry
    cancel: dict[str, Any] | None = None  # the `cancel` entry (by, reason): the run was being cancelled
    done_since_cancel: set[str] = field(default_factory=set)  # steps that succeeded after the cancel line

    @property
    def markers(self) -> list[str]:
        """The process markers of the steps caught running (`engine.actions.process.run_mark`)."""
        return [f"{self.run_id}/{step}/{attempt}" for step, attempt in self.in_step.items()]

    @property
    def crashed_in_step(self) -> bool:
        return bool(self.in_step)


def read_state(path: Path) -> JournalState | None:
    """The state of the run whose journal is `path`, or None if it ended (or never really started)."""
    entries = []
    for line in iter_lines(path):
        try:
            entries.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    if not entries or entries[0].get("t") != "start" or any(e.get("t") == "end" for e in entries):
        return None
    state = JournalState(path.parent.name, entries[0], {}, {}, {}, set())
    for entry in entries[1:]:
        kind, step = entry.get("t"), entry.get("step")
        if kind == "step":
            state.in_step[step] = entry["attempt"]
            state.waiting.pop(step, None)
        elif kind == "result":
            state.in_step.pop(step, None)
            state.approvals.pop(step, None)
            state.results[step] = entry
            if state.cancel is not None and entry.get("ok"):
                state.done_since_cancel.add(step)
        elif kind == "cancel" and state.cancel is None:
            state.cancel = {"by": entry.get("by"), "reason": entry.get("reason")}
        elif kind == "approval":
            state.in_step.pop(step, None)  # waiting for a person runs nothing
            state.approvals[step] = {**state.approvals.get(step, {}), **entry}
        elif kind == "answer" and step in state.approvals:
            state.approvals[step]["answer"] = {k: entry.get(k) for k in ("approved", "by", "reason")}
        elif kind == "wait":
            state.waiting[step] = entry
        elif kind == "skip":
            state.skipped.add(step)
    return state


def start_entry(path: Path) -> dict[str, Any] | None:
    """The `start` line of a journal (playbook, event, priority, key), finished or not; None without one."""
    if not path.is_file():
        return None
    for line in iter_lines(path):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        return entry if isinstance(entry, dict) and entry.get("t") == "start" else None
    return None


def unfinished(runs_dir: Path) -> Iterator[JournalState]:
    """Every run under `runs_dir` whose journal has no `end`, oldest first (run ids sort by time)."""
    if not runs_dir.is_dir():
        return
    for name in sorted(os.listdir(runs_dir)):
        journal = runs_dir / name / "journal.jsonl"
        if journal.is_file():
            state = read_state(journal)
            if state is not None:
                yield state
