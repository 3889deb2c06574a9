"""`notify`: send a message to a configured notification target (docs/notifications.md).

The step only asks: it stores a `notification.requested` event (target, rendered title and body, the
problem when the run is about one) and succeeds as soon as that is stored. The notifier, which observes
the stored events, delivers it off the event loop, retries it and records `notification.sent` or
`notification.failed`; so a target that is down never fails, or delays, a remediation. An unknown target
is refused by lint when it knows the config, and recorded as `notification.failed` (final) otherwise.
"""
from __future__ import annotations

from typing import Any

from engine.actions.base import Action, ActionError, RunInfo, Services, StepResult, get_arg
from engine.events import EventError
from engine.notify.base import LEVELS, cut
from engine.notify.notifier import BODY_BYTES, REQUESTED, TARGET_BYTES, TITLE_BYTES


class Notify(Action):
    kind = "notify"

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        target = get_arg(args, "target", str)
        title = get_arg(args, "title", (str, int, float), f"{run.playbook}: {run.event.get('type', 'event')}")
        body = get_arg(args, "body", (str, int, float), f"run {run.run_id} of playbook {run.playbook}, step "
                       f"{run.step}, about {run.event.get('type')} {run.event.get('id')}")
        level = get_arg(args, "level", str, "info")
        if level not in LEVELS:
            raise ActionError(f"`level` must be one of {', '.join(LEVELS)}, not {level!r}")
        data: dict[str, Any] = {"target": cut(target, TARGET_BYTES), "title": cut(str(title), TITLE_BYTES),
                                "body": cut(str(body), BODY_BYTES), "level": level, "step": run.step}
        cause_data = run.event.get("data")
        if str(run.event.get("type", "")).startswith("problem.") and isinstance(cause_data, dict) \
                and isinstance(cause_data.get("problem"), str):
            data["problem"] = cause_data["problem"]
        try:
            event = await services.emit(REQUESTED, data, "info", None)
        except EventError as exc:
            raise ActionError(f"the notification was refused: {exc}") from None
        return StepResult(ok=True, detail={"target": data["target"], "id": event["id"], "title": data["title"]})
