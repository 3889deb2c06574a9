"""Operator controls against a real engine and a real demo agent (docs/controls.md): silences, pause, manual
restart through the budget, budget reset, runtime disable — driven through the CLI as an operator would."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
from conftest import CLI, ROOT

RESTART = "restart-down-agent"


def cli(engine, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*CLI, *args, "--url", engine.url], capture_output=True, text=True, env=env, timeout=30)


def kill_coder(engine) -> int:
    pid = engine.wait_for(lambda: engine.agent_pids().get("coder"), 30, "coder running")
    os.kill(pid, signal.SIGKILL)
    return pid


def decisions(engine, playbook: str = RESTART) -> list[dict]:
    return [e["data"] for e in engine.events("scheduler.decision") if e["data"].get("playbook") == playbook]


def runs_of(engine, playbook: str) -> list[dict]:
    return [e for e in engine.events("reactor.started") if e["data"]["playbook"] == playbook]


def test_a_silence_holds_a_killed_coder_and_the_restart_happens_when_it_ends_without_a_new_event(coder_engine):
    engine = coder_engine()
    added = cli(engine, "silence", "add", "--agent", "coder", "--for", "6s", "--reason", "disk swap")
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.split()[1]
    killed_at = time.monotonic()
    kill_coder(engine)

    held = engine.wait_for(lambda: [d for d in decisions(engine) if d["outcome"] == "set_aside"], 20, "set aside")
    assert held[0]["reason"] == f"silenced:{silence_id}"
    assert "disk swap" in held[0]["detail"] and "cli:" in held[0]["detail"]
    assert not runs_of(engine, RESTART), "nothing runs while the silence holds"

    problem = engine.wait_for(lambda: [p for p in engine.get("/api/problems")["problems"]
                                       if p["kind"] == "agent-down" and p["status"] == "resolved"], 40, "healed")[0]
    assert time.monotonic() - killed_at >= 5, "healed only once the silence had ended"
    assert problem["run_id"], "healed by the restart run"
    assert len(engine.events("agent.down")) == 1, "no new event was needed: the problem was decided again"
    assert any(e["data"].get("silence", {}).get("id") == silence_id for e in engine.events("control.silence_expired"))
    timeline = engine.get(f"/api/problems/{problem['id']}")["timeline"]
    assert any(entry.get("reason") == f"silenced:{silence_id}" for entry in timeline)
    assert any(entry.get("type") == "redecision" for entry in timeline)


def test_pause_records_what_would_run_runs_nothing_and_resume_lets_it_run(coder_engine):
    engine = coder_engine()
    paused = cli(engine, "pause", "--reason", "change freeze")
    assert paused.returncode == 0, paused.stderr
    kill_coder(engine)
    held = engine.wait_for(lambda: [d for d in decisions(engine) if d["outcome"] == "set_aside"], 20, "set aside")
    assert held[0]["reason"] == "paused" and f"would run {RESTART}" in held[0]["detail"]
    time.sleep(1.5)
    assert not runs_of(engine, RESTART)
    assert engine.get("/api/controls")["paused"]["reason"] == "change freeze"

    assert cli(engine, "resume", "--reason", "freeze over").returncode == 0
    engine.wait_for(lambda: runs_of(engine, RESTART), 20, "restart after resume")
    resumed = engine.events("control.resumed")[0]["data"]
    assert resumed["lifts"] == ["paused"] and resumed["by"].startswith("cli:")


def test_a_manual_restart_goes_through_the_budget_and_a_reset_gives_it_back(coder_engine):
    engine = coder_engine("reactor: {budget: {max_runs: 1, window: 1h}}\n")
    engine.wait_for(lambda: engine.agent_pids().get("coder"), 30, "coder running")
    first = cli(engine, "agent", "restart", "coder", "--reason", "stuck")
    assert first.returncode == 0 and first.stdout.startswith("queued: run "), (first.stdout, first.stderr)
    engine.wait_for(lambda: [e for e in engine.events("reactor.succeeded")
                             if e["data"]["playbook"] == "manual-restart-agent"], 60, "first manual restart")

    second = cli(engine, "agent", "restart", "coder", "--reason", "still stuck")
    assert second.returncode == 1 and "set_aside: budget" in second.stderr, second.stderr
    assert cli(engine, "budget", "reset", "coder", "--reason", "known maintenance").returncode == 0
    third = cli(engine, "agent", "restart", "coder", "--reason", "after reset")
    assert third.returncode == 0, third.stderr
    audit = [e["data"] for e in engine.events("control.agent_restart")]
    assert [a["reason"] for a in audit] == ["stuck", "still stuck", "after reset"]
    assert engine.events("control.budget_reset")[0]["data"]["runs"] == 1


def test_a_playbook_disabled_at_run_time_is_set_aside_then_enabled_by_the_timer(coder_engine):
    engine = coder_engine()
    done = cli(engine, "playbook", "disable", RESTART, "--for", "5s", "--reason", "flapping restarts")
    assert done.returncode == 0, done.stderr
    kill_coder(engine)
    held = engine.wait_for(lambda: [d for d in decisions(engine) if d["outcome"] == "set_aside"], 20, "set aside")
    assert held[0]["reason"] == "disabled" and "flapping restarts" in held[0]["detail"]
    engine.wait_for(lambda: runs_of(engine, RESTART), 30, "restart once the disable ended")
    assert engine.events("control.playbook_enabled")[0]["data"]["by"] == "timer"


BAD = [(["silence", "add", "--reason", "x"], "needs at least one of agent"),
       (["silence", "add", "--agent", "coder", "--for", "5x", "--reason", "x"], "at /for"),
       (["playbook", "disable", "no-such", "--reason", "x"], "(404)"),
       (["breaker", "reset", RESTART, "--reason", "x"], "(409)"),
       (["resume"], "(409): automation is not paused")]


def test_bad_control_requests_are_one_clear_line(coder_engine):
    engine = coder_engine()
    for argv, message in BAD:
        outcome = cli(engine, *argv)
        assert outcome.returncode == 1 and message in outcome.stderr and outcome.stderr.count("\n") == 1, outcome


def test_a_stopped_agent_stays_stopped_across_an_engine_restart_until_started(coder_engine):
    engine = coder_engine()
    pid = engine.wait_for(lambda: engine.agent_pids().get("coder"), 30, "coder running")
    stopped = cli(engine, "agent", "stop", "coder", "--reason", "replacing its disk")
    assert stopped.returncode == 0, stopped.stderr
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    agents = {a["name"]: a for a in engine.get("/api/agents")["agents"]}
    assert agents["coder"]["state"] == "stopped" and engine.get("/api/health")["components"]["agents"]["state"] == "ok"
    time.sleep(2.5)  # heartbeat interval 1 s: a stop is never reported as agent.down, and nothing restarts it
    assert not engine.events("agent.down") and not runs_of(engine, RESTART)

    refused = cli(engine, "agent", "restart", "coder", "--reason", "oops")
    assert refused.returncode == 1 and "(409)" in refused.stderr and "use agent start coder" in refused.stderr
    engine.proc.terminate()
    engine.proc.wait(30)
    again = coder_engine()
    time.sleep(1.5)
    assert "coder" not in again.agent_pids(), "the next engine keeps it stopped"
    started = cli(again, "agent", "start", "coder", "--reason", "disk replaced")
    assert started.returncode == 0, started.stderr
    again.wait_for(lambda: again.agent_pids().get("coder"), 30, "coder started again")
    assert again.get("/api/controls")["stopped"] == {}
