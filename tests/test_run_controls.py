"""Run controls in a running engine, over its API: cancel (running and queued) and re-run."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import psutil
from service_harness import run_engine, wait_for_event

from engine.store.reader import read_events

PY = sys.executable
WHO = {"X-AIOS-Actor": "cli:tester@box"}


def _rules(tmp_path: Path, text: str) -> None:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "notes.yaml").write_text("[]\n")
    (rules / "controls.yaml").write_text(text)


def _hang_playbook(tmp_path: Path) -> tuple[Path, Path]:
    """A playbook that edits a file, then hangs in a child that started a grandchild."""
    conf, pids, script = tmp_path / "agent.conf", tmp_path / "pids", tmp_path / "hang.py"
    conf.write_text("workers: 2\n")
    script.write_text("import os, subprocess, sys, time\n"
                      "grandchild = subprocess.Popen(['sleep', '600'])\n"
                      "open(sys.argv[1], 'w').write(f'{os.getpid()} {grandchild.pid}')\n"
                      "time.sleep(600)\n")
    _rules(tmp_path, f"""
- id: hang
  on: ops.fix
  steps:
    - {{id: edit, action: write_file, with: {{path: "{conf}", content: "workers: 9\\n"}}}}
    - {{id: wait, needs: [edit], action: shell, timeout: 10m, with: {{argv: ["{PY}", "{script}", "{pids}"]}}}}
""")
    return conf, pids


async def _post(http: Any, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.post(path, json=body, headers=WHO) as response:
        return response.status, await response.json()


async def _emit(http: Any, agent: str = "coder") -> str:
    async with http.post("/api/events", json={"type": "ops.fix", "agent": agent}) as response:
        return (await response.json())["ids"][0]


async def _run_of(engine: Any, cause: str, outcome: str = "queued") -> str:
    decision = await wait_for_event(engine, lambda e: e["type"] == "scheduler.decision"
                                    and e["data"]["cause"] == cause and e["data"]["outcome"] == outcome)
    return decision["data"]["run_id"]


def _events(engine: Any, type_: str, run_id: str) -> list[dict[str, Any]]:
    return [e for e in read_events(engine.events_dir) if e["type"] == type_ and e["data"].get("run_id") == run_id]


def test_cancel_kills_the_steps_process_tree_restores_the_snapshot_and_is_no_failure_for_the_breaker(tmp_path):
    conf, pids = _hang_playbook(tmp_path)

    async def body(engine, http):
        for round_ in range(3):  # three cancels in the breaker's window: a failure each would open it
            pids.unlink(missing_ok=True)
            run_id = await _run_of(engine, await _emit(http))
            while not pids.exists() or not pids.read_text():
                await asyncio.sleep(0.05)
            procs = [psutil.Process(int(pid)) for pid in pids.read_text().split()]
            assert conf.read_text() == "workers: 9\n"
            status, answer = await _post(http, f"/api/runs/{run_id}/cancel", {"reason": f"round {round_}"})
            assert (status, answer["status"]) == (200, "cancelled")
            for proc in procs:  # the child and its grandchild
                assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
            assert conf.read_text() == "workers: 2\n"
            cancelled = _events(engine, "reactor.cancelled", run_id)
            assert len(cancelled) == 1
            assert cancelled[0]["data"]["by"] == "cli:tester@box via 127.0.0.1"
            assert cancelled[0]["data"]["reason"] == f"round {round_}"
            assert cancelled[0]["data"]["playbook"] == "hang" and cancelled[0]["data"]["cause"]
            assert _events(engine, "reactor.rolled_back", run_id)[0]["data"]["why"] == "cancelled"
            record = engine.runs.get(run_id)
            assert record.status == "cancelled" and record.cancelled["reason"] == f"round {round_}"
            assert {s.id: s.status for s in record.steps}["wait"] == "cancelled"
            status, answer = await _post(http, f"/api/runs/{run_id}/cancel")
            assert status == 409 and "finished (cancelled)" in answer["error"]
        assert engine.playbooks_view()["playbooks"][0]["circuit"] == "closed"

    run_engine(tmp_path, body)


def test_cancel_of_a_queued_run_takes_it_out_of_the_queue(tmp_path):
    conf, pids = _hang_playbook(tmp_path)

    async def body(engine, http):
        first = await _run_of(engine, await _emit(http, "coder"))
        second = await _run_of(engine, await _emit(http, "analyst"), outcome="waiting")  # behind the first
        status, answer = await _post(http, f"/api/runs/{second}/cancel", {"reason": "not needed"})
        assert (status, answer["status"], answer["was"]) == (200, "cancelled", "queued")
        dropped = await wait_for_event(engine, lambda e: e["type"] == "scheduler.decision"
                                       and e["data"]["run_id"] == second and e["data"]["outcome"] == "dropped")
        assert dropped["data"]["by"] == "cli:tester@box via 127.0.0.1"
        assert dropped["data"]["reason"] == "cancelled by cli:tester@box via 127.0.0.1: not needed"
        assert _events(engine, "reactor.cancelled", second)[0]["data"]["queued"] is True
        assert (await _post(http, f"/api/runs/{first}/cancel"))[0] == 200
        await asyncio.sleep(0.3)
        assert not _events(engine, "reactor.started", second)  # it never ran
        assert engine.scheduler.depth == 0 and engine.scheduler.running == 0

    run_engine(tmp_path, body)


def test_cancel_refuses_unknown_runs_and_bad_bodies_with_json(tmp_path):
    _rules(tmp_path, "[]\n")

    async def body(engine, http):
        status, answer = await _post(http, "/api/runs/01NOSUCHRUN0000000000000000/cancel")
        assert status == 404 and "no run" in answer["error"]
        for sent, pointer in (({"reason": 3}, "/reason"), ({"why": "x"}, "/why"), ([1], ""), ("text", "")):
            status, answer = await _post(http, "/api/runs/01NOSUCHRUN0000000000000000/cancel", sent)
            assert (status, answer["pointer"]) == (400, pointer), sent
        async with http.post("/api/runs/x/cancel", data=b"{nope", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and (await r.json())["pointer"] == ""
        for verb in ("cancel", "rerun", "approve", "deny"):  # a run id that is none: 400, echoed only in part
            status, answer = await _post(http, f"/api/runs/{'A' * 5000}/{verb}")
            assert (status, answer["pointer"]) == (400, "/run_id") and len(answer["error"]) < 200, verb
            status, answer = await _post(http, f"/api/runs/a..b/{verb}")
            assert status == 400 and "'a..b'" in answer["error"], verb

    run_engine(tmp_path, body)


NOTE = """
- id: note
  on: ops.fix
  steps:
    - {id: note, action: emit, with: {type: ops.noted}}
