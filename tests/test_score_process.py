"""The score engine in a real engine with a demo agent: a degraded agent's P0 remediation runs ahead of
queued P3 work; score, feedback and tune over the API and the CLI (docs/score.md)."""
from __future__ import annotations

import json
import time

import pytest
from conftest import run_cli
from process_harness import EngineProcess

SLOW = """
- id: slow-chore
  on: chore.slow
  throttle: {within: 1s, key: [data.n]}  # one key per chore: none coalesces with another
  steps:
    - {id: wait, action: shell, with: {argv: [python3, -c, "import time; time.sleep(2.5)"]}}
"""
CONFIG = "score: {agents: {coder: {latency_target_ms: 1000}}}\n"


@pytest.fixture
def engine(coder_engine):
    return coder_engine(CONFIG, {"slow.yaml": SLOW})


def started(engine: EngineProcess) -> list[dict]:
    return sorted(engine.events("reactor.started"), key=lambda e: e["ts"])


def test_a_degraded_agents_p0_remediation_runs_ahead_of_queued_p3_work(engine: EngineProcess):
    engine.post("/api/events", [{"type": "chore.slow", "data": {"n": n}} for n in range(12)])  # 5 run, 7 queue
    engine.wait_for(lambda: len(started(engine)) >= 5, 20, "five chores running")
    failing = [{"type": "agent.task_done", "agent": "coder", "data": {"ok": False, "duration_ms": 60_000}}
               for _ in range(12)]
    errors = [{"type": "agent.error", "agent": "coder", "data": {"message": "boom"}} for _ in range(12)]
    hot = {"type": "resource.agent_cpu", "agent": "coder", "severity": "warning", "data": {"cpu_pct": 400.0}}
    engine.post("/api/events", [hot, *failing, *errors])  # hot first: every later score has resource 0
    degraded = engine.wait_for(lambda: engine.events("score.degraded"), 20, "score.degraded")[0]
    assert degraded["agent"] == "coder" and degraded["data"]["score"] < 0.3
    assert degraded["data"]["components"]["latency"] == 0.0 and degraded["data"]["components"]["resource"] == 0.0
    [decision] = engine.wait_for(lambda: [d for d in engine.events("scheduler.decision")
                                          if d["data"]["playbook"] == "score-degraded-restart-agent"],
                                 20, "P0 decision")
    assert decision["data"]["priority"] == "P0" and decision["data"]["outcome"] == "queued"
    engine.wait_for(lambda: any(e["data"]["playbook"] == "score-degraded-restart-agent" for e in started(engine)),
                    30, "the P0 restart starting")
    queued = decision["data"]["queue_depth"] - 1  # chores waiting when the P0 run was queued
    assert queued >= 5, decision["data"]
    engine.wait_for(lambda: len(started(engine)) >= 13, 30, "every chore started")
    order = [e["data"]["playbook"] for e in started(engine)]
    after = order[order.index("score-degraded-restart-agent") + 1:]
    # it jumped the queue: the chores that waited before it started after it (one may have been taking the
    # slot at that very moment); in FIFO order none would
    assert after.count("slow-chore") >= queued - 1, (queued, order)

    [row] = engine.get("/api/score?agent=coder")["agents"]
    assert row["degraded"] and row["score"] < 0.3 and set(row["components"]) == set(row["weights"])


def test_feedback_and_tune_over_the_api_and_the_cli(engine: EngineProcess):
    engine.post("/api/events", [{"type": "agent.task_done", "agent": "coder",
                                 "data": {"ok": True, "duration_ms": 500}}])
    engine.wait_for(lambda: engine.events("score.updated"), 20, "coder scored")
    bad = run_cli("feedback", "--agent", "coder", "--at", "not-a-time", "--label", "true", "--url", engine.url)
    assert bad.returncode == 1 and "at:" in bad.stderr and "Traceback" not in bad.stderr
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
    good = run_cli("feedback", "--agent", "coder", "--at", soon, "--label", "true", "--url", engine.url)
    assert good.returncode == 0, good.stderr
    tuned = run_cli("tune", "--dry-run", "--url", engine.url)
    assert tuned.returncode == 0 and "dry run, nothing changed: 1 labels" in tuned.stdout, tuned.stdout
    assert "coder" in tuned.stdout and "needed" in tuned.stdout
    assert not [e for e in engine.events("agent.learning") if e["data"].get("topic") == "weight tuning"]
    real = run_cli("tune", "--url", engine.url)
    assert real.returncode == 0 and "weights version 0: 1 labels" in real.stdout, real.stdout  # too few: unchanged
    learning = [e for e in engine.events("agent.learning") if e["data"].get("topic") == "weight tuning"]
    assert [(e["agent"], e["data"]["active"]) for e in learning] == [("coder", True), ("coder", False)]
    text = run_cli("score", "--url", engine.url).stdout
    assert text.splitlines()[0].startswith("AGENT") and any(line.startswith("coder") for line in text.splitlines())
    assert json.loads(run_cli("score", "--url", engine.url, "--format", "json").stdout.splitlines()[0])["agent"]
