"""Run records: what a run did, kept as `data/runs/<run_id>/record.json` for `aios-engine runs`.

The record is the readable account (steps, rendered argv and URLs, exit codes, timings, output
tails, rollbacks); the journal beside it (`journal.jsonl`, the reactor's) is the crash-recovery log.
Records are rewritten atomically, so a reader never sees half of one.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from engine.events import format_ts, parse_ts
from engine.osutil.files import atomic_write, fsync_dir
from engine.reactor.snapshot import Snapshot, SnapshotError, snapshots_dir, valid_run_id

TAIL_BYTES = 4096
STEP_STATUSES = ("pending", "running", "ok", "failed", "timeout", "skipped", "cancelled")
RUN_STATUSES = ("running", "succeeded", "failed", "timeout", "rolled_back", "cancelled")
_DELETING = ".deleting-"


def tail(text: str, limit: int = TAIL_BYTES) -> str:
    """The last `limit` bytes of `text` in UTF-8, cut at a character boundary."""
    raw = text.encode("utf-8", "replace")
    return text if len(raw) <= limit else raw[-limit:].decode("utf-8", "ignore")


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of `data` that `cls` declares: records written by a newer engine still load."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(slots=True)
class Attempt:
    """One try of a step. `detail` is what the action reports (rendered argv, url, status…);
    stdout and stderr keep their last 4 KiB."""

    started: str
    finished: str | None = None
    duration_ms: int | None = None
    ok: bool = False
    exit_code: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""
    error: str | None = None

    def __post_init__(self) -> None:
        self.stdout, self.stderr = tail(self.stdout), tail(self.stderr)


@dataclass(slots=True)
class StepRecord:
    """A step of the playbook (or of its `rollback` list) and its tries, oldest first."""

    id: str
    action: str
    status: str = "pending"
    attempts: list[Attempt] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecord:
        known = _known(cls, data)
        known["attempts"] = [Attempt(**_known(Attempt, a)) for a in data.get("attempts", [])]
        return cls(**known)


@dataclass(slots=True)
class RollbackEntry:
    """One restore of the run's snapshot: automatic after a failure, or asked for later."""

    at: str
    by: str
    forced: bool
    paths: list[str]


@dataclass(slots=True)
class RunRecord:
    """One run of a playbook, from the event that caused it to its outcome."""

    run_id: str
    playbook: str
    cause: str
    cause_type: str
    started: str
    agent: str | None = None
    priority: str | None = None
    status: str = "running"
    finished: str | None = None
    error: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    rollback_steps: list[StepRecord] = field(default_factory=list)
    snapshot: dict[str, Any] | None = None  # Snapshot.info()
    rollbacks: list[RollbackEntry] = field(default_factory=list)
    cancelled: dict[str, Any] | None = None  # {by, reason, at}: who stopped it (`by: engine` at shutdown)
    approval: dict[str, Any] | None = None  # the approve step's question: {step, message, expires_at, status…}
    rerun_of: str | None = None  # a manual re-run: the run it repeats

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = _known(cls, data)
        known["steps"] = [StepRecord.from_dict(s) for s in data.get("steps", [])]
        known["rollback_steps"] = [StepRecord.from_dict(s) for s in data.get("rollback_steps", [])]
        known["rollbacks"] = [RollbackEntry(**_known(RollbackEntry, r)) for r in data.get("rollbacks", [])]
        return cls(**known)


class RecordError(Exception):
    """A record file that exists but cannot be read; the message names it."""


