"""The approve step: approve, deny and timeout with an injected clock; a waiting run holds no slot; a run
still waiting when the engine stops goes on waiting after the restart, with the same expiry."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from reactor_harness import Harness, pb
from service_harness import run_engine, wait_for_event
from test_run_controls import WHO, _post, _rules

from engine.reactor.records import RunStore

EVENT = {"id": "cause-1", "type": "agent.error", "agent": "coder"}
RUN = "01RUN0000000000000000000001"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    async def passing(self, seconds: float) -> None:  # time passes at once: an expiry is reached
        self.now += seconds

    async def never(self, seconds: float) -> None:  # time stands still: only an answer ends the wait
        await asyncio.Event().wait()


def _approval_playbook(conf: Path) -> Any:
    return pb({"id": "guarded", "steps": [
        {"id": "edit", "action": "write_file", "with": {"path": str(conf), "content": "new\n"}},
        {"id": "ask", "needs": ["edit"], "action": "approve", "with": {"message": "Restart {agent}?",
                                                                      "timeout": "15m"}},
        {"id": "after", "needs": ["ask"], "action": "emit", "with": {"type": "ops.done"}}]})


async def _until_asked(h: Harness) -> None:
    while "reactor.approval_requested" not in h.types():
        await asyncio.sleep(0.01)


def _answer_run(data_dir: Path, tmp_path: Path, approved: bool) -> tuple[Harness, str, Path]:
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")
    clock = Clock()
    h = Harness(data_dir, [_approval_playbook(conf)], sleep=clock.never, clock=clock)

    async def scenario() -> str:
        task = asyncio.ensure_future(h.run("guarded", EVENT))
        await _until_asked(h)
        assert conf.read_text() == "new\n"
        assert h.reactor.room.view()[0]["message"] == "Restart coder?"
        assert h.reactor.answer(RUN, approved, "alice", "looks right" if approved else "not now")
        assert not h.reactor.answer(RUN, approved, "bob", None)  # answered once
        return await task

    return h, asyncio.run(scenario()), conf


def test_an_approved_run_goes_on(data_dir: Path, tmp_path: Path):
    h, status, conf = _answer_run(data_dir, tmp_path, approved=True)
    assert status == "succeeded" and conf.read_text() == "new\n"
    assert h.types() == ["reactor.started", "reactor.approval_requested", "reactor.approved", "ops.done",
                         "reactor.succeeded"]
    asked = h.events[1]["data"]
    assert asked["message"] == "Restart coder?" and asked["agent"] == "coder" and asked["step"] == "ask"
    assert asked["expires_at"] == "1970-01-12T14:01:40.000000Z"  # 1,000,000 s + 15 min, on the injected clock
    assert {k: h.events[2]["data"][k] for k in ("by", "reason", "run_id")} == {
        "by": "alice", "reason": "looks right", "run_id": RUN}
    assert RunStore(data_dir).get(RUN).approval["status"] == "approved"


def test_a_denied_run_fails_and_is_rolled_back(data_dir: Path, tmp_path: Path):
    h, status, conf = _answer_run(data_dir, tmp_path, approved=False)
    assert status == "rolled_back" and conf.read_text() == "old\n"
    assert h.types() == ["reactor.started", "reactor.approval_requested", "reactor.denied", "reactor.failed",
                         "reactor.rolled_back"]
    assert h.events[2]["data"]["by"] == "alice" and h.events[2]["data"]["reason"] == "not now"
    assert "denied by alice: not now" in h.events[3]["data"]["reason"]
    record = RunStore(data_dir).get(RUN)
    assert {s.id: s.status for s in record.steps} == {"edit": "ok", "ask": "failed", "after": "skipped"}
    assert len(record.steps[1].attempts) == 1  # an answer is never retried


def test_no_answer_in_time_is_a_denial_by_timeout_and_rolls_back(data_dir: Path, tmp_path: Path):
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")
    clock = Clock()
    h = Harness(data_dir, [_approval_playbook(conf)], sleep=clock.passing, clock=clock)
    assert asyncio.run(h.run("guarded", EVENT)) == "rolled_back"
    assert conf.read_text() == "old\n"
    denied = next(e for e in h.events if e["type"] == "reactor.denied")["data"]
    assert denied["by"] == "timeout" and "no answer by" in denied["reason"]
    assert clock.now == 1_000_000.0 + 15 * 60  # it waited exactly the timeout, on the injected clock
    assert "no answer within 15m" in RunStore(data_dir).get(RUN).error


def test_a_run_still_waiting_at_shutdown_waits_on_after_a_restart_with_the_same_expiry(data_dir, tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")
    clock = Clock()
    playbook = _approval_playbook(conf)
    first = Harness(data_dir, [playbook], sleep=clock.never, clock=clock)

    async def before() -> str:
        task = asyncio.ensure_future(first.run("guarded", EVENT))
        await _until_asked(first)
        expires = first.reactor.room.view()[0]["expires_at"]
        task.cancel()  # what engine shutdown does to a waiting run
        await asyncio.gather(task, return_exceptions=True)
        return expires

    expires = asyncio.run(before())
    assert conf.read_text() == "new\n"  # not rolled back: nothing of it was running
    assert RunStore(data_dir).get(RUN).status == "running"
    clock.now += 600  # ten minutes later
    second = Harness(data_dir, [playbook], sleep=clock.never, clock=clock)

    async def after() -> str:
        jobs = await second.reactor.recover()
        assert [job.run_id for job in jobs] == [RUN]
        task = asyncio.ensure_future(second.reactor.run(jobs[0]))
        while not second.reactor.room.view():
            await asyncio.sleep(0.01)
        assert second.reactor.room.view()[0]["expires_at"] == expires
        assert second.reactor.answer(RUN, True, "alice", None)
        return await task

    assert asyncio.run(after()) == "succeeded"
    assert "reactor.approval_requested" not in second.types()  # asked once, before the restart
    assert second.types()[-2:] == ["ops.done", "reactor.succeeded"]


ASKING = """
- id: ask-a
  on: ops.ask_a
  steps:
    - {id: ask, action: approve, with: {message: "Restart {agent}?", timeout: 1h}}