"""


def test_rerun_runs_the_playbook_again_for_the_same_event_through_the_budget(tmp_path):
    _rules(tmp_path, NOTE)

    async def body(engine, http):
        cause = await _emit(http)
        first = await _run_of(engine, cause)
        await wait_for_event(engine, lambda e: e["type"] == "reactor.succeeded" and e["data"]["run_id"] == first)
        status, answer = await _post(http, f"/api/runs/{first}/rerun")
        assert status == 200 and answer["rerun_of"] == first and answer["outcome"] == "queued"
        again = answer["run_id"]
        decision = await wait_for_event(engine, lambda e: e["type"] == "scheduler.decision"
                                        and e["data"]["run_id"] == again)
        who = "cli:tester@box via 127.0.0.1"
        assert decision["data"]["cause"] == cause and decision["data"]["playbook"] == "note"
        assert decision["data"]["redecision"] == f"manual re-run of {first} by {who}"
        assert (decision["data"]["rerun_of"], decision["data"]["by"]) == (first, who)
        await wait_for_event(engine, lambda e: e["type"] == "reactor.succeeded" and e["data"]["run_id"] == again)
        assert engine.runs.get(again).rerun_of == first and engine.runs.get(again).cause == cause
        status, answer = await _post(http, f"/api/runs/{first}/rerun")  # the budget of 2 runs is spent
        assert status == 409 and answer["reason"] == "budget", answer
        aside = await wait_for_event(engine, lambda e: e["type"] == "scheduler.decision"
                                     and e["data"]["outcome"] == "set_aside" and e["data"]["reason"] == "budget")
        assert aside["data"]["redecision"] == f"manual re-run of {first} by {who}"
        assert (await _post(http, "/api/runs/01NOSUCHRUN0000000000000000/rerun"))[0] == 404
        assert (await _post(http, f"/api/runs/{first}/rerun", {"reason": "x"}))[1]["pointer"] == "/reason"

    run_engine(tmp_path, body, extra="reactor: {budget: {max_runs: 2}}\n")


def test_rerun_of_a_running_run_is_refused(tmp_path):
    _hang_playbook(tmp_path)

    async def body(engine, http):
        run_id = await _run_of(engine, await _emit(http))
        status, answer = await _post(http, f"/api/runs/{run_id}/rerun")
        assert status == 409 and "has not finished" in answer["error"]
        assert (await _post(http, f"/api/runs/{run_id}/cancel"))[0] == 200

    run_engine(tmp_path, body)
