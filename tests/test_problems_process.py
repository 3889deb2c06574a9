"""Problems as an operator sees them: real engine processes, real demo agents, real kills (docs/problems.md).

Windows the shipped rules keep in minutes (throttle 2m, escalate_after 5m) are shortened in a copy of the
shipped rules, so each wait here is seconds; everything else is the shipped engine.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, ROOT
from process_harness import EngineProcess, demo_workers, free_port

AGENTS = "agents:\n" + "".join(
    f"  {name}: {{command: [python, -m, engine.demo.worker, --role, {name}, --heartbeat, 1s],"
    f" heartbeat: {{interval: 1s, misses: 4}}}}\n" for name in ("coder", "analyst"))


@pytest.fixture
def engine_with(tmp_path: Path):
    """Start an engine on a copy of the shipped rules with `edits` (file -> [(old, new)]) and extra config."""
    started: list[EngineProcess] = []

    def start(edits: dict[str, list[tuple[str, str]]] | None = None, config: str = "",
              port: int | None = None) -> EngineProcess:
        rules = tmp_path / "rules"
        if not rules.exists():
            rules.mkdir()
            for source in (ROOT / "rules").glob("*.yaml"):
                text = source.read_text()
                for old, new in (edits or {}).get(source.name, []):
                    assert old in text, (source.name, old)
                    text = text.replace(old, new)
                (rules / source.name).write_text(text)
            (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\n" + AGENTS + config)
        engine = EngineProcess("--config", str(tmp_path / "aios.yaml"), cwd=tmp_path, port=port)
        started.append(engine)
        return engine

    yield start
    for engine in started:
        if engine.proc.poll() is None:
            engine.proc.kill()
            engine.proc.wait()
    for engine in started:
        for worker in demo_workers(engine.url):
            worker.kill()


def problems(engine: EngineProcess, kind: str = "agent-down") -> list[dict]:
    return [p for p in engine.get("/api/problems")["problems"] if p["kind"] == kind]


def kill(engine: EngineProcess, agent: str) -> int:
    pid = engine.wait_for(lambda: engine.agent_pids().get(agent), 30, f"{agent} running")
    os.kill(pid, signal.SIGKILL)
    return pid


def resolved(engine: EngineProcess, count: int, timeout: float = 60) -> list[dict]:
    return engine.wait_for(lambda: len(r := [p for p in problems(engine) if p["status"] == "resolved"]) >= count
                           and r, timeout, f"{count} resolved problems")


def test_an_agent_killed_twice_inside_its_throttle_is_restarted_when_the_window_lapses(engine_with):
    engine = engine_with({"agent_down.yaml": [("throttle: {within: 2m", "throttle: {within: 12s")]})
    first_pid = kill(engine, "coder")
    first = resolved(engine, 1)[0]
    assert first["run_id"] and first["subject"] == {"agent": "coder"}
    second_pid = kill(engine, "coder")  # a few seconds after the first restart: inside its 12 s throttle
    assert second_pid != first_pid

    second = resolved(engine, 2, 60)
    second = next(p for p in second if p["id"] != first["id"])
    whole = engine.get(f"/api/problems/{second['id']}")
    decisions = [e for e in whole["timeline"] if e["type"] == "scheduler.decision"]
    assert decisions[0]["outcome"] == "set_aside" and decisions[0]["reason"] == "throttled"
    assert decisions[0]["retry_at"]  # it said when the reason lapses
    queued = [d for d in decisions if d["outcome"] == "queued" and d["playbook"] == "restart-down-agent"]
    assert queued and queued[0]["redecision"] == "throttled lapsed"  # decided again, without a new event
    downs = [e for e in engine.events("agent.down") if e["agent"] == "coder"]
    assert len(downs) == 2  # no new agent.down was needed (nor made up)
    assert whole["run_id"] == queued[0]["run_id"]

    # the timeline, in order: opened, set aside, decided again, run, resolved
    kinds = [e.get("what") or e["type"] for e in whole["timeline"]]
    assert kinds[0] == "opened" and kinds[-1] == "resolved"
    order = [kinds.index(step) for step in ("opened", "scheduler.decision", "redecision", "reactor.started",
                                            "resolved")]
    assert order == sorted(order)
    resolution = [e for e in engine.events("problem.resolved") if e["data"]["problem"] == second["id"]]
    assert len(resolution) == 1 and resolution[0]["data"]["run_id"] == whole["run_id"]
    assert resolution[0]["data"]["heal_s"] > 0

    out = subprocess.run([*CLI, "problems", second["id"], "--url", engine.url, "--format", "json"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])["timeline"] == whole["timeline"]


def test_with_the_budget_spent_a_problem_escalates_once_then_heals_when_the_budget_frees(engine_with, tmp_path):
    sooner = ("opened_by: agent.down\n", "opened_by: agent.down\n  escalate_after: 8s\n")
    engine = engine_with({"agent_down.yaml": [("throttle: {within: 2m, key: [agent]}", "")],
                          "problems.problems.yaml": [sooner]},
                         config="reactor: {budget: {max_runs: 1, window: 30s}}\n")
    kill(engine, "coder")
    resolved(engine, 1)
    kill(engine, "coder")
    escalated = engine.wait_for(lambda: engine.events("problem.escalated"), 30, "problem.escalated")
    assert len(escalated) == 1
    reasons = " ".join(escalated[0]["data"]["reasons"])
    assert "budget" in reasons
    health = engine.get("/api/health")
    assert health["components"]["problems"]["state"] == "degraded"
    assert escalated[0]["data"]["problem"] in " ".join(health["components"]["problems"]["problems"])

    healed = engine.wait_for(lambda: [p for p in problems(engine) if p["id"] == escalated[0]["data"]["problem"]
                                      and p["status"] == "resolved"], 60, "healed once the budget freed")
    assert healed[0]["run_id"]
    assert len(engine.events("problem.escalated")) == 1  # once, however long it stayed set aside
    assert engine.get("/api/health")["components"]["problems"]["state"] == "ok"


def test_a_problem_open_across_an_engine_sigkill_is_open_after_restart_and_heals(engine_with, tmp_path):
    port = free_port()
    engine = engine_with({"agent_down.yaml": [("throttle: {within: 2m", "throttle: {within: 1h")]}, port=port)
    kill(engine, "coder")
    resolved(engine, 1)
    kill(engine, "coder")  # throttled for an hour: the problem stays open
    open_ = engine.wait_for(lambda: [p for p in problems(engine) if p["status"] == "open" and p["reasons"]],
                            30, "the second problem, set aside")
    assert "throttled" in " ".join(open_[0]["reasons"])
    engine.wait_for(lambda: (tmp_path / "data" / "problems" / f"{open_[0]['id']}.json").exists(), 10, "its file")
    engine.proc.kill()
    engine.proc.wait()

    again = engine_with(port=port)
    after = [p for p in problems(again) if p["id"] == open_[0]["id"]]
    assert after and after[0]["status"] in ("open", "resolved")  # open again (or already healing)
    healed = again.wait_for(lambda: [p for p in problems(again) if p["id"] == open_[0]["id"]
                                     and p["status"] == "resolved"], 60, "healed after the restart")
    assert healed[0]["heal_s"] > 0  # (the new engine starts a declared agent that is not running: no run)
    opened = [e for e in again.events("problem.opened") if e["data"]["problem"] == open_[0]["id"]]
    assert len(opened) == 1  # the same problem, not a new one


def test_a_problem_no_playbook_can_act_on_escalates_at_once_and_heals_by_itself(engine_with):
    engine = engine_with()
    spike = engine.post("/api/events", {"type": "resource.cpu_spike", "severity": "warning",
                                        "data": {"percent": 99.0}})["ids"][0]  # the host's: no agent to restart
    escalated = engine.wait_for(lambda: engine.events("problem.escalated"), 15, "escalation")
    assert escalated[0]["data"]["kind"] == "cpu-spike"
    assert any("no_playbook" in reason for reason in escalated[0]["data"]["reasons"])
    assert escalated[0]["chain"][-1] == spike
    notified = engine.wait_for(lambda: [e for e in engine.events("ops.notification")
                                        if e["data"]["about"] == "problem.escalated"], 15, "ops paged")
    assert notified
    engine.post("/api/events", {"type": "resource.cpu_spike_cleared", "data": {"percent": 20.0}})
    done = engine.wait_for(lambda: engine.events("problem.resolved"), 15, "resolution")
    assert done[0]["data"]["problem"] == escalated[0]["data"]["problem"] and "run_id" not in done[0]["data"]