class RunStore:
    """The run records under `data/runs/`. Run ids are ULIDs, so sorting names sorts by start time."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.runs_dir = self.data_dir / "runs"

    def path(self, run_id: str) -> Path:
        return self.runs_dir / run_id / "record.json"

    def save(self, record: RunRecord) -> None:
        if not valid_run_id(record.run_id):
            raise ValueError(f"invalid run id {record.run_id!r}")
        atomic_write(self.path(record.run_id), orjson.dumps(record.to_dict(), option=orjson.OPT_INDENT_2))

    def get(self, run_id: str) -> RunRecord:
        """The record of `run_id`; KeyError when there is none, RecordError when it is unreadable."""
        path = self.path(run_id)
        if not valid_run_id(run_id) or not path.is_file():
            raise KeyError(run_id)
        try:
            return RunRecord.from_dict(orjson.loads(path.read_bytes()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise RecordError(f"{path}: unreadable run record ({type(exc).__name__}: {exc})") from None

    def prune(self, now: datetime, keep_days: float, snapshot_days: float | None = None) -> list[str]:
        """Delete the records (with their journals and snapshots) of runs that finished more than
        `keep_days` before `now`; with `snapshot_days`, delete only the snapshots of runs finished
        longer ago than that. Running runs are never touched. Snapshots whose run has no record are
        deleted once they are `keep_days` old. Returns the run ids whose record was deleted.

        Each directory is renamed aside before it is removed, so a prune stopped half-way never
        leaves a half-deleted record; the next prune finishes the removal.
        """
        for parent in (self.runs_dir, snapshots_dir(self.data_dir)):
            for leftover in _names(parent, _DELETING):
                shutil.rmtree(parent / leftover, ignore_errors=True)
        cutoff = now - timedelta(days=keep_days)
        snap_cutoff = now - timedelta(days=snapshot_days) if snapshot_days else None
        deleted: list[str] = []
        for run_id in sorted(self._ids()):
            try:
                record = self.get(run_id)
            except (KeyError, RecordError):
                continue  # no readable record: leave the directory for a person (or the reactor) to judge
            finished = _when(record.finished) if record.status != "running" else None
            if finished is None:
                continue
            if finished < cutoff:
                _remove_tree(self.runs_dir / run_id)
                _remove_tree(snapshots_dir(self.data_dir) / run_id)
                deleted.append(run_id)
            elif snap_cutoff and finished < snap_cutoff and (snapshots_dir(self.data_dir) / run_id).exists():
                _remove_tree(snapshots_dir(self.data_dir) / run_id)
                record.snapshot = {**(record.snapshot or {}), "deleted": format_ts(now.timestamp())}
                self.save(record)
        self._prune_orphan_snapshots(cutoff)
        return deleted

    def _prune_orphan_snapshots(self, cutoff: datetime) -> None:
        """Snapshots of runs that never got a record (the engine died before writing it)."""
        for run_id in _names(snapshots_dir(self.data_dir)):
            if not valid_run_id(run_id) or (self.runs_dir / run_id).exists():
                continue
            try:
                created = _when(Snapshot.load(self.data_dir, run_id).created)
            except SnapshotError:
                continue
            if created is not None and created < cutoff:
                _remove_tree(snapshots_dir(self.data_dir) / run_id)

    def _ids(self) -> Iterator[str]:
        return (name for name in _names(self.runs_dir) if valid_run_id(name))

    def list(self, limit: int | None = None, playbook: str | None = None, status: str | None = None,
             on_error: Callable[[RecordError], None] | None = None) -> list[RunRecord]:
        """Records newest first, filtered; unreadable ones are skipped and handed to `on_error`."""
        out: list[RunRecord] = []
        for run_id in sorted(self._ids(), reverse=True):
            if limit is not None and len(out) >= limit:
                break
            try:
                record = self.get(run_id)
            except KeyError:
                continue  # a journal whose record is not written yet
            except RecordError as exc:
                if on_error:
                    on_error(exc)
                continue
            if (playbook is None or record.playbook == playbook) and (status is None or record.status == status):
                out.append(record)
        return out


def _when(ts: str | None) -> datetime | None:
    try:
        return parse_ts(ts) if ts else None
    except ValueError:
        return None


def _names(folder: Path, prefix: str = "") -> list[str]:
    try:
        return [name for name in os.listdir(folder) if name.startswith(prefix)]
    except FileNotFoundError:
        return []


def _remove_tree(path: Path) -> None:
    """Rename a directory aside (one atomic step), then remove it."""
    aside = path.with_name(_DELETING + path.name)
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
    shutil.rmtree(aside, ignore_errors=True)
