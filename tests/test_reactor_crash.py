"""A runner SIGKILLed mid-step is rolled back at the next start; one killed during a backoff resumes."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
from conftest import ROOT
from reactor_harness import Harness, pb

from engine.reactor.records import RunStore

PY = sys.executable
EVENT = {"id": "cause-1", "type": "agent.error", "agent": "coder", "data": {}}
RUN_ID = "01RUN0000000000000000000001"

RUNNER = textwrap.dedent("""
    import asyncio, json, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from reactor_harness import Harness, pb
    playbook = pb(json.loads(sys.argv[2]))
    harness = Harness(__import__("pathlib").Path(sys.argv[1]), [playbook])
    asyncio.run(harness.run(playbook.id, json.loads(sys.argv[3]), {run_id!r}))
""")


def start_runner(data_dir: Path, raw: dict) -> subprocess.Popen[bytes]:
    code = RUNNER.format(root=str(ROOT), tests=str(ROOT / "tests"), run_id=RUN_ID)
    return subprocess.Popen([PY, "-c", code, str(data_dir), json.dumps(raw), json.dumps(EVENT)],
                            stderr=subprocess.PIPE)


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def journal(data_dir: Path) -> list[dict]:
    path = data_dir / "runs" / RUN_ID / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_runner_killed_inside_a_step_is_rolled_back_at_next_start(data_dir: Path, tmp_path: Path):
    target = tmp_path / "agent.yaml"
    target.write_text("workers: 2\n")
    pid_file = tmp_path / "step.pid"
    raw = {"id": "tx", "snapshot": [str(target)], "steps": [
        {"id": "edit", "action": "write_file", "with": {"path": str(target), "content": "workers: 9\n"}},
        {"id": "hang", "needs": ["edit"], "action": "shell", "with": {"argv": [
            PY, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"]}},
    ]}
    runner = start_runner(data_dir, raw)
    wait_until(lambda: pid_file.exists() and pid_file.read_text())
    step_pid = int(pid_file.read_text())
    assert target.read_text() == "workers: 9\n"
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    assert psutil.pid_exists(step_pid)  # the step's session outlived the runner

    h = Harness(data_dir, [pb(raw)])
    assert asyncio.run(h.reactor.recover()) == []  # nothing to resume: rolled back at once
    assert target.read_text() == "workers: 2\n"
    wait_until(lambda: not psutil.pid_exists(step_pid)
               or psutil.Process(step_pid).status() == psutil.STATUS_ZOMBIE, timeout=5)
    failed = next(e for e in h.events if e["type"] == "reactor.failed")
    assert failed["data"]["reason"].startswith("crash_recovery")
    assert h.events[-1]["type"] == "reactor.rolled_back" and h.events[-1]["data"]["why"] == "crash_recovery"
    assert RunStore(data_dir).get(RUN_ID).status == "rolled_back"
    assert asyncio.run(Harness(data_dir, [pb(raw)]).reactor.recover()) == []  # done once, not again


def test_runner_killed_during_a_backoff_resumes_the_retry_at_next_start(data_dir: Path, tmp_path: Path):
    counter = tmp_path / "tries"
    flaky = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); n = len(p.read_text()) if p.exists() else 0; "
             "p.write_text('x' * (n + 1)); sys.exit(0 if n >= 1 else 1)")
    raw = {"id": "flaky", "retry": {"attempts": 3, "backoff": "1s"},
           "steps": [{"id": "try", "action": "shell", "with": {"argv": [PY, "-c", flaky]}},
                     {"id": "then", "needs": ["try"], "action": "shell", "with": {"argv": [PY, "-c", "print('after')"]}}]}
    runner = start_runner(data_dir, raw)
    wait_until(lambda: any(e["t"] == "wait" for e in journal(data_dir)))
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    assert counter.read_text() == "x"

    h = Harness(data_dir, [pb(raw)])
    jobs = asyncio.run(h.reactor.recover())
    assert [job.run_id for job in jobs] == [RUN_ID] and counter.read_text() == "x"  # recovery waits for nothing
    assert asyncio.run(h.reactor.run(jobs[0])) == "succeeded"  # admitted again, the run continues
    assert counter.read_text() == "xx"  # the retry ran once, after the wait
    assert h.types() == ["reactor.resumed", "reactor.succeeded"]
    record = RunStore(data_dir).get(RUN_ID)
    tries = record.steps[0].attempts
    assert [a.ok for a in tries] == [False, True]
    assert record.steps[1].attempts[0].stdout == "after"


def test_a_run_that_crashed_after_a_step_failed_is_rolled_back_not_resumed(data_dir: Path, tmp_path: Path):
    target = tmp_path / "conf"
    target.write_text("changed by the run\n")
    raw = {"id": "tx", "steps": [{"id": "bad", "action": "shell", "with": {"argv": ["false"]}},
                                 {"id": "next", "needs": ["bad"], "action": "shell", "with": {"argv": ["true"]}}],
           "rollback": [{"action": "write_file", "with": {"path": str(target), "content": "put back\n"}}]}
    run_dir = data_dir / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    (run_dir / "journal.jsonl").write_text("\n".join(json.dumps(line) for line in [
        {"t": "start", "playbook": "tx", "event": EVENT, "priority": "P2", "key": ["tx", "[]"]},
        {"t": "step", "step": "bad", "attempt": 1, "started": 1.0},
        {"t": "result", "step": "bad", "attempt": 1, "ok": False, "exit_code": 1, "stdout": "", "error": None},
    ]) + "\n")  # the engine died while emitting reactor.failed
    h = Harness(data_dir, [pb(raw)])
    assert asyncio.run(h.reactor.recover()) == []
    assert RunStore(data_dir).get(RUN_ID).status == "rolled_back"
    assert "reactor.succeeded" not in h.types() and "step bad had failed" in h.events[0]["data"]["reason"]
    assert target.read_text() == "put back\n"


def test_a_run_too_damaged_to_recover_is_closed_and_the_others_still_recover(data_dir: Path):
    raw = {"id": "tx", "steps": [{"id": "a", "action": "shell", "with": {"argv": ["true"]}}]}
    damaged, healthy = RUN_ID, "01RUN0000000000000000000002"
    for run_id in (damaged, healthy):
        run_dir = data_dir / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "journal.jsonl").write_text(json.dumps(
            {"t": "start", "playbook": "tx", "event": EVENT, "priority": "P2", "key": ["tx", "[]"]}) + "\n")
    (data_dir / "runs" / damaged / "record.json").write_text("{not json")  # a damaged record
    h = Harness(data_dir, [pb(raw)])
    jobs = asyncio.run(h.reactor.recover())  # does not raise: the engine still starts
    assert [job.run_id for job in jobs] == [healthy]
    assert journal(data_dir)[-1]["t"] == "end"  # closed: the next start does not trip on it again
    assert [job.run_id for job in asyncio.run(Harness(data_dir, [pb(raw)]).reactor.recover())] == [healthy]
