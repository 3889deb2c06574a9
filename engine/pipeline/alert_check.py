"""`alert_check`: sum up the alerts the scan found (`pipeline.alerts`, only when there are any)."""
from __future__ import annotations

from typing import Any

from engine.pipeline.base import PipelineContext, Task, TaskResult, merged


class AlertCheck(Task):
    kind = "alert_check"

    async def __call__(self, ctx: PipelineContext, args: dict[str, Any], inputs: dict[str, TaskResult]) -> TaskResult:
        alerts = merged(inputs, "alerts")
        if alerts:
            await ctx.emit({"type": "pipeline.alerts", "severity": "warning", "data": {
                "pipeline": ctx.pipeline,
                "alerts": [{"id": a["id"], "type": a["type"], "agent": a.get("agent")} for a in alerts]}})
        return TaskResult(ok=True, output={"alerts": alerts})
