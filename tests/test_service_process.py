"""`aios-engine run` as users run it: a real process, real agents, real signals."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
from process_harness import DEMO_AGENTS, EngineProcess, demo_workers, free_port


def test_a_killed_demo_agent_comes_back_through_the_shipped_playbook(demo):
    engine = demo()
    pids = engine.wait_for(lambda: (p := engine.agent_pids()) and set(p) == DEMO_AGENTS and p, 30, "4 agents")
    os.kill(pids["coder"], signal.SIGKILL)
    down = engine.wait_for(lambda: [e for e in engine.events("agent.down") if e["agent"] == "coder"], 15, "down")
    assert down[0]["data"]["signal"] == "SIGKILL"
    done = engine.wait_for(lambda: [e for e in engine.events("reactor.succeeded")
                                    if e["data"]["playbook"] == "restart-down-agent"], 45, "restart")
    assert done[0]["agent"] == "coder" and done[0]["data"]["cause"] == down[0]["id"]
    new_pid = engine.agent_pids()["coder"]
    assert new_pid != pids["coder"] and psutil.pid_exists(new_pid)


def test_an_engine_killed_and_restarted_adopts_the_running_agents(demo):
    first = demo()
    pids = first.wait_for(lambda: (p := first.agent_pids()) and set(p) == DEMO_AGENTS and p, 30, "4 agents")
    first.proc.kill()
    first.proc.wait()
    assert all(psutil.pid_exists(pid) for pid in pids.values())  # agents outlive the engine

    restarted = demo(port=first.port)  # agents post to the URL they were started with
    adopted = restarted.wait_for(lambda: (p := restarted.agent_pids()) and set(p) == DEMO_AGENTS and p, 30,
                                 "adoption")
    assert adopted == pids
    view = {a["name"]: a for a in restarted.get("/api/agents")["agents"]}
    assert all(view[name]["adopted"] for name in DEMO_AGENTS)
    assert len(demo_workers(first.url)) == 4  # nothing started twice
    started = restarted.events("agent.started")
    assert sum(1 for e in started if e["data"].get("adopted")) == 4


def test_sigterm_lets_a_running_run_finish_then_exits_0(tmp_path: Path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "slow.yaml").write_text(
        "id: slow-fix\non: agent.error\nsteps:\n"
        "  - {id: work, action: shell, with: {argv: [sleep, '1.5']}}\n")
    (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\n")
    engine = EngineProcess("--config", str(tmp_path / "aios.yaml"), cwd=tmp_path)
    engine.post("/api/events", {"type": "agent.error", "agent": "coder"})
    started = engine.wait_for(lambda: engine.events("reactor.started"), 10, "run start")
    engine.proc.send_signal(signal.SIGTERM)
    assert engine.proc.wait(timeout=30) == 0
    run_id = started[0]["data"]["run_id"]
    record = json.loads((tmp_path / "data" / "runs" / run_id / "record.json").read_text())
    assert record["status"] == "succeeded"
    assert any('"engine stopped"' in line for line in engine.log)


def test_run_refuses_to_bind_off_loopback_without_a_token(tmp_path: Path, monkeypatch):
    from conftest import run_cli

    monkeypatch.delenv("AIOS_TOKEN", raising=False)
    (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\n")
    result = run_cli("run", "--host", "0.0.0.0", "--port", str(free_port()), "--config", str(tmp_path / "aios.yaml"),
                     cwd=tmp_path)
    assert result.returncode == 1
    assert "binding to 0.0.0.0 needs a token" in result.stderr and "Traceback" not in result.stderr
