"""`reactor_trigger`: the alerts are on the bus, so the matcher reacts to them; this task waits
(`within`, default 2s) for the scheduler's decisions about them and hands the run ids on."""
from __future__ import annotations

from typing import Any

from engine.durations import parse_duration
from engine.pipeline.base import PipelineContext, Task, TaskResult, merged, poll


class ReactorTrigger(Task):
    kind = "reactor_trigger"

    async def __call__(self, ctx: PipelineContext, args: dict[str, Any], inputs: dict[str, TaskResult]) -> TaskResult:
        causes = {a["id"] for a in merged(inputs, "alerts")}
        if not causes:
            return TaskResult(ok=True, output={"runs": []})
        decisions = await poll(
            ctx, lambda e: e["type"] == "scheduler.decision" and e["data"].get("cause") in causes,
            lambda found: {e["data"]["cause"] for e in found} >= causes,
            parse_duration(args.get("within", "2s")), ctx.started)
        runs = [e["data"]["run_id"] for e in decisions if e["data"].get("outcome") in ("queued", "waiting")]
        return TaskResult(ok=True, output={"runs": runs, "decisions": len(decisions)})
