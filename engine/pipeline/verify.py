"""`verify`: wait (`within`, default 60s) for the outcome of the runs the alerts triggered; fails when
one failed or did not finish in time, which skips the tasks that need it."""
from __future__ import annotations

from typing import Any

from engine.durations import parse_duration
from engine.pipeline.base import PipelineContext, Task, TaskResult, merged, poll

OUTCOMES = ("reactor.succeeded", "reactor.failed", "reactor.rolled_back")


class Verify(Task):
    kind = "verify"

    async def __call__(self, ctx: PipelineContext, args: dict[str, Any], inputs: dict[str, TaskResult]) -> TaskResult:
        runs = set(merged(inputs, "runs"))
        if not runs:
            return TaskResult(ok=True, output={"succeeded": [], "failed": [], "outcomes": []})
        found = await poll(
            ctx, lambda e: e["type"] in OUTCOMES and e["data"].get("run_id") in runs,
            lambda seen: {e["data"]["run_id"] for e in seen} >= runs,
            parse_duration(args.get("within", "60s")), ctx.started)
        final: dict[str, str] = {}
        for event in found:
            if final.get(event["data"]["run_id"]) != "reactor.failed":
                final[event["data"]["run_id"]] = event["type"]
        succeeded = sorted(r for r, t in final.items() if t == "reactor.succeeded")
        failed = sorted(runs - set(succeeded))
        outcomes = [{"run_id": e["data"]["run_id"], "agent": e.get("agent"), "ok": e["type"] == "reactor.succeeded"}
                    for e in found if e["type"] != "reactor.rolled_back"]
        error = f"{len(failed)} run(s) failed or did not finish: {', '.join(failed)}" if failed else None
        return TaskResult(ok=not failed, output={"succeeded": succeeded, "failed": failed, "outcomes": outcomes},
                          error=error)
