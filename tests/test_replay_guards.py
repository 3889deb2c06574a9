"""`aios-engine replay` applies the live engine's guards and coalescing, so it answers as the engine did."""
from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import make_event
from service_harness import run_engine, wait_for_event

from engine.cli import main

RESTART = """\
- id: restart
  on: agent.down
  confidence: 0.9
  steps: [{id: r, action: restart_agent, with: {agent: "{agent}"}}]
"""
NOTIFY = """\
- id: notify
  on: agent.down
  exclusive: false
  priority: P3
  steps: [{id: n, action: emit, with: {type: ops.page}}]
"""
QUICK = """\
- id: quick
  on: agent.down
  steps: [{id: s, action: shell, with: {argv: ['true']}}]
"""


def setup(tmp_path: Path, rules: str, config: str, events: list[dict[str, Any]]) -> list[str]:
    """The replay arguments for `events` (an NDJSON file), `rules` and the aios.yaml `config`."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "all.yaml").write_text(rules)
    (tmp_path / "aios.yaml").write_text(config)
    (tmp_path / "events.ndjson").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return ["replay", "--events", str(tmp_path / "events.ndjson"), "--rules", str(tmp_path / "rules"),
            "--config", str(tmp_path / "aios.yaml")]


def replay_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    assert main([*args, "--format", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return lines[:-1], lines[-1]["summary"]


def answers(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per event: the playbooks that run (a sorted list), or the reason nothing does."""
    out: dict[str, Any] = {}
    for record in records:
        if record["playbook"] is None:
            out[record["event"]] = record["reason"]
        else:
            out.setdefault(record["event"], []).append(record["playbook"])
    return {event: sorted(a) if isinstance(a, list) else a for event, a in out.items()}


def down(event_id: str, ts: str, agent: str = "coder") -> dict[str, Any]:
    return make_event(event_id, f"2026-01-01T{ts}Z", "agent.down", agent=agent, exit_code=1)


def record(event_id: str, ts: str, type_: str, **data: Any) -> dict[str, Any]:
    """One of the engine's own events, as the store holds it."""
    return make_event(event_id, f"2026-01-01T{ts}Z", type_, agent=None, **data) | {"source": "engine.reactor"}


