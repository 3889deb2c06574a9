"""Supervised agents: CPU and RSS of each agent's whole process tree.

`resource.agent_cpu` and `resource.agent_memory` name the agent (`agent`), and `stats()` keeps the
latest numbers for the dashboard. The pids come from the supervisor (`pids() -> {name: pid}`); an
agent whose process is gone has no reading, and an alert still firing for it clears (`reason: gone`).
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

from engine.sensors.base import TOP_N, AgentPids, Event, Hysteresis, ProcessSampler, Sensor, Threshold

SOURCE = "sensor.agents"


@dataclass(frozen=True, slots=True)
class AgentReading:
    pid: int
    cpu_pct: float  # summed over the tree, in cores × 100 like top: 150 is one and a half cores
    rss_mb: float  # summed over the tree (pages shared between its processes count once per process)
    processes: int
    top: list[dict[str, Any]]  # the tree's processes using the most CPU, at most TOP_N


def _trees(pids: dict[str, int]) -> dict[str, list[psutil.Process]]:
    """Each agent's process and its descendants, root first ([] when it is gone), from one pass over the
    process table (psutil's `children(recursive=True)` makes one per agent). A child that detached and
    was reparented to init is no longer in its agent's tree."""
    if not pids:
        return {}
    procs: dict[int, psutil.Process] = {}
    children: dict[int, list[int]] = defaultdict(list)
    for proc in psutil.process_iter(["ppid"]):
        procs[proc.pid] = proc
        if proc.info["ppid"] is not None:
            children[proc.info["ppid"]].append(proc.pid)
    trees = {}
    for name, root in pids.items():
        order = [root] if root in procs else []
        for pid in order:  # grows while it is walked: breadth first
            order.extend(child for child in children.get(pid, ()) if child not in order)
        trees[name] = [procs[pid] for pid in order]
    return trees


class AgentProbe(Protocol):
    def read(self, pids: dict[str, int]) -> dict[str, AgentReading]:
        """A reading per agent whose process is still there."""


class AgentTrees:
    """Reads each agent's process tree; CPU% is over the window since the previous reading (a process
    seen for the first time, such as a just started agent, reads 0 once)."""

    def __init__(self) -> None:
        self._processes = ProcessSampler()

    def read(self, pids: dict[str, int]) -> dict[str, AgentReading]:
        trees = _trees(pids)
        unique = {proc.pid: proc for tree in trees.values() for proc in tree}  # an agent started by another
        samples = {sample.pid: sample for sample in self._processes.sample(unique.values())}
        readings = {}
        for name, tree in trees.items():
            rows = [samples[proc.pid] for proc in tree if proc.pid in samples]
            if not rows or rows[0].pid != pids[name]:  # the agent's own process is gone
                continue
            ranked = sorted(rows, key=lambda s: (s.cpu_pct, s.rss_mb), reverse=True)[:TOP_N]
            readings[name] = AgentReading(pids[name], round(sum(s.cpu_pct for s in rows), 1),
                                          round(sum(s.rss_mb for s in rows), 1), len(rows),
                                          [dataclasses.asdict(s) for s in ranked])
        return readings


class AgentsSensor(Sensor):
    """Per-agent CPU and memory alerts, one alert state per agent and metric."""

    name = "agents"

    def __init__(self, cpu: Threshold, memory: Threshold, pids: AgentPids, probe: AgentProbe) -> None:
        self.probe = probe
        self._pids = pids
        self._alerts: tuple[tuple[Hysteresis, Callable[[AgentReading], float]], ...] = (
            (Hysteresis("resource.agent_cpu", cpu, SOURCE), lambda reading: reading.cpu_pct),
            (Hysteresis("resource.agent_memory", memory, SOURCE), lambda reading: reading.rss_mb),
        )
        self._latest: dict[str, dict[str, Any]] = {}

    def scan(self, now: float) -> list[Event]:
        readings = self.probe.read(self._pids())
        events: list[Event] = []
        for alert, value in self._alerts:
            for name, reading in readings.items():
                events += alert.update(name, value(reading), now,
                                       lambda name=name, reading=reading: (dataclasses.asdict(reading), name))
            events += alert.forget(readings, now)
        self._latest = {name: {**dataclasses.asdict(reading), "at": now} for name, reading in readings.items()}
        return events

    def stats(self) -> dict[str, dict[str, Any]]:
        """The latest numbers per live agent (`pid`, `cpu_pct`, `rss_mb`, `processes`, `top`, `at` = the
        scan's time), for the dashboard; agents whose process was gone at the last scan are absent."""
        return {name: dict(numbers) for name, numbers in self._latest.items()}
