"""Undoing a finished run on request (`aios-engine rollback`, `POST /api/runs/{id}/rollback`).

Only the files come back: the snapshot is restored and the restore is added to the run's record.
The playbook's `rollback` steps belong to the engine's automatic rollback after a failed run, which
calls `Snapshot.restore()` itself. The caller holds the data-directory lock (or is the engine).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from engine.events import format_ts
from engine.reactor.records import RollbackEntry, RunStore
from engine.reactor.snapshot import Snapshot, SnapshotError, SnapshotMissing

SHOWN_PATHS = 10


class RollbackRefused(Exception):
    """The run cannot be rolled back as asked; `changed` lists the files changed since it finished."""

    def __init__(self, message: str, changed: list[str] | None = None) -> None:
        super().__init__(message)
        self.changed = changed or []


def rollback_run(data_dir: str | Path, run_id: str, force: bool = False, *, by: str = "cli",
                 clock: Callable[[], float] = time.time) -> list[str]:
    """Restore the snapshot of finished run `run_id`; returns the paths changed.

    Refused while the run is going, when it has no snapshot, and, unless `force`, when any
    captured file changed since the run finished (someone fixed it by hand: don't undo that
    silently). Raises KeyError for an unknown run, RecordError/SnapshotError for damaged files.
    """
    store = RunStore(data_dir)
    record = store.get(run_id)
    if record.status == "running":
        raise RollbackRefused(f"run {run_id} is still running; roll it back once it has finished")
    try:
        snapshot = Snapshot.load(data_dir, run_id, clock)
    except SnapshotMissing:
        deleted = (record.snapshot or {}).get("deleted")
        why = f"its snapshot was deleted by retention at {deleted}" if deleted else "it took no snapshot"
        raise RollbackRefused(f"run {run_id} cannot be rolled back: {why}") from None
    if not force:
        _check_unchanged(snapshot, record.rollbacks[-1] if record.rollbacks else None)
    paths = snapshot.restore()
    record.rollbacks.append(RollbackEntry(format_ts(clock()), by, force, paths))
    store.save(record)
    return paths


def _check_unchanged(snapshot: Snapshot, last: RollbackEntry | None) -> None:
    try:
        changed = snapshot.changed_since_seal()
    except SnapshotError as exc:
        raise RollbackRefused(f"{exc}; use --force to restore anyway") from None
    if not changed:
        return
    shown = ", ".join(changed[:SHOWN_PATHS]) + (f" and {len(changed) - SHOWN_PATHS} more"
                                                if len(changed) > SHOWN_PATHS else "")
    earlier = f" (it was already rolled back at {last.at} by {last.by})" if last else ""
    raise RollbackRefused(f"files changed since run {snapshot.run_id} finished{earlier}: {shown}; "
                          "use --force to restore the snapshot anyway", changed)
