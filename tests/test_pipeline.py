"""The seed's pipeline as a DAG: tasks publish events, the matcher reacts, a failed task skips its dependants."""
from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from engine.pipeline.base import PipelineContext
from engine.pipeline.runner import run_pipeline
from engine.reactor.watch import EventWatcher
from engine.sensors.base import Sensor

HEALTH = {"tasks": [
    {"id": "sensor_scan", "task": "sensor_scan"},
    {"id": "alert_check", "task": "alert_check", "needs": ["sensor_scan"]},
    {"id": "reactor_trigger", "task": "reactor_trigger", "needs": ["alert_check"], "with": {"within": "2s"}},
    {"id": "verify", "task": "verify", "needs": ["reactor_trigger"], "with": {"within": "2s"}},
    {"id": "score_update", "task": "score_update", "needs": ["verify"]},
]}


class FakeCpu(Sensor):
    name = "cpu"

    def scan(self, now: float) -> list[dict[str, Any]]:
        return [{"type": "resource.cpu_spike", "source": "sensor.host", "agent": "coder", "severity": "warning",
                 "data": {"cpu_pct": 97.0}}]


class World:
    """Stores events in memory and plays the engine: every alert is decided on, and its run ends `ok`."""

    def __init__(self, fix_ok: bool) -> None:
        self.events: list[dict[str, Any]] = []
        self.watcher = EventWatcher(time.time)
        self.ids = itertools.count()
        self.fix_ok = fix_ok

    async def emit(self, raw: dict[str, Any]) -> dict[str, Any]:
        event = {"id": f"e{next(self.ids)}", **raw}
        self.events.append(event)
        self.watcher.feed(event)
        if event["type"] == "resource.cpu_spike":  # what the matcher, scheduler and reactor would do
            asyncio.get_running_loop().call_later(0.05, self._react, event)
        return event

    def _react(self, alert: dict[str, Any]) -> None:
        run = f"run-{alert['id']}"
        self.watcher.feed({"id": "d", "type": "scheduler.decision",
                           "data": {"cause": alert["id"], "run_id": run, "outcome": "queued"}})
        outcome = "reactor.succeeded" if self.fix_ok else "reactor.failed"
        self.watcher.feed({"id": "o", "type": outcome, "agent": "coder", "data": {"run_id": run}})

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]


def run(world: World) -> dict[str, bool]:
    async def scenario() -> dict[str, bool]:
        ctx = PipelineContext("health", world.emit, [FakeCpu()], world.watcher.recent, time.time, asyncio.sleep,
                              time.time())
        return await run_pipeline("health", HEALTH, ctx)

    return asyncio.run(scenario())


def test_the_health_pipeline_runs_every_task_in_order_and_publishes_what_it_found():
    world = World(fix_ok=True)
    assert run(world) == {t["id"]: True for t in HEALTH["tasks"]}
    assert [e["data"]["task"] for e in world.of_type("pipeline.task")] == [t["id"] for t in HEALTH["tasks"]]
    alert = world.of_type("resource.cpu_spike")[0]
    assert world.of_type("pipeline.alerts")[0]["data"]["alerts"] == [
        {"id": alert["id"], "type": "resource.cpu_spike", "agent": "coder"}]
    assert world.of_type("pipeline.outcomes")[0]["data"]["agents"] == {"coder": {"succeeded": 1, "failed": 0}}
    assert world.of_type("pipeline.finished")[0]["data"] == {"pipeline": "health", "ok": True, "failed": None,
                                                             "skipped": []}


def test_a_failed_task_skips_its_dependants():
    world = World(fix_ok=False)
    done = run(world)
    assert done["verify"] is False and done["score_update"] is False
    assert world.of_type("pipeline.finished")[0]["data"]["failed"] == "verify"
    assert world.of_type("pipeline.finished")[0]["data"]["skipped"] == ["score_update"]
    assert not world.of_type("pipeline.outcomes")
