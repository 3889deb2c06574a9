"""A pipeline task kind: one small class per file, named by its kind (`sensor_scan.py` → `sensor_scan`).

Tasks publish events and read what earlier tasks found; they never call the scheduler or the reactor
(the matcher reacts to what they publish, like to any other event).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.sensors.base import Sensor


@dataclass(frozen=True, slots=True)
class PipelineContext:
    """What tasks may use: publishing, the sensors, recent events, the clock."""

    pipeline: str
    emit: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]  # raw event -> stored event
    sensors: list[Sensor]
    recent: Callable[[Callable[[dict[str, Any]], bool], float], list[dict[str, Any]]]  # (predicate, since)
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    started: float


@dataclass(slots=True)
class TaskResult:
    ok: bool
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Task(ABC):
    kind: ClassVar[str]

    @abstractmethod
    async def __call__(self, ctx: PipelineContext, args: dict[str, Any],
                       inputs: dict[str, TaskResult]) -> TaskResult:
        """Do the task once; `inputs` are the results of the tasks it `needs`."""


def merged(inputs: dict[str, TaskResult], key: str) -> list[Any]:
    """`key` lists of every input, concatenated (a task reads what the tasks it needs found)."""
    return [item for result in inputs.values() for item in result.output.get(key, [])]


async def poll(ctx: PipelineContext, predicate: Callable[[dict[str, Any]], bool], expect: Callable[[list], bool],
               within_s: float, since: float) -> list[dict[str, Any]]:
    """Recent events matching `predicate` since `since`, waiting up to `within_s` until `expect(found)`."""
    deadline = ctx.clock() + within_s
    while True:
        found = ctx.recent(predicate, since)
        if expect(found) or ctx.clock() >= deadline:
            return found
        await ctx.sleep(0.05)
