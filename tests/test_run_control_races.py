"""Run controls racing each other and the run's own end, on a reactor with a real scheduler, an injected
clock and time that stands still (nothing here waits for anything real)."""
from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import orjson
from reactor_harness import Harness
from test_run_approvals import EVENT, Clock, _approval_playbook

from engine.admission.scheduler import Job, Scheduler
from engine.reactor.controls import RunControls


class Engine:
    """A reactor, a scheduler that starts its runs (parking those that wait for a person), the controls."""

    def __init__(self, data_dir: Path, playbooks: list[Any], max_concurrent: int = 5, **harness: Any) -> None:
        self.clock = harness.setdefault("clock", Clock())
        harness.setdefault("sleep", self.clock.never)
        self.h = Harness(data_dir, playbooks, **harness)
        ids = itertools.count(1)
        self.scheduler = Scheduler(start=self.h.reactor.run, emit=self._decided, clock=self.clock,
                                   new_id=lambda: f"01RUN{next(ids):022d}", max_concurrent=max_concurrent)
        self.h.reactor.deps.park = self.scheduler.parked
        self.controls = RunControls(self.h.reactor, self.scheduler, None, self.h.playbooks.get,  # type: ignore
                                    self.h.emit)

    async def _decided(self, type_: str, data: dict[str, Any], job: Job) -> None:
        pass

    async def offer(self, playbook_id: str, event: dict[str, Any] = EVENT) -> str:
        job = Job(self.h.playbooks[playbook_id], event, "P2", (playbook_id, event.get("agent")))
        await self.scheduler.offer(job)
        return job.run_id

    async def until(self, type_: str, run_id: str) -> None:
        while not any(e["type"] == type_ and e["data"].get("run_id") == run_id for e in self.h.events):
            await asyncio.sleep(0.01)

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        path = self.h.reactor.runs_dir / run_id / "journal.jsonl"
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def _waiting(data_dir: Path, conf: Path) -> tuple[Engine, str]:
    """An engine whose run of the `guarded` playbook waits at its approve step."""
    engine = Engine(data_dir, [_approval_playbook(conf)])
    run_id = await engine.offer("guarded")
    await engine.until("reactor.approval_requested", run_id)
    return engine, run_id


def test_a_cancel_and_an_approval_at_once_only_one_wins_and_an_approval_is_recorded_before_its_200(data_dir, tmp_path):
    async def scenario(approve_first: bool) -> None:
        conf = tmp_path / f"agent-{approve_first}.conf"
        conf.write_text("old\n")
        engine = Engine(data_dir / f"approve-first-{approve_first}", [_approval_playbook(conf)])
        run_id = await engine.offer("guarded")
        await engine.until("reactor.approval_requested", run_id)
        cancel = engine.controls.cancel(run_id, "bob", "wrong agent")
        approve = engine.controls.answer(run_id, True, "alice", "fine")
        if approve_first:
            (approved, _), (cancelled, _) = await asyncio.gather(approve, cancel)
        else:
            (cancelled, _), (approved, _) = await asyncio.gather(cancel, approve)
        assert sorted((approved, cancelled)) == [200, 409], (approve_first, approved, cancelled)
        await engine.scheduler.wait_idle()
        types = [e["type"] for e in engine.h.events if e["data"].get("run_id") == run_id]
        answers = [e for e in engine.journal(run_id) if e["t"] == "answer"]
        if approved == 200:  # its answer was journaled and announced before the 200
            assert "reactor.approved" in types and answers[0]["by"] == "alice"
        else:
            assert "reactor.approved" not in types and "reactor.cancelled" in types
            assert engine.h.reactor.store.get(run_id).status == "cancelled"

    asyncio.run(scenario(approve_first=False))
    asyncio.run(scenario(approve_first=True))


