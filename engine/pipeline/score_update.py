"""`score_update`: publish the verified outcomes per agent (`pipeline.outcomes`), which the score engine
counts toward each agent's success rate."""
from __future__ import annotations

from collections import Counter
from typing import Any

from engine.pipeline.base import PipelineContext, Task, TaskResult, merged


class ScoreUpdate(Task):
    kind = "score_update"

    async def __call__(self, ctx: PipelineContext, args: dict[str, Any], inputs: dict[str, TaskResult]) -> TaskResult:
        outcomes = merged(inputs, "outcomes")
        ok: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for outcome in outcomes:
            (ok if outcome["ok"] else failed)[outcome.get("agent") or "-"] += 1
        agents = {agent: {"succeeded": ok[agent], "failed": failed[agent]} for agent in sorted(set(ok) | set(failed))}
        await ctx.emit({"type": "pipeline.outcomes", "data": {"pipeline": ctx.pipeline, "agents": agents}})
        return TaskResult(ok=True, output={"agents": agents})
