"""`emit`: post an event (notifications, hand-over to other playbooks). The engine fills its chain of
causes; the engine's own types are refused here as they are from outside, so a playbook cannot forge
an outcome or a score."""
from __future__ import annotations

from typing import Any

from engine.actions.base import Action, ActionError, RunInfo, Services, StepResult, get_arg
from engine.events import RESERVED_PREFIXES, SEVERITIES, EventError


class Emit(Action):
    kind = "emit"

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        event_type = get_arg(args, "type", str)
        if event_type.startswith(RESERVED_PREFIXES):
            raise ActionError(f"type {event_type!r} is reserved for the engine "
                              f"({', '.join(p + '*' for p in RESERVED_PREFIXES)})")
        data = get_arg(args, "data", dict, {})
        severity = get_arg(args, "severity", str, "info")
        if severity not in SEVERITIES:
            raise ActionError(f"`severity` must be one of {', '.join(SEVERITIES)}, not {severity!r}")
        agent = get_arg(args, "agent", str, None)
        try:
            event = await services.emit(event_type, data, severity, agent)
        except EventError as exc:
            raise ActionError(f"the event was refused: {exc}") from None
        return StepResult(ok=True, detail={"id": event["id"], "type": event_type})
