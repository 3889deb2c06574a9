"""Found by the crash-load test (issue 14): a run SIGKILLed inside a step before that step changed anything.

docs/reactor.md, crash recovery: a run caught inside a step that has a snapshot gets the snapshot restored,
its rollback steps run, and `reactor.failed` + `reactor.rolled_back` with `crash_recovery`, even when the kill
landed before the write and the restore had nothing to put back (the paths are listed as `untouched`). Its
record carries the snapshot info although the record was written before the capture.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from reactor_harness import Harness, pb

from engine.reactor.records import RunStore
from engine.reactor.snapshot import Snapshot

EVENT = {"id": "cause-1", "type": "agent.error", "agent": "coder", "data": {}}
RUN_ID = "01RUN0000000000000000000001"


def test_a_run_killed_inside_a_step_before_it_changed_its_file_still_ends_rolled_back(data_dir: Path, tmp_path: Path):
    target = tmp_path / "agent.yaml"
    target.write_text("workers: 2\n")
    raw = {"id": "tx", "steps": [{"id": "edit", "action": "write_file",
                                  "with": {"path": str(target), "content": "workers: 9\n"}}]}
    Snapshot.create(data_dir, RUN_ID).capture([str(target)])  # taken before the step, as the runner does
    run_dir = data_dir / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    (run_dir / "journal.jsonl").write_text("\n".join(json.dumps(line) for line in [
        {"t": "start", "playbook": "tx", "event": EVENT, "priority": "P2", "key": ["tx", "[]"]},
        {"t": "step", "step": "edit", "attempt": 1, "started": 1.0},
    ]) + "\n")  # SIGKILL inside `edit`, before its write reached the file

    h = Harness(data_dir, [pb(raw)])
    assert asyncio.run(h.reactor.recover()) == []
    assert target.read_text() == "workers: 2\n"
    record = RunStore(data_dir).get(RUN_ID)
    assert h.types() == ["reactor.failed", "reactor.rolled_back"]
    assert h.events[-1]["data"]["why"] == "crash_recovery"
    assert record.status == "rolled_back"
    assert (h.events[-1]["data"]["restored"], h.events[-1]["data"]["untouched"]) == ([], [str(target)])
    assert record.snapshot is not None and record.snapshot["paths"] == [str(target)]
    assert record.snapshot["sealed"] is not None  # sealed at the end of the recovery
