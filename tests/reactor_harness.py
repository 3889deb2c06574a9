"""A reactor wired to real actions and files, with engine events collected in a list."""
from __future__ import annotations

import asyncio
import itertools
import random
import sys
from pathlib import Path
from typing import Any

from engine.actions import ACTIONS
from engine.agents.local import LocalAgents
from engine.playbooks.model import Playbook, playbook_from
from engine.reactor.runner import Reactor, ReactorDeps
from engine.reactor.watch import EventWatcher
from engine.admission.scheduler import Job


class Harness:
    def __init__(self, data_dir: Path, playbooks: list[Playbook], sleep: Any = asyncio.sleep,
                 clock: Any = None) -> None:
        import time

        self.events: list[dict[str, Any]] = []
        self.ids = itertools.count()
        self.playbooks = {p.id: p for p in playbooks}
        clock = clock or time.time
        self.watcher = EventWatcher(clock)
        self.reactor = Reactor(ReactorDeps(
            data_dir=data_dir, emit=self.emit, agents=LocalAgents({}, data_dir),
            wait_for=self.watcher.wait_for,
            compact=self.compact, actions=ACTIONS, playbook=self.playbooks.get, clock=clock, sleep=sleep,
            rng=random.Random(1), python=sys.executable))

    async def emit(self, type_: str, data: dict[str, Any], cause: dict[str, Any], severity: str) -> dict[str, Any]:
        event = {"id": f"ev{next(self.ids):05d}", "type": type_, "data": data, "severity": severity,
                 "chain": [*cause.get("chain", []), cause.get("id")]}
        self.events.append(event)
        self.watcher.feed(event)
        return event

    async def compact(self) -> dict[str, Any]:
        return {}

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def run(self, playbook_id: str, event: dict[str, Any], run_id: str = "01RUN0000000000000000000001") -> str:
        job = Job(self.playbooks[playbook_id], event, "P2", (playbook_id, "[]"), run_id=run_id)
        return await self.reactor.run(job)


def pb(raw: dict[str, Any]) -> Playbook:
    return playbook_from({"on": "agent.error", **raw})