- id: ask-b
  on: ops.ask_b
  snapshot: ["CONF"]
  steps:
    - {id: edit, action: write_file, with: {path: "CONF", content: "new\\n"}}
    - {id: ask, needs: [edit], action: approve, with: {message: "Keep the edit on {agent}?"}}
- id: go
  on: ops.go
  steps:
    - {id: note, action: emit, with: {type: ops.went}}
"""


async def _emit(http: Any, type_: str) -> str:
    async with http.post("/api/events", json={"type": type_, "agent": "coder"}) as response:
        return (await response.json())["ids"][0]


async def _asked(engine: Any, cause: str) -> dict[str, Any]:
    decision = await wait_for_event(engine, lambda e: e["type"] == "scheduler.decision"
                                    and e["data"]["cause"] == cause)
    run_id = decision["data"]["run_id"]
    return await wait_for_event(engine, lambda e: e["type"] == "reactor.approval_requested"
                                and e["data"]["run_id"] == run_id)


def test_waiting_runs_hold_no_slot_and_are_answered_over_the_api(tmp_path: Path):
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")
    _rules(tmp_path, ASKING.replace("CONF", str(conf)))

    async def body(engine, http):
        a = (await _asked(engine, await _emit(http, "ops.ask_a")))["data"]
        b = (await _asked(engine, await _emit(http, "ops.ask_b")))["data"]
        assert engine.scheduler.running == 0  # both slots are free while both wait
        go = await _emit(http, "ops.go")
        await wait_for_event(engine, lambda e: e["type"] == "ops.went" and e["chain"][0] == go)
        async with http.get("/api/approvals") as response:
            waiting = {w["run_id"]: w for w in (await response.json())["approvals"]}
        assert waiting[a["run_id"]]["message"] == "Restart coder?"
        assert waiting[b["run_id"]]["expires_at"] == b["expires_at"]
        live = engine.live_state()["runs"][a["run_id"]]
        assert live["waiting"] == "approval" and live["message"] == "Restart coder?" and live["agent"] == "coder"
        status, answer = await _post(http, f"/api/runs/{a['run_id']}/approve", {"reason": "go ahead"})
        assert (status, answer["answer"]) == (200, "approved")
        assert (await _post(http, f"/api/runs/{a['run_id']}/approve"))[0] == 409  # answered already
        status, answer = await _post(http, f"/api/runs/{b['run_id']}/deny", {"reason": "not in business hours"})
        assert (status, answer["answer"]) == (200, "denied")
        approved = await wait_for_event(engine, lambda e: e["type"] == "reactor.approved")
        assert approved["data"]["by"] == "cli:tester@box via 127.0.0.1" and approved["data"]["reason"] == "go ahead"
        denied = await wait_for_event(engine, lambda e: e["type"] == "reactor.denied")
        assert denied["data"]["reason"] == "not in business hours"
        await wait_for_event(engine, lambda e: e["type"] == "reactor.rolled_back"
                             and e["data"]["run_id"] == b["run_id"])
        assert conf.read_text() == "old\n"
        await wait_for_event(engine, lambda e: e["type"] == "reactor.succeeded"
                             and e["data"]["run_id"] == a["run_id"])
        assert (await _post(http, "/api/runs/01NOSUCHRUN0000000000000000/approve"))[0] == 404
        status, answer = await _post(http, f"/api/runs/{a['run_id']}/deny")
        assert status == 409 and "finished" in answer["error"]

    run_engine(tmp_path, body, extra="reactor: {max_concurrent: 2}\n")


def test_an_engine_restart_keeps_the_question_open(tmp_path: Path):
    _rules(tmp_path, ASKING.replace("CONF", str(tmp_path / "agent.conf")))

    async def ask(engine, http):
        return (await _asked(engine, await _emit(http, "ops.ask_a")))["data"]

    asked = run_engine(tmp_path, ask)

    async def answer(engine, http):
        async def listed() -> list[dict[str, Any]]:
            while True:
                async with http.get("/api/approvals") as response:
                    found = (await response.json())["approvals"]
                if found:
                    return found
                await asyncio.sleep(0.05)

        waiting = await asyncio.wait_for(listed(), 10)
        assert [(w["run_id"], w["expires_at"]) for w in waiting] == [(asked["run_id"], asked["expires_at"])]
        async with http.post(f"/api/runs/{asked['run_id']}/approve", headers=WHO) as response:
            assert response.status == 200
        await wait_for_event(engine, lambda e: e["type"] == "reactor.succeeded"
                             and e["data"]["run_id"] == asked["run_id"])

    run_engine(tmp_path, answer)


def test_the_cli_lists_answers_and_cancels(tmp_path: Path):
    from conftest import run_cli

    _rules(tmp_path, ASKING.replace("CONF", str(tmp_path / "agent.conf")))

    async def body(engine, http):
        cli = lambda *args: asyncio.to_thread(run_cli, *args, "--url", engine.url)  # noqa: E731
        first = (await _asked(engine, await _emit(http, "ops.ask_a")))["data"]["run_id"]
        listed = await cli("approvals")
        assert listed.returncode == 0 and first in listed.stdout and "Restart coder?" in listed.stdout
        done = await cli("approve", first, "--reason", "ok")
        assert done.returncode == 0 and f"run {first} approved by cli:" in done.stdout
        again = await cli("deny", first)
        assert again.returncode == 1 and again.stderr.count("\n") == 1 and "refused (409)" in again.stderr
        await wait_for_event(engine, lambda e: e["type"] == "reactor.succeeded" and e["data"]["run_id"] == first)
        second = (await _asked(engine, await _emit(http, "ops.ask_a")))["data"]["run_id"]
        cancelled = await cli("cancel", second, "--reason", "wrong agent")
        assert cancelled.returncode == 0 and f"run {second} cancelled by cli:" in cancelled.stdout
        assert engine.runs.get(second).status == "cancelled" and not engine.run_controls.approvals()
        rerun = await cli("rerun", first)
        assert rerun.returncode == 0 and f"a re-run of {first}" in rerun.stdout
        missing = await cli("rerun", "01NOSUCHRUN0000000000000000")
        assert missing.returncode == 1 and "refused (404): no run" in missing.stderr

    run_engine(tmp_path, body)
