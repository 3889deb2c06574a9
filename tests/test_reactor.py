"""The reactor end to end: real processes, real files, the run record and the events users see."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import psutil
from reactor_harness import Harness, pb

from engine.reactor.records import RunStore

EVENT = {"id": "cause-1", "type": "agent.error", "agent": "coder", "data": {"msg": "; rm -rf /tmp/x", "n": 7}}
PY = sys.executable


def test_a_step_reads_an_earlier_steps_stdout_and_templates_fill_one_literal_argv_element(data_dir: Path):
    playbook = pb({"id": "chain", "steps": [
        {"id": "find", "action": "shell", "with": {"argv": [PY, "-c", "print('pid-42')"]}},
        {"id": "use", "needs": ["find"], "action": "shell", "with": {"argv": [
            PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))",
            "{steps.find.stdout}", "{data.msg}", "{data.n}", "agent={agent}"]}},
    ]})
    h = Harness(data_dir, [playbook])
    assert asyncio.run(h.run("chain", EVENT)) == "succeeded"
    assert h.types() == ["reactor.started", "reactor.succeeded"]
    record = RunStore(data_dir).get("01RUN0000000000000000000001")
    use = record.steps[1].attempts[0]
    assert json.loads(use.stdout) == ["pid-42", "; rm -rf /tmp/x", "7", "agent=coder"]
    assert use.detail["argv"][4] == "; rm -rf /tmp/x"
    assert all(e["data"]["run_id"] == record.run_id and e["data"]["cause"] == "cause-1" for e in h.events)


def test_independent_steps_run_in_parallel_and_a_failure_skips_only_its_dependants(data_dir: Path):
    sleeper = [PY, "-c", "import time; time.sleep(0.6)"]
    playbook = pb({"id": "dag", "steps": [
        {"id": "a", "action": "shell", "with": {"argv": sleeper}},
        {"id": "b", "action": "shell", "with": {"argv": sleeper}},
        {"id": "bad", "action": "shell", "with": {"argv": [PY, "-c", "raise SystemExit(3)"]}},
        {"id": "after-bad", "needs": ["bad"], "action": "shell", "with": {"argv": [PY, "-c", "pass"]}},
        {"id": "after-ab", "needs": ["a", "b"], "action": "shell", "with": {"argv": [PY, "-c", "pass"]}},
    ]})
    h = Harness(data_dir, [playbook])
    assert asyncio.run(h.run("dag", EVENT)) == "failed"
    record = RunStore(data_dir).get("01RUN0000000000000000000001")
    tries = {s.id: s.attempts[0] for s in record.steps if s.attempts}
    assert tries["b"].started < tries["a"].finished and tries["a"].started < tries["b"].finished  # overlapped
    steps = {s.id: s.status for s in record.steps}
    assert steps == {"a": "ok", "b": "ok", "bad": "failed", "after-bad": "skipped", "after-ab": "ok"}
    failed = next(e for e in h.events if e["type"] == "reactor.failed")
    assert failed["data"]["step"] == "bad" and "exit code 3" in failed["data"]["reason"]


def test_backoff_waits_follow_the_contract(data_dir: Path):
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    playbook = pb({"id": "flaky", "retry": {"attempts": 3, "backoff": "2s", "factor": 2, "max_delay": "30s"},
                   "steps": [{"id": "try", "action": "shell", "with": {"argv": [PY, "-c", "raise SystemExit(1)"]}},
                             {"id": "capped", "action": "shell", "retry": {"attempts": 4, "backoff": "10s",
                                                                          "factor": 3, "max_delay": "30s"},
                              "with": {"argv": [PY, "-c", "raise SystemExit(1)"]}}]})
    h = Harness(data_dir, [playbook], sleep=fake_sleep)
    assert asyncio.run(h.run("flaky", EVENT)) == "failed"
    record = RunStore(data_dir).get("01RUN0000000000000000000001")
    assert [len(s.attempts) for s in record.steps] == [4, 5]  # attempts = retries after the first try
    bases = sorted([2, 4, 8, 10, 30, 30, 30])  # capped step: 10, 30 (not 30+), 30, 30
    assert len(waits) == 7
    for wait, base in zip(sorted(waits), bases):
        assert base <= wait <= base * 1.1  # a little jitter, never more than 10 %


def test_timeout_kills_the_whole_tree_including_a_setsid_grandchild(data_dir: Path, tmp_path: Path):
    pids_file = tmp_path / "pids"
    grandchild = tmp_path / "grandchild.py"
    grandchild.write_text("import os, sys, time\nos.setsid()\n"
                          "open(sys.argv[1], 'a').write(f'{os.getpid()}\\n')\ntime.sleep(600)\n")
    child = tmp_path / "child.py"
    child.write_text("import os, subprocess, sys, time\n"
                     "subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2]])\n"
                     "open(sys.argv[2], 'a').write(f'{os.getpid()}\\n')\ntime.sleep(600)\n")
    script_argv = [PY, str(child), str(grandchild), str(pids_file)]
    playbook = pb({"id": "hang", "timeout": "1500ms",
                   "steps": [{"id": "stuck", "action": "shell", "with": {"argv": script_argv}}]})
    h = Harness(data_dir, [playbook])
    assert asyncio.run(h.run("hang", EVENT)) == "timeout"
    assert RunStore(data_dir).get("01RUN0000000000000000000001").status == "timeout"  # the record says so too
    pids = [int(line) for line in pids_file.read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert not alive, f"pid {pid} survived the timeout"
    assert "reactor.timeout" in h.types()
    timeout = next(e for e in h.events if e["type"] == "reactor.timeout")
    assert timeout["data"]["step"] == "stuck" and timeout["data"]["timeout_s"] == 1.5


def test_failure_restores_files_runs_rollback_steps_in_reverse_and_deletes_what_the_run_created(
        data_dir: Path, tmp_path: Path):
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "agent.yaml").write_bytes(b"workers: 2\n")
    os.chmod(conf / "agent.yaml", 0o640)
    log = tmp_path / "rollback.log"
    playbook = pb({"id": "tx", "snapshot": [str(conf)], "steps": [
        {"id": "edit", "action": "write_file", "with": {"path": str(conf / "agent.yaml"), "content": "workers: 9\n",
                                                         "mode": "0600"}},
        {"id": "create", "needs": ["edit"], "action": "shell",
         "with": {"argv": [PY, "-c", f"open({str(conf / 'new.yaml')!r}, 'w').write('x')"]}},
        {"id": "verify", "needs": ["create"], "action": "shell", "with": {"argv": [PY, "-c", "raise SystemExit(1)"]}},
    ], "rollback": [
        {"action": "shell", "with": {"argv": [PY, "-c", f"open({str(log)!r}, 'a').write('first\\n')"]}},
        {"action": "shell", "with": {"argv": [PY, "-c", f"open({str(log)!r}, 'a').write('second\\n')"]}},
    ]})
    h = Harness(data_dir, [playbook])
    assert asyncio.run(h.run("tx", EVENT)) == "rolled_back"
    assert (conf / "agent.yaml").read_bytes() == b"workers: 2\n"
    assert stat.S_IMODE((conf / "agent.yaml").stat().st_mode) == 0o640
    assert not (conf / "new.yaml").exists()
    assert log.read_text() == "second\nfirst\n"  # reverse order
    assert h.types()[-2:] == ["reactor.failed", "reactor.rolled_back"]
    rolled = h.events[-1]["data"]
    assert str(conf / "new.yaml") in rolled["restored"] and rolled["why"] == "failure"


def test_a_cancelled_run_is_rolled_back_before_the_cancellation_completes(data_dir: Path, tmp_path: Path):
    target = tmp_path / "conf"
    target.write_text("before\n")
    playbook = pb({"id": "slow", "steps": [
        {"id": "edit", "action": "write_file", "with": {"path": str(target), "content": "after\n"}},
        {"id": "hang", "needs": ["edit"], "action": "shell", "with": {"argv": ["sleep", "600"]}}]})
    h = Harness(data_dir, [playbook])

    async def scenario() -> None:
        task = asyncio.ensure_future(h.run("slow", EVENT))
        while "reactor.started" not in h.types() or target.read_text() != "after\n":
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert target.read_text() == "before\n"
    assert h.types()[-3:] == ["reactor.failed", "reactor.rolled_back", "reactor.cancelled"]
    assert h.events[-2]["data"]["why"] == "cancelled"
    assert h.events[-1]["data"]["by"] == "engine"  # a shutdown, told apart from a person's cancel by `by`
    assert RunStore(data_dir).get("01RUN0000000000000000000001").status == "cancelled"


def test_parallel_write_file_steps_share_one_snapshot_safely(data_dir: Path, tmp_path: Path):
    files = [tmp_path / f"f{i}.conf" for i in range(6)]
    for path in files:
        path.write_text("old\n")
    playbook = pb({"id": "many", "steps": [
        {"id": f"w{i}", "action": "write_file", "with": {"path": str(path), "content": "new\n"}}
        for i, path in enumerate(files)] + [
        {"id": "fail", "needs": [f"w{i}" for i in range(6)], "action": "shell", "with": {"argv": ["false"]}}]})
    for n in range(5):
        h = Harness(data_dir, [playbook])
        outcome = asyncio.run(h.run("many", EVENT, run_id=f"01RUN000000000000000000000{n}"))
        assert outcome == "rolled_back"
        statuses = {s.id: s.status for s in RunStore(data_dir).get(f"01RUN000000000000000000000{n}").steps}
        assert statuses == {**{f"w{i}": "ok" for i in range(6)}, "fail": "failed"}
        assert all(path.read_text() == "old\n" for path in files)


def test_a_run_that_cannot_even_start_says_so_with_reactor_failed(data_dir: Path):
    """A full or broken disk before the run's journal exists: whoever waits for the run (its problem) hears
    that it ended, instead of waiting for ever."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "runs").write_text("not a directory")
    h = Harness(data_dir, [pb({"id": "p", "steps": [{"id": "s", "action": "shell", "with": {"argv": [PY, "-V"]}}]})])
    assert asyncio.run(h.run("p", EVENT)) == "error"
    [failed] = h.events
    assert failed["type"] == "reactor.failed" and failed["data"]["status"] == "error"
    assert failed["data"]["run_id"] == "01RUN0000000000000000000001" and "could not start" in failed["data"]["reason"]
