"""`wait_for`: succeed when a matching event arrives in time; the usual way to verify a fix.

The engine's wait_for counts events since the step started, so one that arrived between the fix and
this step is not missed.
"""
from __future__ import annotations

from typing import Any

from engine.actions.base import Action, ActionError, RunInfo, Services, StepResult, get_arg
from engine.durations import parse_duration


class WaitFor(Action):
    kind = "wait_for"

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        event_type = get_arg(args, "type", str)
        where = get_arg(args, "where", dict, {})
        within = get_arg(args, "within", str)
        try:
            within_s = parse_duration(within)
        except ValueError as exc:
            raise ActionError(f"`within`: {exc}") from None
        event = await services.wait_for(event_type, where, within_s)
        detail = {"type": event_type, "where": where, "within_s": within_s, "id": event and event["id"]}
        if event is None:
            return StepResult(ok=False, error=f"no {event_type} event matching {where} within {within}",
                              detail=detail)
        return StepResult(ok=True, detail=detail)
