"""Run records: round trip, tails, newest-first listing, retention of records and snapshots."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.events import IdGenerator, format_ts
from engine.reactor.records import (TAIL_BYTES, Attempt, RecordError, RollbackEntry, RunRecord, RunStore,
                                    StepRecord, tail)
from engine.reactor.snapshot import Snapshot

NOW = datetime(2026, 3, 10, 8, 0, tzinfo=timezone.utc)


def record(run_id: str, finished_days_ago: float | None, playbook: str = "fix-disk",
           status: str = "succeeded") -> RunRecord:
    started = NOW - timedelta(days=finished_days_ago or 0, seconds=5)
    finished = format_ts((NOW - timedelta(days=finished_days_ago)).timestamp()) \
        if finished_days_ago is not None else None
    return RunRecord(run_id, playbook, cause="01CAUSE", cause_type="resource.disk_full",
                     started=format_ts(started.timestamp()), agent="coder", priority="P1",
                     status=status if finished else "running", finished=finished)


def test_round_trip_keeps_every_field() -> None:
    run = record("01RUN", 0.0)
    run.steps.append(StepRecord("clean", "shell", "failed", [
        Attempt("2026-03-10T08:00:00.000000Z", "2026-03-10T08:00:01.000000Z", 1000, False, 2,
                {"argv": ["rm", "-rf", "/tmp/cache"]}, "out", "err", "exit 2"),
        Attempt("2026-03-10T08:00:03.000000Z", None, None, error="timed out after 30s")]))
    run.rollback_steps.append(StepRecord("rollback-1", "http", "ok", [Attempt("t", detail={"url": "http://x"})]))
    run.snapshot = {"paths": ["/etc/x"], "files": 1, "bytes": 10, "cap_bytes": 100, "sealed": None}
    run.rollbacks.append(RollbackEntry("t", "cli (ops)", True, ["/etc/x"]))
    data = json.loads(json.dumps(run.to_dict()))
    assert RunRecord.from_dict(data) == run
    assert RunRecord.from_dict({**data, "added_by_a_newer_engine": 1}) == run


def test_output_tails_keep_the_last_4_kib_on_a_character_boundary() -> None:
    attempt = Attempt("t", stdout="é" * 5000 + "END", stderr="short")
    assert len(attempt.stdout.encode()) <= TAIL_BYTES and attempt.stdout.endswith("END")
    assert attempt.stderr == "short"
    assert tail("x" * 10) == "x" * 10


def test_save_get_and_unknown_or_damaged_runs(data_dir: Path) -> None:
    store = RunStore(data_dir)
    store.save(record("01RUN", 0.0))
    assert store.get("01RUN").playbook == "fix-disk"
    assert (data_dir / "runs" / "01RUN" / "record.json").is_file()
    for missing in ("NOPE", "../runs/01RUN", ""):
        with pytest.raises(KeyError):
            store.get(missing)
    store.path("01RUN").write_text("{broken")
    with pytest.raises(RecordError, match="record.json: unreadable run record"):
        store.get("01RUN")


def test_list_is_newest_first_filtered_and_limited(data_dir: Path) -> None:
    store = RunStore(data_dir)
    ids = IdGenerator(clock=iter(range(1_700_000_000, 1_700_000_100, 10)).__next__)
    made = [ids() for _ in range(6)]
    for i, run_id in enumerate(made):
        store.save(record(run_id, 0.0, playbook="a" if i % 2 else "b", status="failed" if i == 5 else "succeeded"))
    (data_dir / "runs" / "01JOURNALONLY").mkdir()  # a run whose record is not written yet
    assert [r.run_id for r in store.list()] == made[::-1]
    assert [r.run_id for r in store.list(limit=2)] == made[:-3:-1]
    assert [r.run_id for r in store.list(playbook="a")] == [made[5], made[3], made[1]]
    assert [r.run_id for r in store.list(status="failed")] == [made[5]]
    store.path(made[2]).write_text("{")
    errors: list[RecordError] = []
    assert made[2] not in [r.run_id for r in store.list(on_error=errors.append)]
    assert len(errors) == 1 and made[2] in str(errors[0])


def test_prune_deletes_old_records_and_snapshots_but_keeps_running_ones(data_dir: Path, tmp_path: Path) -> None:
    store = RunStore(data_dir)
    (tmp_path / "f").write_text("x")
    for run_id, age in (("01OLD", 20.0), ("01RUNNING", None), ("01RECENT", 2.0), ("01MIDDLE", 9.0)):
        store.save(record(run_id, age))
        Snapshot.create(data_dir, run_id, clock=lambda: (NOW - timedelta(days=age or 30)).timestamp()) \
            .capture([tmp_path / "f"])
        (data_dir / "runs" / run_id / "journal.jsonl").write_text("{}\n")
    Snapshot.create(data_dir, "01ORPHAN", clock=lambda: (NOW - timedelta(days=40)).timestamp())
    Snapshot.create(data_dir, "01NEWORPHAN", clock=NOW.timestamp)
    (data_dir / "runs" / ".deleting-01CRASHED").mkdir()  # a prune killed half-way

    assert store.prune(NOW, keep_days=14, snapshot_days=7) == ["01OLD"]

    assert sorted(p.name for p in (data_dir / "runs").iterdir()) == ["01MIDDLE", "01RECENT", "01RUNNING"]
    assert sorted(p.name for p in (data_dir / "snapshots").iterdir()) == ["01NEWORPHAN", "01RECENT", "01RUNNING"]
    assert store.get("01MIDDLE").snapshot == {"deleted": format_ts(NOW.timestamp())}
    assert store.prune(NOW, keep_days=14, snapshot_days=7) == []
