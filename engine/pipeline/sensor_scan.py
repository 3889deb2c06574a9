"""`sensor_scan`: scan every sensor once and publish what they report."""
from __future__ import annotations

import asyncio
from typing import Any

from engine.pipeline.base import PipelineContext, Task, TaskResult
from engine.sensors.build import scan_all


class SensorScan(Task):
    kind = "sensor_scan"

    async def __call__(self, ctx: PipelineContext, args: dict[str, Any], inputs: dict[str, TaskResult]) -> TaskResult:
        result = await asyncio.to_thread(scan_all, ctx.sensors, ctx.clock())
        stored = [await ctx.emit(event) for event in result.events]
        alerts = [e for e in stored if not e["type"].endswith("_cleared")]
        output = {"events": [e["id"] for e in stored], "alerts": alerts, "errors": result.errors}
        return TaskResult(ok=not result.errors, output=output,
                          error="; ".join(f"{k}: {v}" for k, v in result.errors.items()) or None)
