"""A chaos scenario: a fault injected for real into what a running engine looks after, the problem it should
open, and what must hold once the engine healed it.

The runner (`engine/chaos/runner.py`) calls `prepare` (choose and check the target: a bad target is refused
before anything is done), `inject`, follows the problem of one of `kinds` about `subject()`, then `verify`,
and always `cleanup` (undo whatever of the fault is left, healed or not).
"""
from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psutil

from engine.chaos.engine_api import ChaosError, EngineApi, epoch_of

HEARTBEAT_WAIT_S = 30.0


@dataclass(slots=True)
class Options:
    target: str | None = None  # an agent name; None: one chosen at random (seeded) among the running ones
    duration_s: float = 60.0  # how long a fault that lasts is kept up at most (latency, cpu-spike)
    data_dir: Path | None = None  # the engine's data directory, for disk-full and the file checks
    deadline_s: float | None = None  # how long the engine gets to heal (None: the scenario's own)


class Scenario(ABC):
    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]  # the problem kinds the fault may open (docs/problems.md)
    deadline_s: ClassVar[float]  # how long the engine gets to heal it, by default
    summary: ClassVar[str]

    def __init__(self, api: EngineApi, rng: random.Random, options: Options) -> None:
        self.api = api
        self.rng = rng
        self.options = options
        self.agent: dict[str, Any] | None = None  # the target's row of GET /api/agents

    @property
    def target(self) -> str | None:
        return self.agent["name"] if self.agent else None

    async def prepare(self) -> None:
        """Choose the target agent: the one asked for, else a running declared agent at random."""
        self.agent = await running_agent(self.api, self.rng, self.options.target)

    @abstractmethod
    async def inject(self) -> dict[str, Any]:
        """Do the harm; returns what was done, as the report shows it."""

    def subject(self) -> dict[str, Any]:
        """The subject of the problem to follow (`{}`: any, for host-wide kinds)."""
        return {"agent": self.target}

    async def verify(self) -> str | None:
        """After the problem resolved: what is still wrong (None: nothing)."""
        return None

    async def cleanup(self) -> None:
        """Undo what is left of the fault; called once, healed or not, and must not raise."""


async def running_agent(api: EngineApi, rng: random.Random, wanted: str | None) -> dict[str, Any]:
    """A declared agent whose process runs on this machine: `wanted`, or one chosen at random."""
    agents = await api.agents()
    running = [a for a in agents if a.get("declared") and a.get("pid") and a.get("state") != "down"
               and psutil.pid_exists(int(a["pid"]))]
    if wanted is not None:
        found = next((a for a in agents if a.get("name") == wanted), None)
        if found is None:
            raise ChaosError(f"no agent {wanted!r}: the engine knows {', '.join(a['name'] for a in agents) or 'none'}")
        if found not in running:
            raise ChaosError(f"agent {wanted!r} is not running here (declared: {found.get('declared')}, "
                             f"state: {found.get('state')}, pid: {found.get('pid')})")
        return found
    if not running:
        raise ChaosError("no declared agent is running here to aim at")
    return rng.choice(sorted(running, key=lambda a: a["name"]))


async def new_process_heard(api: EngineApi, agent: dict[str, Any] | None, since: float) -> str | None:
    """None once the agent runs as a new process that sent a heartbeat after `since`; else why not."""
    assert agent is not None
    give_up = time.monotonic() + HEARTBEAT_WAIT_S
    while time.monotonic() < give_up:
        row = next((a for a in await api.agents() if a["name"] == agent["name"]), {})
        beat = epoch_of(row.get("last_heartbeat"))
        if row.get("pid") and row["pid"] != agent["pid"] and beat is not None and beat > since:
            return None
        await asyncio.sleep(0.25)
    return f"no heartbeat from a new {agent['name']} process within {HEARTBEAT_WAIT_S:.0f} s of healing"