def test_an_approval_answers_200_only_after_the_run_recorded_it(data_dir, tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")

    async def scenario() -> None:
        engine, run_id = await _waiting(data_dir, conf)
        status, body = await engine.controls.answer(run_id, True, "alice", "fine")
        assert (status, body["answer"]) == (200, "approved")
        assert [e["by"] for e in engine.journal(run_id) if e["t"] == "answer"] == ["alice"]
        assert "reactor.approved" in engine.h.types()
        await engine.scheduler.wait_idle()

    asyncio.run(scenario())


def test_a_cancel_while_the_run_ends_is_refused_as_finished(data_dir, monkeypatch):
    from reactor_harness import pb

    from engine.reactor import runner

    ending, go_on = asyncio.Event(), asyncio.Event()
    settle = runner._Run.settle

    async def slow_settle(self: Any) -> None:  # the run has ended; its last journal lines are being written
        ending.set()
        await go_on.wait()
        await settle(self)

    monkeypatch.setattr(runner._Run, "settle", slow_settle)
    note = pb({"id": "note", "steps": [{"id": "note", "action": "emit", "with": {"type": "ops.noted"}}]})

    async def scenario() -> None:
        engine = Engine(data_dir, [note])
        run_id = await engine.offer("note")
        await ending.wait()
        assert engine.scheduler.started(run_id)
        status, body = await engine.controls.cancel(run_id, "bob", None)
        assert status == 409 and "has finished" in body["error"], body
        go_on.set()
        await engine.scheduler.wait_idle()
        assert engine.h.reactor.store.get(run_id).status == "succeeded"
        assert "reactor.cancelled" not in engine.h.types()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_rerun_of_a_run_whose_journal_start_is_damaged_is_422(data_dir):
    from reactor_harness import pb

    note = pb({"id": "note", "steps": [{"id": "note", "action": "emit", "with": {"type": "ops.noted"}}]})

    async def scenario() -> list[tuple[int, str]]:
        engine = Engine(data_dir, [note])
        run_id = await engine.offer("note")
        await engine.scheduler.wait_idle()
        journal = engine.h.reactor.runs_dir / run_id / "journal.jsonl"
        lines = journal.read_bytes().splitlines()
        start = orjson.loads(lines[0])
        answers = []
        for damage in ({"event": None}, {"event": "text"}, {"priority": "P9"}, {"priority": None}):
            broken = {k: v for k, v in {**start, **damage}.items() if v is not None}
            journal.write_bytes(b"\n".join([orjson.dumps(broken), *lines[1:]]) + b"\n")
            status, body = await engine.controls.rerun(run_id, "bob")
            answers.append((status, body["error"]))
        return answers

    for status, error in asyncio.run(scenario()):
        assert status == 422 and "damaged" in error, error


def test_the_control_waits_end_well_before_the_cli_gives_up():
    from engine.cli.client import TIMEOUT_S
    from engine.reactor.controls import ANSWER_WAIT_S, END_WAIT_S

    assert END_WAIT_S <= TIMEOUT_S - 10 and ANSWER_WAIT_S <= TIMEOUT_S - 10  # so the CLI gets the 202


def _logged(caplog: Any, msg: str) -> list[Any]:
    return [r for r in caplog.records if r.name == "aios.reactor" and r.getMessage() == msg]


def test_approvals_queued_cancels_and_refusals_reach_the_engine_log(data_dir, tmp_path, caplog):
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")
    caplog.set_level(logging.INFO, logger="aios.reactor")

    async def scenario() -> None:
        engine, run_id = await _waiting(data_dir, conf)
        assert (await engine.controls.answer(run_id, False, "alice", "not now"))[0] == 200
        await engine.scheduler.wait_idle()
        assert (await engine.controls.answer(run_id, True, "bob", None))[0] == 409
        engine.scheduler.max_concurrent = 0  # nothing starts: the next run stays queued
        queued = await engine.offer("guarded", {**EVENT, "agent": "analyst"})
        assert (await engine.controls.cancel(queued, "carol", "wrong agent"))[0] == 200

    asyncio.run(scenario())
    asked, = _logged(caplog, "approval requested")
    assert asked.step == "ask" and asked.question == "Restart coder?"
    denied, = _logged(caplog, "run denied")
    assert (denied.by, denied.reason, denied.step) == ("alice", "not now", "ask")
    refused, = _logged(caplog, "run control refused")
    assert (refused.control, refused.by, refused.status) == ("approve", "bob", 409) and "finished" in refused.reason
    cancelled = [r for r in _logged(caplog, "run cancelled") if getattr(r, "queued", False)]
    assert [(r.by, r.reason) for r in cancelled] == [("carol", "wrong agent")]


def test_a_failing_approval_timer_is_logged_counted_and_named_in_the_denial(data_dir, tmp_path, caplog):
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")

    async def broken(seconds: float) -> None:
        raise RuntimeError("the clock broke")

    h = Harness(data_dir, [_approval_playbook(conf)], sleep=broken, clock=Clock())
    assert asyncio.run(h.run("guarded", EVENT)) == "rolled_back"
    denied = next(e for e in h.events if e["type"] == "reactor.denied")["data"]
    assert denied["by"] == "engine" and "the approval timer failed (RuntimeError: the clock broke)" in denied["reason"]
    assert h.reactor.room.timer_failures == 1 and len(_logged(caplog, "approval timer failed")) == 1
    assert "timer failed" in h.reactor.store.get("01RUN0000000000000000000001").error


def _undoing_playbook(conf: Path) -> Any:
    from reactor_harness import pb

    return pb({"id": "guarded", "steps": [
        {"id": "edit", "action": "write_file", "with": {"path": str(conf), "content": "new\n"}},
        {"id": "ask", "needs": ["edit"], "action": "approve", "with": {"message": "Restart {agent}?"}}],
        "rollback": [{"id": "undo", "action": "emit", "with": {"type": "ops.undone"}}]})


def _crashed_mid_cancel(data_dir: Path, conf: Path, lines: list[dict[str, Any]]) -> None:
    """A run left waiting at its approve step (as shutdown leaves one), then `lines` appended to its
    journal by hand: what a SIGKILL in the middle of its cancel leaves."""
    first = Harness(data_dir, [_undoing_playbook(conf)], sleep=Clock().never, clock=Clock())

    async def until_asked() -> None:
        task = asyncio.ensure_future(first.run("guarded", EVENT))
        while "reactor.approval_requested" not in first.types():
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(until_asked())
    assert conf.read_text() == "new\n"
    with open(data_dir / "runs" / RUN / "journal.jsonl", "ab") as journal:
        journal.write(b"".join(orjson.dumps(line) + b"\n" for line in lines))


RUN = "01RUN0000000000000000000001"
CANCEL = {"t": "cancel", "by": "bob", "reason": "wrong agent"}


def _recover(data_dir: Path, conf: Path) -> tuple[list[Job], Harness]:
    second = Harness(data_dir, [_undoing_playbook(conf)], sleep=Clock().never, clock=Clock())
    return asyncio.run(second.reactor.recover()), second


def test_a_crash_mid_cancel_finishes_the_cancel_once_at_the_next_start(data_dir, tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")
    _crashed_mid_cancel(data_dir, conf, [CANCEL])
    jobs, second = _recover(data_dir, conf)
    assert jobs == []  # not offered again: it does not wait for an approval again
    assert conf.read_text() == "old\n"
    assert second.types() == ["reactor.failed", "ops.undone", "reactor.rolled_back", "reactor.cancelled"]
    assert second.events[0]["data"]["status"] == "cancelled" and second.events[0]["data"]["by"] == "bob"
    assert (second.events[-1]["data"]["by"], second.events[-1]["data"]["reason"]) == ("bob", "wrong agent")
    record = second.reactor.store.get(RUN)
    assert record.status == "cancelled" and record.cancelled["by"] == "bob"
    assert record.approval["status"] == "cancelled" and record.approval["by"] == "bob"
    assert _recover(data_dir, conf)[1].types() == []  # ended: the next start has nothing to do


def test_rollback_steps_done_before_the_crash_are_not_run_again(data_dir, tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")
    _crashed_mid_cancel(data_dir, conf, [CANCEL, {"t": "step", "step": "undo", "attempt": 1, "started": 1.0},
                                         {"t": "result", "step": "undo", "attempt": 1, "ok": True}])
    jobs, second = _recover(data_dir, conf)
    assert jobs == [] and conf.read_text() == "old\n"
    assert "ops.undone" not in second.types() and second.types()[-1] == "reactor.cancelled"
    assert second.reactor.store.get(RUN).status == "cancelled"


def test_a_live_cancel_is_journaled_before_it_acts_and_closes_the_approval(data_dir, tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")

    async def scenario() -> Engine:
        engine, run_id = await _waiting(data_dir, conf)
        assert (await engine.controls.cancel(run_id, "bob", "no"))[0] == 200
        return engine

    engine = asyncio.run(scenario())
    kinds = [e["t"] for e in engine.journal(RUN)]
    assert kinds.index("cancel") < kinds.index("end")
    assert [e for e in engine.journal(RUN) if e["t"] == "cancel"] == [{"t": "cancel", "by": "bob", "reason": "no"}]
    assert engine.h.reactor.store.get(RUN).approval["status"] == "cancelled"


def test_a_recovered_waiting_run_is_listed_and_answered_while_it_queues_without_a_slot(data_dir, tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text("old\n")
    _crashed_mid_cancel(data_dir, conf, [])  # no cancel: just left waiting by a stopped engine

    async def scenario() -> Engine:
        engine = Engine(data_dir, [_undoing_playbook(conf)], max_concurrent=0)  # every slot busy
        jobs = await engine.h.reactor.recover()
        assert [w["run_id"] for w in engine.controls.approvals()] == [RUN]
        await engine.scheduler.offer(jobs[0])
        assert engine.scheduler.depth == 1  # queued, not started
        status, body = await engine.controls.answer(RUN, True, "alice", "go")
        assert (status, body["answer"]) == (200, "approved"), body
        assert [e["by"] for e in engine.journal(RUN) if e["t"] == "answer"] == ["alice"]
        assert engine.controls.approvals() == [] and engine.h.types() == ["reactor.approved"]
        assert engine.h.reactor.store.get(RUN).approval["status"] == "approved"
        engine.scheduler.max_concurrent = 1
        engine.scheduler._pump()  # a slot frees up
        await engine.scheduler.wait_idle()
        return engine

    engine = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert engine.h.types() == ["reactor.approved", "reactor.resumed", "reactor.succeeded"]  # not asked again
    assert engine.h.reactor.store.get(RUN).status == "succeeded" and conf.read_text() == "new\n"
