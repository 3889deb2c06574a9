"""The reactor: runs one playbook for one event, transactionally.

A run: journal `start` → `reactor.started` → snapshot of declared paths → the steps as a DAG (steps whose
`needs` are done run in parallel; a failed step skips its dependants), each try under its timeout and
retried with exponential backoff → `reactor.succeeded`, or on failure: restore the snapshot, run the
`rollback` steps in reverse order, `reactor.failed` then `reactor.rolled_back`. Cancellation (`cancel`,
asked by a person, or engine shutdown past its grace) kills the running steps' process trees and rolls
back the same way, then `reactor.cancelled`; the run ends `cancelled`, which the breaker does not count.
An `approve` step waits for a person's answer without a concurrency slot (`ReactorDeps.park`).
Every state change is journaled first, so after a crash `recover()` kills what unfinished steps left and
rolls back runs caught inside a step, and hands back the runs that were waiting for a retry or for an
approval as jobs: they go through the guards and the scheduler again once the engine is up (the same run
id, continuing from their journal), or are closed with `abandon`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.actions.base import Action, ActionError, AgentControl, RunInfo, Services, StepResult
from engine.actions.process import run_mark
from engine.admission.scheduler import Job
from engine.dag import run_dag
from engine.events import format_ts
from engine.osutil import proctree
from engine.playbooks.model import Playbook, Retry, Step
from engine.playbooks.templates import TemplateError, render, render_tree, resolve
from engine.reactor.approvals import Waiting, WaitingRoom
from engine.reactor.journal import Journal, JournalState, unfinished
from engine.reactor.records import Attempt, RollbackEntry, RunRecord, RunStore, StepRecord, tail
from engine.reactor.snapshot import Snapshot, SnapshotError, SnapshotMissing

log = logging.getLogger("aios.reactor")

# emit(type, data, cause_event, severity) -> the stored event
Emit = Callable[[str, dict[str, Any], dict[str, Any], str], Awaitable[dict[str, Any]]]
WaitFor = Callable[[str, dict[str, Any], float, float], Awaitable[dict[str, Any] | None]]
ENGINE = "engine"  # `by` of a run cancelled because the engine stopped
SHUTDOWN_REASON = "engine stopped before the run finished"


def untouched(roots: list[str], restored: list[str]) -> list[str]:
    """The captured roots a restore left alone: neither they nor anything below them changed."""
    changed = set(restored)
    return [root for root in roots
            if root not in changed and not any(path.startswith(root.rstrip("/") + "/") for path in changed)]


def backoff_delay(retry: Retry, attempt: int, rng: random.Random) -> float:
    """Wait before retry number `attempt` (1-based): backoff·factor^(attempt-1), capped, plus ≤10% jitter."""
    base = min(retry.backoff_s * retry.factor ** (attempt - 1), retry.max_delay_s)
    return base + rng.uniform(0, base * 0.1)


@dataclass(slots=True)
class ReactorDeps:
    """What the reactor needs from the rest of the engine (all injectable for tests)."""

    data_dir: Path
    emit: Emit
    agents: AgentControl
    wait_for: WaitFor  # (type, where, within_s, since_epoch)
    compact: Callable[[], Awaitable[dict[str, Any]]]
    actions: Mapping[str, Action]
    playbook: Callable[[str], Playbook | None]  # the current playbook by id, for recovery
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    python: str = "python3"
    snapshot_cap_bytes: int = 64 << 20
    on_outcome: Callable[[Job, str], Awaitable[None]] | None = None  # breaker bookkeeping
    # park(run_id): while inside, the run holds no concurrency slot (the scheduler's `parked`)
    park: Callable[[str], AbstractAsyncContextManager[None]] | None = None


class _Run:
    """The state of one run while it executes."""

    def __init__(self, deps: ReactorDeps, job: Job, journal: Journal, record: RunRecord, store: RunStore,
                 room: WaitingRoom | None = None) -> None:
        self.deps = deps
        self.room = room or WaitingRoom()
        self.store = store
        self.job = job
        self.pb = job.playbook
        self.journal = journal
        self.record = record
        self.results: dict[str, StepResult] = {}
        self.snapshot: Snapshot | None = None
        self._saving = asyncio.Lock()
        self._capturing = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.cancel: tuple[str, str | None] | None = None  # (by, reason) once cancelling
        self.steps_task: asyncio.Future[str | None] | None = None
        self.approvals: dict[str, dict[str, Any]] = {}  # approve steps already asking (from the journal)
        self.awaiting: Waiting | None = None  # set while an approve step waits, until it goes on
        self.over = False  # its outcome is decided (steps over, failing or ending): too late to cancel
        self.rolled_back: set[str] = set()  # rollback steps already done before a crash (not run again)

    # -- templates --------------------------------------------------------------------------------
    def lookup(self, path: str) -> Any:
        if path.startswith("steps."):
            _, step, field_name = (path.split(".", 2) + ["", ""])[:3]
            result = self.results.get(step)
            if result is None or field_name not in ("stdout", "exit_code"):
                raise KeyError(path)
            return getattr(result, field_name)
        return resolve(self.job.event, path)

    def render(self, step: Step) -> dict[str, Any]:
        try:
            return render_tree(step.with_, self.lookup)
        except KeyError as exc:
            raise ActionError(f"template {{{exc.args[0]}}}: no such path in the event or earlier steps") from None
        except TemplateError as exc:
            raise ActionError(f"bad template: {exc}") from None

    # -- one step, with retries -------------------------------------------------------------------
    async def step(self, step: Step, rollback: bool = False, first_attempt: int = 1,
                   resume_at: float | None = None) -> StepResult:
        retry = step.retry or self.pb.retry
        timeout = step.timeout_s or self.pb.timeout_s
        records = self.record.rollback_steps if rollback else self.record.steps
        step_record = next((r for r in records if r.id == step.id), None)  # a resumed step continues its record
        if step_record is None:
            step_record = StepRecord(id=step.id, action=step.action)
            records.append(step_record)
        if resume_at is not None:
            await self.deps.sleep(max(0.0, resume_at - self.deps.clock()))
        attempt = first_attempt
        final = getattr(self.deps.actions.get(step.action), "asks_a_person", False)  # an answer is not retried
        while True:
            result = await self.attempt(step, attempt, timeout, step_record)
            if result.ok or attempt > retry.attempts or final:
                break
            delay = backoff_delay(retry, attempt, self.deps.rng)
            await self.journal.awrite("wait", step=step.id, attempt=attempt, until=self.deps.clock() + delay)
            await self.deps.sleep(delay)
            attempt += 1
        step_record.status = "ok" if result.ok else ("timeout" if result.error == "timeout" else "failed")
        return result

    async def attempt(self, step: Step, attempt: int, timeout: float, step_record: StepRecord) -> StepResult:
        deps = self.deps
        started = deps.clock()
        await self.journal.awrite("step", step=step.id, attempt=attempt, started=started)
        info = RunInfo(self.job.run_id, self.pb.id, step.id, attempt, self.job.event)
        marker = run_mark(info)

        def track(pid: int) -> None:  # informational: recovery kills by marker, so no fsync on the loop
            task = asyncio.ensure_future(self.journal.awrite("pid", step=step.id, attempt=attempt, pid=pid,
                                                             marker=marker))
            self._background.add(task)
            task.add_done_callback(self._tracked)

        async def wait_for(type_: str, where: dict[str, Any], within_s: float) -> dict[str, Any] | None:
            return await deps.wait_for(type_, where, within_s, started)

        async def ask(message: str, timeout_s: float) -> dict[str, Any]:
            return await self.ask(step.id, attempt, message, timeout_s)

        services = Services(deps.data_dir, self.emit_from_step, deps.agents, wait_for, deps.compact, track,
                            deps.clock, deps.python, ask)
        try:
            action = deps.actions.get(step.action)
            if action is None:
                raise ActionError(f"unknown action {step.action!r}")
            args = self.render(step)
            if step.action == "write_file":
                await self.capture([str(args.get("path"))])  # the state before this run wrote it
            # A step that waits for a person has its own timeout; the step timeout bounds machines.
            result = await asyncio.wait_for(action(info, services, args), None if action.asks_a_person else timeout)
        except asyncio.CancelledError:
            if self.cancel is not None or self.awaiting is None:  # (left waiting at shutdown: nothing ended)
                finished = deps.clock()
                step_record.status = "cancelled"
                step_record.attempts.append(Attempt(
                    started=format_ts(started), finished=format_ts(finished),
                    duration_ms=round((finished - started) * 1000), error="cancelled"))
            raise
        except asyncio.TimeoutError:
            result = StepResult(ok=False, error="timeout")
            await self.emit("reactor.timeout", {"step": step.id, "attempt": attempt, "timeout_s": timeout},
                            "warning")
        except (ActionError, SnapshotError, OSError) as exc:
            result = StepResult(ok=False, error=str(exc))
        except Exception as exc:  # a bug in an action fails its step, never the engine
            log.exception("action %s of run %s failed unexpectedly", step.action, self.job.run_id)
            result = StepResult(ok=False, error=f"internal error: {type(exc).__name__}: {exc}")
        finished = deps.clock()
        await self.journal.awrite("result", step=step.id, attempt=attempt, ok=result.ok, exit_code=result.exit_code,
                           stdout=tail(result.stdout), error=result.error)
        step_record.attempts.append(Attempt(
            started=format_ts(started), finished=format_ts(finished), duration_ms=round((finished - started) * 1000),
            ok=result.ok, exit_code=result.exit_code, detail=result.detail, stdout=result.stdout,
            stderr=result.stderr, error=result.error))
        self.results[step.id] = result
        await self.save()  # readable progress: `aios-engine runs ID` while it runs
        return result

    async def ask(self, step_id: str, attempt: int, message: str, timeout_s: float) -> dict[str, Any]:
        """An approve step: announce the question, wait for the answer (or the expiry) without a slot, take
        a slot again. A run resumed after a restart keeps its first question's expiry and any answer."""
        deps, prior = self.deps, self.approvals.pop(step_id, None)
        if prior is not None:
            message, requested, expires = prior["message"], prior["requested_at"], prior["expires_at"]
        else:
            requested = deps.clock()
            expires = requested + timeout_s
        await self.journal.awrite("approval", step=step_id, attempt=attempt, message=message,
                                  requested_at=requested, expires_at=expires)
        answered = (prior or {}).get("answer")
        if answered is not None:  # answered before the engine stopped: taken as given
            await self.journal.awrite("answer", step=step_id, **answered)
            return {**answered, "expires_at": format_ts(expires)}
        agent = self.job.event.get("agent")
        self.record.approval = {"step": step_id, "message": message, "requested_at": format_ts(requested),
                                "expires_at": format_ts(expires), "status": "waiting"}
        await self.save()
        if prior is None:
            await self.emit("reactor.approval_requested", {"agent": agent, "step": step_id, "message": message,
                                                           "expires_at": format_ts(expires)})
            log.info("approval requested", extra={**self.log_fields(), "step": step_id, "question": message,
                                                  "expires_at": format_ts(expires)})
        self.awaiting = Waiting(self.job.run_id, self.pb.id, agent, self.job.event.get("id"), step_id, message,
                                requested, expires)
        park = deps.park(self.job.run_id) if deps.park is not None else contextlib.nullcontext()
        recorded = self.awaiting.recorded
        try:
            async with park:  # no slot while waiting; one is taken again on the way out
                answer = await self.room.wait(self.awaiting, deps.clock, deps.sleep)
                await self.record_answer(step_id, answer)
                recorded.set_result(True)  # the person who answered hears so only now
        finally:
            if not recorded.done():  # cancelled (or failed) before the answer was recorded: it does not count
                recorded.set_result(False)
        self.awaiting = None
        return {**answer, "expires_at": format_ts(expires)}

    async def record_answer(self, step_id: str, answer: dict[str, Any]) -> None:
        """Journal, announce, log and record the answer to the approve step `step_id`."""
        await self.journal.awrite("answer", step=step_id, **answer)
        approved = answer["approved"]
        await self.emit("reactor.approved" if approved else "reactor.denied",
                        {"agent": self.job.event.get("agent"), "step": step_id, "by": answer["by"],
                         "reason": answer["reason"]}, "info" if approved else "warning")
        log.log(logging.INFO if approved else logging.WARNING, "run approved" if approved else "run denied",
                extra={**self.log_fields(), "step": step_id, "by": answer["by"], "reason": answer["reason"]})
        if self.record.approval is not None:
            self.record.approval.update(status="approved" if approved else "denied", by=answer["by"],
                                        reason=answer["reason"], answered_at=format_ts(self.deps.clock()))
        await self.save()

    def request_cancel(self, by: str, reason: str | None) -> str:
        """`cancelling`, or why not: `already` (being cancelled), `finishing` (its steps are over)."""
        if self.cancel is not None:
            return "already"
        if self.over or (self.steps_task is not None and self.steps_task.done()):
            return "finishing"
        self.mark_cancel(by, reason)
        if self.steps_task is not None:
            self.steps_task.cancel()  # the actions kill their process trees on the way out
        return "cancelling"

    def mark_cancel(self, by: str, reason: str | None) -> None:
        """Record the cancel, journaled before anything acts on it (one fsync, on the loop: the journal must
        say so before the steps are stopped), so a crash mid-cancel is finished as a cancel at the next start."""
        self.cancel = (by, reason)
        try:
            self.journal.write("cancel", by=by, reason=reason)
        except OSError as exc:  # a full disk must not keep a person from stopping a run
            log.error("cancel of run %s not journaled: %s", self.job.run_id, exc, extra=self.log_fields())

    def _tracked(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("journal pid line of run %s not written", self.job.run_id, exc_info=task.exception())

    async def settle(self) -> None:
        """Wait for journal lines still being written in the background (before the journal closes)."""
        await asyncio.gather(*self._background, return_exceptions=True)

    async def save(self) -> None:
        """Write the record off the event loop, one write at a time: parallel steps share one record file."""
        async with self._saving:
            await asyncio.to_thread(self.store.save, self.record)

    async def capture(self, paths: list[str]) -> None:
        """Snapshot `paths` (first capture wins), creating the run's snapshot on first need. One capture
        at a time: parallel write_file steps share the snapshot and its manifest."""
        if not paths:
            return
        async with self._capturing:
            if self.snapshot is None:
                self.snapshot = await asyncio.to_thread(Snapshot.create, self.deps.data_dir, self.job.run_id,
                                                        self.deps.snapshot_cap_bytes)
            await asyncio.to_thread(self.snapshot.capture, paths)
            self.record.snapshot = self.snapshot.info()

    # -- events -----------------------------------------------------------------------------------
    def log_fields(self) -> dict[str, Any]:
        """What every log line about this run names (the JSON log's fields)."""
        return {"run_id": self.job.run_id, "playbook": self.pb.id, "cause": self.job.event.get("id"),
                "agent": self.job.event.get("agent")}

    async def emit(self, type_: str, data: dict[str, Any], severity: str = "info") -> dict[str, Any]:
        payload = {"run_id": self.job.run_id, "playbook": self.pb.id, "cause": self.job.event.get("id"), **data}
        return await self.deps.emit(type_, payload, self.job.event, severity)

    async def emit_from_step(self, type_: str, data: dict[str, Any], severity: str,
                             agent: str | None) -> dict[str, Any]:
        payload = dict(data)
        payload.setdefault("run_id", self.job.run_id)
        payload.setdefault("playbook", self.pb.id)
        event = dict(self.job.event)
        if agent is not None:
            event["agent"] = agent
        return await self.deps.emit(type_, payload, event, severity)

    # -- the DAG ----------------------------------------------------------------------------------
    async def steps(self, done: dict[str, bool],
                    resume: dict[str, tuple[int, float | None]] | None = None) -> str | None:
        """Run every step not in `done`; returns the id of the first failed step, or None."""
        resume = resume or {}
        by_id = {s.id: s for s in self.pb.steps}

        async def run(step_id: str) -> bool:
            first, until = resume.get(step_id, (1, None))
            return (await self.step(by_id[step_id], first_attempt=first, resume_at=until)).ok

        async def skip(step_id: str) -> None:
            await self.journal.awrite("skip", step=step_id)
            self.record.steps.append(StepRecord(id=step_id, action=by_id[step_id].action, status="skipped"))

        return await run_dag({s.id: s.needs for s in self.pb.steps}, run, done, skip)

    async def roll_back(self, why: str) -> None:
        """Restore files, then the rollback steps in reverse order (failures there are recorded, not fatal).

        A run counts as rolled back when something was restored or rollback steps ran, and after a crash
        whenever it has a snapshot: the engine could not know how far the interrupted step got, so the
        restore is what checked the files, even when none needed putting back (`untouched`)."""
        restored = await asyncio.to_thread(self.snapshot.restore) if self.snapshot is not None else []
        if restored:
            self.record.rollbacks.append(RollbackEntry(format_ts(self.deps.clock()), "reactor", False, restored))
        for step in reversed(self.pb.rollback):
            if step.id not in self.rolled_back:
                await self.step(step, rollback=True)
        if restored or self.pb.rollback or (why == "crash_recovery" and self.snapshot is not None):
            self.record.status = "rolled_back"
            roots = self.snapshot.roots if self.snapshot is not None else []
            await self.emit("reactor.rolled_back", {
                "why": why, "restored": restored, "untouched": untouched(roots, restored),
                "rollback_steps": {s.id: s.status for s in self.record.rollback_steps}}, "warning")


class Reactor:
    """Runs jobs the scheduler starts; `recover()` finishes what a crash interrupted."""

    def __init__(self, deps: ReactorDeps) -> None:
        self.deps = deps
        self.runs_dir = deps.data_dir / "runs"
        self.store = RunStore(deps.data_dir)
        self.room = WaitingRoom()  # runs waiting at an approve step
        self.active: dict[str, _Run] = {}
        self._cancels: dict[str, tuple[str, str | None]] = {}  # asked before the run got going here
        self._ends: dict[str, asyncio.Future[str]] = {}
        # recovered runs waiting for an answer, not going yet (queued): run id -> (job, step); listed in `room`
        self._recovered: dict[str, tuple[Job, str]] = {}
        self._recording: dict[str, asyncio.Task[None]] = {}  # answers to such runs being recorded, by run id

    # -- run controls ----------------------------------------------------------------------------
    def cancel(self, run_id: str, by: str, reason: str | None) -> str:
        """Cancel a run that has started (the scheduler says so, though it may not have reached `run` yet):
        `cancelling`, `already` or `finishing` (see `_Run.request_cancel`). Await `ended(run_id)`."""
        run = self.active.get(run_id)
        if run is None:
            self._cancels.setdefault(run_id, (by, reason))
            return "cancelling"
        return run.request_cancel(by, reason)

    def ended(self, run_id: str) -> asyncio.Future[str]:
        """Resolves with the final status of `run_id` when its `run` returns (also for a run not begun yet)."""
        return self._ends.setdefault(run_id, asyncio.get_running_loop().create_future())

    def answer(self, run_id: str, approved: bool, by: str, reason: str | None) -> asyncio.Future[bool] | None:
        """A person's answer to the approve step `run_id` waits at (see `WaitingRoom.answer`); None when it
        waits for none, or is being cancelled (a cancel and an answer at once: the cancel wins)."""
        run = self.active.get(run_id)
        if run is not None and run.cancel is not None:
            return None
        queued = self._recovered.get(run_id) if run is None else None
        waiting = self.room.waiting.get(run_id)
        if queued is not None and waiting is not None and self.deps.clock() >= waiting.expires_at:
            return None  # expired while it queued: it is denied by timeout when it goes on
        recorded = self.room.answer(run_id, approved, by, reason)
        if recorded is not None and queued is not None and waiting is not None:
            task = asyncio.get_running_loop().create_task(self._answer_queued(*queued, waiting))
            self._recording[run_id] = task  # held until done; the answer's caller awaits `recorded`
            task.add_done_callback(lambda _: self._recording.pop(run_id, None))
        return recorded

    def _forget_wait(self, run_id: str) -> None:
        """A recovered run's question is no longer open here (it goes on, or is closed)."""
        if self._recovered.pop(run_id, None) is not None:
            self.room.waiting.pop(run_id, None)

    async def _answer_queued(self, job: Job, step_id: str, waiting: Waiting) -> None:
        """Record the answer to a recovered run that still queues for a slot: journaled, announced and in its
        resume state, so that it goes on with it as an answer given before (it is not asked again)."""
        self._recovered.pop(job.run_id, None)
        resumed: _Resume = job.extra["resume"]
        answer = waiting.answer.result()
        try:
            journal = await asyncio.to_thread(Journal, self.runs_dir / job.run_id / "journal.jsonl")
            try:
                await _Run(self.deps, job, journal, resumed.record, self.store).record_answer(step_id, answer)
            finally:
                journal.close()
            resumed.approvals[step_id]["answer"] = answer
            waiting.recorded.set_result(True)
        except Exception:
            log.exception("answer to queued run %s not recorded", job.run_id)
        finally:
            if not waiting.recorded.done():
                waiting.recorded.set_result(False)

    async def run(self, job: Job) -> str:
        """Run `job` to the end; returns the final status (succeeded, failed, timeout, rolled_back,
        cancelled). A job from `recover()` continues its run where the journal left it."""
        ended, status = self.ended(job.run_id), "cancelled"
        try:
            status = await self._run(job)
            return status
        finally:
            self.active.pop(job.run_id, None)
            self._ends.pop(job.run_id, None)
            self._cancels.pop(job.run_id, None)
            if not ended.done():
                ended.set_result(status)

    async def _run(self, job: Job) -> str:
        resumed: _Resume | None = job.extra.get("resume")
        try:
            journal = await asyncio.to_thread(Journal, self.runs_dir / job.run_id / "journal.jsonl")  # mkdir, fsync
            if resumed is None:
                await journal.awrite("start", playbook=job.playbook.id, event=job.event, priority=job.priority,
                                     key=list(job.key))
                record = await self._new_record(job)
            else:
                record = resumed.record
        except OSError as exc:  # a full disk, say: the run never began, but whoever waits for it must hear so
            log.error("run %s of %s could not start: %s", job.run_id, job.playbook.id, exc)
            await self.deps.emit("reactor.failed", {"run_id": job.run_id, "playbook": job.playbook.id,
                                                    "cause": job.event.get("id"), "status": "error",
                                                    "reason": f"could not start: {exc}"}, job.event, "error")
            return "error"
        self._forget_wait(job.run_id)  # from here the run asks itself (and registers its own wait)
        recording = self._recording.get(job.run_id)
        if recording is not None:  # answered just before it got its slot: it goes on with that answer
            await asyncio.shield(recording)
        run = _Run(self.deps, job, journal, record, self.store, self.room)
        pending = self._cancels.pop(job.run_id, None)
        if pending is not None:  # asked before the run got going
            run.mark_cancel(*pending)
        self.active[job.run_id] = run
        try:
            if resumed is None:
                rerun = {"rerun_of": job.extra["rerun_of"], "by": job.extra.get("by")} \
                    if "rerun_of" in job.extra else {}
                await run.emit("reactor.started", {"priority": job.priority, **rerun})
                return await self._execute(run, done={})
            resumed.prime(run)
            await run.emit("reactor.resumed", {"steps": sorted(resumed.resume)})
            return await self._execute(run, resumed.done, resumed.resume)
        except Exception as exc:  # the store refused an outcome event, say: close the run as far as possible
            log.exception("run %s of %s stopped unexpectedly", job.run_id, job.playbook.id)
            run.record.status = "failed"
            run.record.error = f"engine error: {type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                await run.roll_back("failure")
            with contextlib.suppress(Exception):
                await run.save()
            with contextlib.suppress(Exception):
                await journal.awrite("end", status=run.record.status)
            # Not counted by the breaker ("error" is not a failed fix): a full disk must not switch off the
            # very playbook that frees it.
            await self._outcome(job, "error")
            return run.record.status
        finally:
            run.over = True  # still `active` (until `run` returns): a cancel now hears it has finished
            await run.settle()
            journal.close()

    async def _new_record(self, job: Job) -> RunRecord:
        record = RunRecord(run_id=job.run_id, playbook=job.playbook.id, cause=job.event.get("id", ""),
                           cause_type=job.event.get("type", ""), agent=job.event.get("agent"),
                           priority=job.priority, status="running", started=format_ts(self.deps.clock()),
                           rerun_of=job.extra.get("rerun_of"))
        await asyncio.to_thread(self.store.save, record)  # before anything runs: `runs` shows it at once
        return record

    async def _execute(self, run: _Run, done: dict[str, bool],
                       resume: dict[str, tuple[int, float | None]] | None = None) -> str:
        try:
            if not done:  # a fresh run (a resumed one has its snapshot already)
                try:
                    await run.capture(self._pre_run_paths(run))
                except (SnapshotError, ActionError, OSError) as exc:
                    return await self._fail(run, "failed", f"snapshot: {exc}")
            if run.cancel is not None:  # cancelled before its first step
                return await self._cancelled(run)
            run.steps_task = asyncio.ensure_future(run.steps(done, resume))
            failed = await run.steps_task
            run.over = True
        except asyncio.CancelledError:
            current = asyncio.current_task()
            stopping = current is not None and current.cancelling() > 0  # the engine, not just our steps
            if not stopping and run.cancel is not None:
                return await self._cancelled(run)
            if run.awaiting is not None and run.cancel is None:  # waiting for a person: the next engine waits on
                await run.save()
                raise
            # Shutdown cancels a run once; finishing the rollback here (not in the background) means the
            # engine closes its store only after the files are restored and the outcome is recorded.
            if run.cancel is None:
                run.mark_cancel(ENGINE, SHUTDOWN_REASON)
            await self._cancelled(run)
            raise
        if failed is None:
            run.record.status = "succeeded"
            await run.emit("reactor.succeeded", {"steps": len(run.pb.steps)})
            return await self._end(run, "succeeded")
        result = run.results.get(failed)
        reason = result.error if result and result.error else f"exit code {result.exit_code if result else '?'}"
        status = "timeout" if result is not None and result.error == "timeout" else "failed"
        return await self._fail(run, status, f"step {failed} failed: {reason}", failed_step=failed)

    @staticmethod
    def _pre_run_paths(run: _Run) -> list[str]:
        """Declared snapshot paths, plus write_file targets already known from the event alone."""
        paths = []
        for path in run.pb.snapshot:
            try:
                paths.append(str(render(path, run.lookup)))
            except (KeyError, TemplateError) as exc:
                raise ActionError(f"snapshot path {path!r}: cannot render {exc}") from None
        for step in run.pb.steps:
            if step.action == "write_file" and isinstance(step.with_.get("path"), str):
                try:
                    paths.append(str(render(step.with_["path"], run.lookup)))
                except (KeyError, TemplateError):
                    pass  # depends on an earlier step: captured just before the write
        return paths

    async def _fail(self, run: _Run, status: str, reason: str, failed_step: str | None = None) -> str:
        run.over = True
        run.record.status = status
        run.record.error = reason
        data: dict[str, Any] = {"reason": reason, "status": status}  # failed, timeout, cancelled, error
        if failed_step:
            data["step"] = failed_step
        cancelled = run.record.cancelled
        if cancelled is not None:
            data["by"] = cancelled["by"]
        await run.emit("reactor.failed", data, "error")  # every run ends with succeeded or failed (problems)
        await run.roll_back("cancelled" if status == "cancelled" else "failure")
        if cancelled is None:
            return await self._end(run, run.record.status)
        await run.emit("reactor.cancelled", {"agent": run.job.event.get("agent"), "by": cancelled["by"],
                                             "reason": cancelled["reason"]}, "warning")
        return await self._end(run, "cancelled")  # not `rolled_back`: it did not fail, someone stopped it

    async def _cancelled(self, run: _Run) -> str:
        """Like a failure (files restored, rollback steps run), then `reactor.cancelled`; the run ends
        `cancelled` whatever the rollback did, and the breaker does not count it."""
        assert run.cancel is not None
        by, reason = run.cancel
        now = format_ts(self.deps.clock())
        run.record.cancelled = {"by": by, "reason": reason, "at": now}
        if run.record.approval is not None and run.record.approval.get("status") == "waiting":  # closed unanswered
            run.record.approval.update(status="cancelled", by=by, reason=reason, answered_at=now)
        text = reason if by == ENGINE else f"cancelled by {by}" + (f": {reason}" if reason else "")
        return await self._fail(run, "cancelled", text or SHUTDOWN_REASON)

    async def _end(self, run: _Run, status: str, counted: bool = True) -> str:
        if run.snapshot is not None:  # the files as the run left them (restored, if it failed)
            await asyncio.to_thread(run.snapshot.seal)
            run.record.snapshot = run.snapshot.info()  # now with `sealed`
        run.record.status = status
        run.record.finished = format_ts(self.deps.clock())
        await run.save()
        await run.journal.awrite("end", status=status)
        await self._outcome(run.job, status if counted else "error")
        log.log(logging.INFO if status == "succeeded" else logging.WARNING, "run %s", status,
                extra={"run_id": run.job.run_id, "playbook": run.pb.id, "cause": run.job.event.get("id"),
                       "agent": run.job.event.get("agent"), "status": status, "error": run.record.error})
        return status

    async def _outcome(self, job: Job, status: str) -> None:
        if self.deps.on_outcome is None:
            return
        try:
            await self.deps.on_outcome(job, status)
        except Exception:  # bookkeeping must not turn a finished run into an engine error
            log.exception("outcome bookkeeping failed for run %s", job.run_id)

    # -- crash recovery ---------------------------------------------------------------------------
    async def recover(self) -> list[Job]:
        """At start, before anything else runs: kill what unfinished steps left, roll back the runs a crash
        caught inside a step (or after a failed step, or whose playbook is gone), and return the runs that
        were waiting for a retry or an approval as jobs to admit again. Waiting for a retry never happens here, so
        start-up does not depend on pending runs."""
        jobs = []
        for state in list(unfinished(self.runs_dir)):
            try:
                job = await self._recover_one(state)
            except Exception as exc:  # one damaged run must not keep the engine from starting, ever
                log.exception("crash recovery of run %s failed; closing it as failed", state.run_id)
                await asyncio.to_thread(self._close_damaged, state.run_id, f"{type(exc).__name__}: {exc}")
                continue
            if job is not None:
                jobs.append(job)
                self._list_wait(job)
        return jobs

    def _list_wait(self, job: Job) -> None:
        """A recovered run waiting for an answer is listed (and can be answered) at once, while it queues."""
        resumed: _Resume = job.extra["resume"]
        for step_id, entry in resumed.approvals.items():
            if "answer" not in entry:
                event = job.event
                self.room.waiting[job.run_id] = Waiting(
                    job.run_id, job.playbook.id, event.get("agent"), event.get("id"), step_id, entry["message"],
                    entry["requested_at"], entry["expires_at"])
                self._recovered[job.run_id] = (job, step_id)

    def _close_damaged(self, run_id: str, why: str) -> None:
        """End the journal (so the next start does not try again) and mark the record, as far as possible."""
        with contextlib.suppress(Exception):
            journal = Journal(self.runs_dir / run_id / "journal.jsonl")
            journal.write("end", status="failed", error=f"crash_recovery failed: {why}")
            journal.close()
        with contextlib.suppress(Exception):
            record = self.store.get(run_id)
            record.status = "failed"
            record.error = f"crash_recovery failed: {why}"
            record.finished = format_ts(self.deps.clock())
            self.store.save(record)

    async def _recover_one(self, state: JournalState) -> Job | None:
        start = state.start
        playbook = self.deps.playbook(start["playbook"])
        record = self._load_record(state, start)
        job = Job(playbook or Playbook(id=start["playbook"], on=()), start["event"], start["priority"],
                  tuple(start.get("key") or ()), run_id=state.run_id)
        resumed = _Resume.from_state(state, record, self.deps.data_dir)
        failed_before = sorted(step for step, entry in state.results.items()
                               if not entry["ok"] and step not in state.waiting)
        if not (state.crashed_in_step or playbook is None or failed_before or state.cancel is not None):
            job.extra["resume"] = resumed
            return job
        for marker in state.markers:
            await asyncio.to_thread(proctree.kill_marked, marker)
        if state.cancel is not None:  # stopped mid-cancel: finish the cancel, once
            await self._finish_cancel(job, resumed, state)
            return None
        why = ("the engine stopped inside a step" if state.crashed_in_step else
               "the playbook is gone" if playbook is None else
               f"step {failed_before[0]} had failed; the engine stopped before rolling back")
        await self.abandon(job, why, resumed)
        return None

    async def abandon(self, job: Job, why: str, resumed: _Resume | None = None) -> str:
        """Close a recovered run that will not continue: failed with `crash_recovery: why`, rolled back."""
        resumed = resumed or job.extra["resume"]
        self._forget_wait(job.run_id)
        journal = await asyncio.to_thread(Journal, self.runs_dir / job.run_id / "journal.jsonl")  # mkdir, fsync
        run = _Run(self.deps, job, journal, resumed.record, self.store)
        try:
            resumed.prime(run)
            run.record.status = "failed"
            run.record.error = f"crash_recovery: {why}"
            await run.emit("reactor.failed", {"reason": f"crash_recovery: {why}", "status": "abandoned"}, "error")
            await run.roll_back("crash_recovery")
            return await self._end(run, run.record.status, counted=False)  # the engine died, not the fix
        finally:
            await run.settle()
            journal.close()

    async def _finish_cancel(self, job: Job, resumed: _Resume, state: JournalState) -> str:
        """A run the engine stopped in the middle of cancelling: as the cancel would have ended it (files
        restored, the rollback steps not yet done run, `reactor.cancelled`, status `cancelled`)."""
        assert state.cancel is not None
        journal = await asyncio.to_thread(Journal, self.runs_dir / job.run_id / "journal.jsonl")
        run = _Run(self.deps, job, journal, resumed.record, self.store)
        try:
            resumed.prime(run)
            run.cancel = (state.cancel["by"] or ENGINE, state.cancel["reason"])  # journaled already
            run.rolled_back = {s.id for s in job.playbook.rollback if s.id in state.done_since_cancel}
            return await self._cancelled(run)
        finally:
            await run.settle()
            journal.close()

    def _load_record(self, state: JournalState, start: dict[str, Any]) -> RunRecord:
        try:
            return self.store.get(state.run_id)
        except KeyError:
            event = start["event"]
            return RunRecord(run_id=state.run_id, playbook=start["playbook"], cause=event.get("id", ""),
                             cause_type=event.get("type", ""), agent=event.get("agent"), priority=start["priority"],
                             status="running", started=format_ts(self.deps.clock()))


@dataclass(slots=True)
class _Resume:
    """What a recovered run continues from: its record, snapshot, step results, and where to pick up."""

    record: RunRecord
    snapshot: Snapshot | None
    results: dict[str, StepResult]
    done: dict[str, bool]
    resume: dict[str, tuple[int, float | None]]  # step -> (next attempt, when its wait ends)
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)  # approve steps asking (journal entries)

    @classmethod
    def from_state(cls, state: JournalState, record: RunRecord, data_dir: Path) -> _Resume:
        try:
            snapshot: Snapshot | None = Snapshot.load(data_dir, state.run_id)
        except SnapshotMissing:
            snapshot = None  # the run had nothing to capture
        if snapshot is not None:  # the record may predate the capture (it is saved before anything runs)
            record.snapshot = snapshot.info()
        results = {step_id: StepResult(ok=entry["ok"], exit_code=entry.get("exit_code"),
                                       stdout=entry.get("stdout") or "", error=entry.get("error"))
                   for step_id, entry in state.results.items()}
        done = {step_id: entry["ok"] for step_id, entry in state.results.items() if step_id not in state.waiting}
        done.update({step_id: False for step_id in state.skipped})
        resume: dict[str, tuple[int, float | None]] = {
            step_id: (entry["attempt"] + 1, entry["until"]) for step_id, entry in state.waiting.items()}
        resume.update({step_id: (entry["attempt"], None) for step_id, entry in state.approvals.items()})
        return cls(record, snapshot, results, done, resume, dict(state.approvals))

    def prime(self, run: _Run) -> None:
        run.snapshot = self.snapshot
        run.results.update(self.results)
        run.approvals.update(self.approvals)
