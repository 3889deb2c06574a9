"""`approve`: the run waits for a person's yes or no (`aios-engine approve|deny RUN_ID`, the API, the
dashboard). No answer within `timeout` (1h by default) is a no. The runner does the waiting
(`Services.ask`): it announces `reactor.approval_requested`, frees the run's concurrency slot meanwhile,
journals the wait so that a restarted engine goes on waiting, and takes a slot again before going on.
A no fails the step, so the run fails and is rolled back.
"""
from __future__ import annotations

from typing import Any

from engine.actions.base import Action, ActionError, RunInfo, Services, StepResult, get_arg
from engine.durations import parse_duration

DEFAULT_TIMEOUT = "1h"


class Approve(Action):
    kind = "approve"
    asks_a_person = True

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        message = get_arg(args, "message", str)
        timeout = get_arg(args, "timeout", str, DEFAULT_TIMEOUT)
        try:
            timeout_s = parse_duration(timeout)
        except ValueError as exc:
            raise ActionError(f"`timeout`: {exc}") from None
        if timeout_s <= 0:
            raise ActionError(f"`timeout` must be longer than 0, not {timeout!r}")
        if services.ask is None:
            raise ActionError("this engine cannot ask for approvals here")
        answer = await services.ask(message, timeout_s)
        detail = {"message": message, "timeout_s": timeout_s, **answer}
        if answer["approved"]:
            return StepResult(ok=True, detail=detail)
        why = (f"no answer within {timeout}: denied" if answer["by"] == "timeout"
               else f"denied by {answer['by']}" + (f": {answer['reason']}" if answer.get("reason") else ""))
        return StepResult(ok=False, error=why, detail=detail)
