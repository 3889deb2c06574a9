"""Run controls: cancel a run, re-run a finished one, answer an `approve` step (issue 15).

Each answer is `(HTTP status, body)`, the API's and the CLI's: 200 done; 202 a cancel still rolling back
(or an approval not yet recorded) when the wait ends; 404 no such run; 409 a run in the wrong state for it
(with the reason); 422 a damaged record or journal. Who asked (`by`) goes into every event the control
causes, and each refusal into the engine's log.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from engine.admission.dispatch import Dispatcher
from engine.admission.scheduler import ACCEPTED, Job, Scheduler
from engine.playbooks.matcher import key_text
from engine.playbooks.model import PRIORITIES, Playbook
from engine.reactor.journal import start_entry
from engine.reactor.records import RecordError, RunRecord
from engine.reactor.runner import Emit, Reactor

log = logging.getLogger("aios.reactor")
Answer = tuple[int, dict[str, Any]]
END_WAIT_S = 20.0  # how long `cancel` waits for the run to finish rolling back before answering 202: well
# under the CLI client's timeout (engine/cli/client.py TIMEOUT_S), so the CLI hears the 202
ANSWER_WAIT_S = 10.0  # how long `approve`/`deny` wait for the run to record the answer before answering 202


class RunControls:
    def __init__(self, reactor: Reactor, scheduler: Scheduler, dispatcher: Dispatcher,
                 playbook: Callable[[str], Playbook | None], emit: Emit, end_wait_s: float = END_WAIT_S,
                 answer_wait_s: float = ANSWER_WAIT_S) -> None:
        self.reactor = reactor
        self.scheduler = scheduler
        self.dispatcher = dispatcher
        self.playbook = playbook
        self.emit = emit
        self.end_wait_s = end_wait_s
        self.answer_wait_s = answer_wait_s

    async def cancel(self, run_id: str, by: str, reason: str | None) -> Answer:
        return _logged("cancel", run_id, by, await self._cancel(run_id, by, reason))

    async def answer(self, run_id: str, approved: bool, by: str, reason: str | None) -> Answer:
        """Approve or deny the approve step `run_id` waits at (`reactor.approved` / `reactor.denied`)."""
        return _logged("approve" if approved else "deny", run_id, by, await self._answer(run_id, approved, by, reason))

    async def rerun(self, run_id: str, by: str) -> Answer:
        return _logged("rerun", run_id, by, await self._rerun(run_id, by))

    async def _cancel(self, run_id: str, by: str, reason: str | None) -> Answer:
        """A running run: its steps' process trees killed, files restored, rollback steps run, `reactor.cancelled`,
        status `cancelled`. A queued one: out of the queue (`scheduler.decision` `dropped`), `reactor.cancelled`."""
        said = {"run_id": run_id, "by": by, "reason": reason}
        if run_id in self.reactor.active or self.scheduler.started(run_id):
            asked = self.reactor.cancel(run_id, by, reason)
            if asked != "cancelling":
                why = "is already being cancelled" if asked == "already" else "has finished (it is ending)"
                return 409, {"error": f"run {run_id} {why}", **said}
            try:
                status = await asyncio.wait_for(asyncio.shield(self.reactor.ended(run_id)), self.end_wait_s)
            except TimeoutError:
                return 202, {**said, "status": "cancelling"}
            return 200, {**said, "status": status}
        job = await self.scheduler.cancel(run_id, by, f"cancelled by {by}" + (f": {reason}" if reason else ""))
        if job is None:
            return self._not_here(run_id, "cancel")
        await self.emit("reactor.cancelled", {"run_id": run_id, "playbook": job.playbook.id,
                                              "cause": job.event.get("id"), "agent": job.event.get("agent"),
                                              "by": by, "reason": reason, "queued": True}, job.event, "warning")
        log.warning("run cancelled", extra={"run_id": run_id, "playbook": job.playbook.id,
                                            "cause": job.event.get("id"), "agent": job.event.get("agent"),
                                            "by": by, "reason": reason, "queued": True})
        if "resume" in job.extra:  # a run recovered after a restart, not yet going again: it must be closed
            await self.reactor.abandon(job, f"cancelled by {by} before it resumed")
        return 200, {**said, "status": "cancelled", "was": "queued"}

    async def _answer(self, run_id: str, approved: bool, by: str, reason: str | None) -> Answer:
        said = {"run_id": run_id, "answer": "approved" if approved else "denied", "by": by, "reason": reason}
        run = self.reactor.active.get(run_id)
        if run is not None and run.cancel is not None:
            return 409, {"error": f"run {run_id} is being cancelled", **said}
        recorded = self.reactor.answer(run_id, approved, by, reason)
        if recorded is not None:  # 200 only once the run has journaled and announced it
            try:
                if await asyncio.wait_for(asyncio.shield(recorded), self.answer_wait_s):
                    return 200, said
            except TimeoutError:
                return 202, {**said, "status": "recording"}
            return 409, {"error": f"run {run_id} was cancelled before the answer was recorded", **said}
        if run_id in self.reactor.active or self.scheduler.started(run_id):
            return 409, {"error": f"run {run_id} is not waiting for an approval"}
        return self._not_here(run_id, "approve" if approved else "deny")

    def approvals(self) -> list[dict[str, Any]]:
        """The runs waiting for an answer, the one expiring first first."""
        return self.reactor.room.view()

    async def _rerun(self, run_id: str, by: str) -> Answer:
        """A new run of the same playbook (as loaded now) for the same cause event, at the same priority,
        through the loop guard, the breaker, the budget and the scheduler like any decision; its
        `scheduler.decision` says `redecision: manual re-run of RUN by WHO`, `rerun_of` and `by`."""
        found = await self._record(run_id)
        if self.scheduler.going(run_id) or (isinstance(found, RunRecord) and found.status == "running"):
            return 409, {"error": f"run {run_id} has not finished: wait for it or cancel it first"}
        if isinstance(found, tuple):
            return found
        start = await asyncio.to_thread(start_entry, self.reactor.runs_dir / run_id / "journal.jsonl")
        if start is None:
            return 409, {"error": f"run {run_id} has no journal to re-run it from"}
        playbook = self.playbook(found.playbook)
        if playbook is None:
            return 409, {"error": f"playbook {found.playbook} of run {run_id} is not loaded now"}
        event, priority = start.get("event"), start.get("priority")
        if not isinstance(event, dict) or priority not in PRIORITIES:
            what = "no cause event (`event` object)" if not isinstance(event, dict) else \
                f"no priority P0-P3 (`priority` is {str(priority)[:20]!r})"
            return 422, {"error": f"the journal of run {run_id} is damaged: its start line has {what}"}
        key = (playbook.id, key_text(playbook, event))
        why = f"manual re-run of {run_id} by {by}"
        job = Job(playbook, event, priority, key, extra={"redecision": why, "rerun_of": run_id, "by": by})
        outcome = await self.dispatcher.dispatch_job(job)
        if outcome in ACCEPTED:
            return 200, {"run_id": job.run_id, "rerun_of": run_id, "outcome": outcome, "by": by}
        aside = job.extra.get("set_aside")  # the guard's reason and detail, kept by the dispatcher
        if outcome == "set_aside" and aside is not None:
            return 409, {"error": f"re-run of {run_id} set aside ({aside['reason']}): {aside['detail']}",
                         "reason": aside["reason"], "detail": aside["detail"], "rerun_of": run_id}
        return 409, {"error": f"re-run of {run_id} not queued: {outcome}", "reason": outcome, "rerun_of": run_id}

    async def _record(self, run_id: str) -> RunRecord | Answer:
        try:
            return await asyncio.to_thread(self.reactor.store.get, run_id)
        except KeyError:
            return 404, {"error": f"no run {run_id}"}
        except RecordError as exc:
            return 422, {"error": str(exc)}

    def _not_here(self, run_id: str, verb: str) -> Answer:
        """Why a run that is neither going nor queued here cannot be cancelled or answered."""
        try:
            record = self.reactor.store.get(run_id)
        except KeyError:
            return 404, {"error": f"no run {run_id}"}
        except RecordError as exc:
            return 422, {"error": str(exc)}
        if record.status != "running":
            return 409, {"error": f"cannot {verb} run {run_id}: it has finished ({record.status})",
                         "status": record.status}
        return 409, {"error": f"cannot {verb} run {run_id}: it is not going in this engine (the engine that ran "
                              "it stopped; it is closed or resumed at the next start)", "status": record.status}



def _logged(control: str, run_id: str, by: str, answer: Answer) -> Answer:
    """`answer`, with a refusal also in the engine's log (who asked what, and why not)."""
    status, body = answer
    if status >= 400:
        log.warning("run control refused", extra={"run_id": run_id[:80], "control": control, "by": by,
                                                  "status": status, "reason": body.get("error")})
    return answer