def test_the_budget_sets_aside_the_third_run_in_its_window_and_lets_one_go_once_the_oldest_left(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = setup(tmp_path, RESTART, "agents: {coder: {command: [x]}}\nreactor: {budget: {max_runs: 2, window: 1h}}\n",
                 [down("E1", "10:00:00"), down("E2", "10:05:00"), down("E3", "10:10:00"), down("E4", "10:20:00"),
                  down("E5", "11:00:01")])  # E1's run left the window at 11:00
    records, summary = replay_json(capsys, args)
    assert answers(records) == {"E1": ["restart"], "E2": ["restart"], "E3": "budget", "E4": "budget",
                                "E5": ["restart"]}
    assert records[2] == {"event": "E3", "type": "agent.down", "playbook": None, "reason": "budget"}
    assert summary["triggering"] == 3 and summary["playbooks"]["restart"] == {"fired": 3,
                                                                               "suppressed": {"budget": 2}}
    assert main([*args, "--format", "text"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "2026-01-01T10:10:00Z  E3  agent.down  -> none (budget)"
    table = lines[lines.index("") + 1:]
    assert table[1].split()[11:] == ["budget", "circuit", "open", "unknown_agent", "loop", "coalesced"]
    assert table[2].split() == ["restart", "3", "0", "0", "0", "0", *["0"] * 5, "2", "0", "0", "0", "0"]


def test_recorded_failures_open_the_breaker_and_its_cooldown_lets_a_probe_through(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def failed_run(run: str, cause: str, minute: str) -> list[dict[str, Any]]:
        common = {"run_id": run, "playbook": "restart", "cause": cause}
        return [record(f"{run}d", f"10:{minute}:00.100000", "scheduler.decision", outcome="queued", **common),
                record(f"{run}s", f"10:{minute}:00.200000", "reactor.started", **common),
                record(f"{run}f", f"10:{minute}:01.000000", "reactor.failed", status="failed", **common),
                record(f"{run}b", f"10:{minute}:01.500000", "reactor.rolled_back", **common)]  # one outcome

    config = "agents: {coder: {command: [x]}}\nreactor: {breaker: {failures: 2, window: 10m, cooldown: 15m}}\n"
    args = setup(tmp_path, RESTART, config,
                 [down("E1", "10:00:00"), *failed_run("r1", "E1", "00"), down("E2", "10:01:00"),
                  *failed_run("r2", "E2", "01"),  # second failure at 10:01:01: open until 10:16:01
                  down("E3", "10:02:00"), down("E4", "10:16:00"), down("E5", "10:16:02")])
    records, _ = replay_json(capsys, args)
    assert answers(records) == {"E1": ["restart"], "E2": ["restart"], "E3": "circuit open", "E4": "circuit open",
                                "E5": ["restart"]}  # the half-open breaker's probe


def test_a_recorded_long_run_holds_its_key_one_run_waits_and_the_next_is_coalesced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(run: str, cause: str, decided: str, outcome: str) -> dict[str, Any]:
        return record(f"{run}d", decided, "scheduler.decision", outcome=outcome, run_id=run, playbook="quick",
                      cause=cause)

    def event(run: str, ts: str, type_: str, cause: str) -> dict[str, Any]:
        return record(f"{run}{type_.split('.')[1]}", ts, type_, run_id=run, playbook="quick", cause=cause)

    history = [down("A1", "10:00:00", "a1"), run("r1", "A1", "10:00:00.1", "queued"),
               event("r1", "10:00:00.2", "reactor.started", "A1"),
               down("A2", "10:00:30", "a2"), run("r2", "A2", "10:00:30.1", "waiting"),
               down("A3", "10:01:00", "a3"),  # r1 going, r2 waiting
               event("r1", "10:02:00", "reactor.succeeded", "A1"), event("r2", "10:02:00.1", "reactor.started", "A2"),
               down("A4", "10:02:30", "a4"),  # r2 going: A4 may wait
               event("r2", "10:03:00", "reactor.succeeded", "A2"),
               # no record of these runs: each holds the key for a few seconds only
               down("B1", "10:30:00", "b1"), down("B2", "10:30:01", "b2"), down("B3", "10:30:02", "b3"),
               down("B4", "10:30:30", "b4")]
    records, summary = replay_json(capsys, setup(tmp_path, QUICK, "", history))
    assert answers(records) == {"A1": ["quick"], "A2": ["quick"], "A3": "coalesced", "A4": ["quick"],
                                "B1": ["quick"], "B2": ["quick"], "B3": "coalesced", "B4": ["quick"]}
    assert summary["playbooks"]["quick"]["suppressed"] == {"coalesced": 2}


def test_an_undeclared_agent_and_a_too_deep_chain_are_set_aside_and_a_notification_beside_spends_no_budget(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = down("E4", "10:03:00") | {"chain": [f"c{n}" for n in range(8)]}
    args = setup(tmp_path, RESTART + NOTIFY, "agents: {coder: {command: [x]}}\nreactor: {budget: {max_runs: 1}}\n",
                 [down("E1", "10:00:00"), down("E2", "10:01:00", "ghost"), down("E3", "10:02:00"), deep])
    records, summary = replay_json(capsys, args)
    assert answers(records) == {"E1": ["notify", "restart"], "E2": ["notify"], "E3": ["notify"], "E4": "loop"}
    assert summary["playbooks"]["restart"]["suppressed"] == {"unknown_agent": 1, "budget": 1, "loop": 1}
    assert main([*args, "--format", "text"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == ("2026-01-01T10:01:00Z  E2  agent.down  -> notify (P3, 0.5, beside)  "
                        "[set aside: restart: unknown_agent]")


LIVE_RULES = QUICK.replace("['true']", "[sleep, '0.3']") + """\
- id: restart-ghost
  on: agent.down
  when: {agent: {eq: ghost}}
  confidence: 0.9
  steps: [{id: r, action: restart_agent, with: {agent: "{agent}"}}]
"""
LIVE_CONFIG = ("reactor: {budget: {max_runs: 2, window: 1h}}\n"
               "agents: {fake: {command: [sleep, '30'], heartbeat: {interval: 1h}}}\n")


def test_replay_over_a_live_engines_store_gives_the_answers_the_engine_gave(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The key property: the engine's own history, replayed with its rules and config, decides the same."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "live.yaml").write_text(LIVE_RULES)

    async def body(engine: Any, http: Any) -> tuple[dict[str, str], int]:
        def decided(cause: str, playbook: str = "quick") -> Any:
            return lambda e: (e["type"] == "scheduler.decision" and e["data"]["cause"] == cause
                              and e["data"]["playbook"] == playbook)

        async def post(events: Any) -> list[str]:
            return (await (await http.post("/api/events", json=events)).json())["ids"]

        names: dict[str, str] = {}
        try:
            for n in range(1, 5):  # the fake agent, one at a time: queued, queued, budget, budget
                [names[f"f{n}"]] = await post({"type": "agent.down", "agent": "fake", "data": {"exit_code": 1}})
                if n < 4:
                    await wait_for_event(engine, decided(names[f"f{n}"]))
            while not engine.dispatcher.limiter.held:  # the fourth is decided, its stored decision held back
                await asyncio.sleep(0.02)
            [names["ghost"]] = await post({"type": "agent.down", "agent": "ghost", "data": {"exit_code": 1}})
            await wait_for_event(engine, decided(names["ghost"], "restart-ghost"))
            await engine.scheduler.wait_idle()
            ids = await post([{"type": "agent.down", "agent": f"a{n}", "data": {"exit_code": 1}} for n in range(1, 5)])
            names.update({f"a{n}": event_id for n, event_id in enumerate(ids, 1)})
            for event_id in ids:
                await wait_for_event(engine, decided(event_id))
            await engine.scheduler.wait_idle()
            return names, engine.dispatcher.limiter.held
        finally:
            pid = engine.supervisor.local.pid("fake")
            if pid:
                os.kill(pid, signal.SIGKILL)

    names, held = run_engine(tmp_path, body, extra=LIVE_CONFIG)

    events = tmp_path / "data" / "events"
    stored = [json.loads(line) for day in sorted(events.glob("*.jsonl")) for line in day.read_text().splitlines()]
    live: dict[str, dict[str, Any]] = {}
    for decision in (e["data"] for e in stored if e["type"] == "scheduler.decision"):
        answer = live.setdefault(decision["cause"], {"runs": [], "reasons": []})
        if decision["outcome"] in ("queued", "waiting"):
            answer["runs"].append(decision["playbook"])
        elif decision["reason"] != "outranked":  # the winner's reason, not the candidates' it outranked
            answer["reasons"].append("coalesced" if decision["outcome"] == "coalesced" else decision["reason"])
    live_answers = {cause: sorted(a["runs"]) if a["runs"] else a["reasons"][0] for cause, a in live.items()}

    records, _ = replay_json(capsys, ["replay", "--events", str(events), "--rules", str(tmp_path / "rules"),
                                      "--config", str(tmp_path / "aios.yaml")])
    replayed = answers(records)
    for cause, answer in live_answers.items():  # every event the engine decided, as the engine decided it
        assert replayed[cause] == answer, cause
    expected = {"f1": ["quick"], "f2": ["quick"], "f3": "budget", "f4": "budget", "ghost": "unknown_agent",
                "a1": ["quick"], "a2": ["quick"], "a3": "coalesced", "a4": "coalesced"}
    assert {name: replayed[event_id] for name, event_id in names.items()} == expected
    assert set(replayed) - set(live_answers) == {names["f4"]} and held == 1  # its decision was held back
