"""One pipeline run: its tasks through the shared DAG runner, with `pipeline.task` per task and
`pipeline.finished` at the end (what failed, what was skipped)."""
from __future__ import annotations

import time
from typing import Any

from engine.dag import run_dag
from engine.pipeline.alert_check import AlertCheck
from engine.pipeline.base import PipelineContext, Task, TaskResult
from engine.pipeline.reactor_trigger import ReactorTrigger
from engine.pipeline.score_update import ScoreUpdate
from engine.pipeline.sensor_scan import SensorScan
from engine.pipeline.verify import Verify

TASKS: dict[str, Task] = {task.kind: task for task in (SensorScan(), AlertCheck(), ReactorTrigger(), Verify(),
                                                       ScoreUpdate())}


async def run_pipeline(name: str, spec: dict[str, Any], ctx: PipelineContext) -> dict[str, bool]:
    """Run `spec["tasks"]` once; returns task id → ok (skipped tasks are False)."""
    tasks = {t["id"]: t for t in spec["tasks"]}
    results: dict[str, TaskResult] = {}

    async def run(task_id: str) -> bool:
        task = tasks[task_id]
        started = time.perf_counter()
        try:
            result = await TASKS[task["task"]](ctx, task.get("with", {}),
                                               {need: results[need] for need in task.get("needs", [])})
        except Exception as exc:  # a broken task fails, its dependants are skipped, the engine goes on
            result = TaskResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        results[task_id] = result
        await ctx.emit({"type": "pipeline.task", "severity": "info" if result.ok else "warning", "data": {
            "pipeline": name, "task": task_id, "kind": task["task"], "ok": result.ok, "error": result.error,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1)}})
        return result.ok

    skipped: list[str] = []

    async def skip(task_id: str) -> None:
        skipped.append(task_id)

    done: dict[str, bool] = {}
    failed = await run_dag({t: tasks[t].get("needs", []) for t in tasks}, run, done, skip)
    await ctx.emit({"type": "pipeline.finished", "severity": "info" if failed is None else "warning", "data": {
        "pipeline": name, "ok": failed is None, "failed": failed, "skipped": skipped}})
    return done
