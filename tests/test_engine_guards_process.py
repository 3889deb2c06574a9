"""Guards and recovery as an attacker and an operator see them: real engine processes, real agents."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
from process_harness import EngineProcess, demo_workers, free_port


def test_fake_agent_down_events_cannot_switch_off_the_restart_of_a_real_agent(demo):
    engine = demo()
    pids = engine.wait_for(lambda: (p := engine.agent_pids()) and "coder" in p and p, 30, "agents")
    fakes = [{"type": "agent.down", "agent": f"ghost{n}", "data": {"signal": "SIGKILL"}} for n in range(1, 5)]
    ids = set(engine.post("/api/events", fakes)["ids"])

    def set_aside() -> list[dict]:
        return [e for e in engine.events("scheduler.decision") if e["data"]["cause"] in ids
                and e["data"]["playbook"] == "restart-down-agent"]

    decisions = engine.wait_for(lambda: len(d := set_aside()) == 4 and d, 15, "four decisions on the fakes")
    assert {d["data"]["outcome"] for d in decisions} == {"set_aside"}
    assert {d["data"]["reason"] for d in decisions} == {"unknown_agent"}
    assert not [e for e in engine.events("reactor.started") if e["data"]["cause"] in ids  # no run, no failure
                and e["data"]["playbook"] != "notify-ops"]  # (the notification beside it runs: it acts on nothing)

    os.kill(pids["coder"], signal.SIGKILL)
    done = engine.wait_for(lambda: [e for e in engine.events("reactor.succeeded")
                                    if e["data"]["playbook"] == "restart-down-agent" and e["agent"] == "coder"],
                           45, "the real coder restarted")
    assert done
    playbooks = {p["id"]: p for p in engine.get("/api/playbooks")["playbooks"]}
    assert playbooks["restart-down-agent"]["circuit"] == "closed"
    assert any('"reason": "unknown_agent"' in line or '"reason":"unknown_agent"' in line for line in engine.log)


FLAKY = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = len(p.read_text()) if p.exists() else 0; "
         "p.write_text('x' * (n + 1)); sys.exit(0 if n >= 1 else 1)")


def test_a_killed_engine_with_a_pending_retry_serves_at_once_and_retries_through_the_scheduler(tmp_path: Path):
    tries = tmp_path / "tries"
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "fix.yaml").write_text(json.dumps({
        "id": "fix-then-restart", "on": "ops.fix", "retry": {"attempts": 2, "backoff": "5s"},
        "steps": [{"id": "flaky", "action": "shell", "with": {"argv": [sys.executable, "-c", FLAKY, str(tries)]}},
                  {"id": "restart", "needs": ["flaky"], "action": "restart_agent", "with": {"agent": "coder"}}]}))
    (tmp_path / "aios.yaml").write_text(
        "sensors: {interval: 1h}\n"
        "agents:\n  coder: {command: [python, -m, engine.demo.worker, --role, coder, --heartbeat, 1s]}\n")
    port = free_port()
    first = EngineProcess("--config", str(tmp_path / "aios.yaml"), cwd=tmp_path, port=port)
    second = None
    try:
        coder = first.wait_for(lambda: first.agent_pids().get("coder"), 30, "coder")
        first.post("/api/events", {"type": "ops.fix", "agent": "coder"})
        journals = tmp_path / "data" / "runs"
        journal = first.wait_for(lambda: next((j for j in journals.glob("*/journal.jsonl")
                                               if '"t":"wait"' in j.read_text().replace(" ", "")), None),
                                 15, "the run waiting for its retry")
        run_id = journal.parent.name
        first.proc.kill()
        first.proc.wait()

        spawned = time.monotonic()
        second = EngineProcess("--config", str(tmp_path / "aios.yaml"), cwd=tmp_path, port=port)
        second.wait_for(lambda: second.get("/api/health"), 10, "health")
        assert time.monotonic() - spawned < 2.0  # start-up does not wait for the pending retry (5 s)
        assert tries.read_text() == "x"  # and the retry has not run yet

        done = second.wait_for(lambda: [e for e in second.events("reactor.succeeded") if e["data"]["run_id"] == run_id],
                               30, "the resumed run")
        decisions = [e["data"] for e in second.events("scheduler.decision") if e["data"]["run_id"] == run_id]
        assert [d["outcome"] for d in decisions][-1] == "queued"  # through the scheduler, after the restart
        assert [e for e in second.events("reactor.resumed") if e["data"]["run_id"] == run_id]
        assert tries.read_text() == "xx" and done[0]["data"]["steps"] == 2
        coders = [p for p in demo_workers(second.url) if "coder" in p.cmdline()]
        assert len(coders) == 1 and coders[0].pid != coder  # restarted once: no second copy
        assert not psutil.pid_exists(coder) or psutil.Process(coder).status() == psutil.STATUS_ZOMBIE
    finally:
        for engine in (first, second):
            if engine is not None and engine.proc.poll() is None:
                engine.proc.kill()
                engine.proc.wait()
        for worker in demo_workers(f"http://127.0.0.1:{port}"):
            worker.kill()
