"""Building the configured sensors and scanning them all (the service's and the pipeline's entry points)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.sensors.agents import AgentsSensor, AgentTrees
from engine.sensors.base import AgentPids, Event, Sensor
from engine.sensors.cpu import CpuSensor, HostCpu
from engine.sensors.disk import DiskSensor, HostDisk
from engine.sensors.memory import HostMemory, MemorySensor
from engine.sensors.thresholds import Threshold, config_problems


def build_sensors(section: dict[str, Any], data_dir: Path, agent_pids: AgentPids) -> list[Sensor]:
    """The enabled sensors of a `sensors` config section (defaults applied, as `load_config` gives it).

    `agent_pids() -> {name: pid}` is the supervisor's view of its live agents: the agents sensor reads
    their process trees, and the cpu and memory sensors name the agent behind their top process.
    Raises ValueError naming each bad threshold."""
    problems = config_problems(section)
    if problems:
        raise ValueError("; ".join(f"{pointer}: {message}" for pointer, message in problems))
    agents = section["agents"]
    factories: dict[str, Callable[[], Sensor]] = {
        "cpu": lambda: CpuSensor(Threshold.from_config(section["cpu"]), HostCpu(), agent_pids),
        "memory": lambda: MemorySensor(Threshold.from_config(section["memory"]), HostMemory(), agent_pids),
        "disk": lambda: DiskSensor(Threshold.from_config(section["disk"]), HostDisk(data_dir)),
        "agents": lambda: AgentsSensor(Threshold.from_config(agents["cpu"], agents),
                                       Threshold.from_config(agents["rss_mb"], agents), agent_pids, AgentTrees()),
    }
    return [make() for kind, make in factories.items() if section[kind]["enabled"]]


@dataclass(slots=True)
class ScanResult:
    """What one round of scans produced: the events to publish, and the error of each sensor that failed
    (by sensor name; for the health endpoint). One failing sensor does not stop the others."""

    events: list[Event] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def scan_all(sensors: list[Sensor], now: float) -> ScanResult:
    """Scan every sensor at `now`. Blocking (psutil, a disk walk): run it in a worker thread, one round at a
    time (APScheduler's default `max_instances=1` does that)."""
    result = ScanResult()
    for sensor in sensors:
        try:
            result.events += sensor.scan(now)
        except Exception as exc:  # noqa: BLE001 - a broken sensor is reported, it must not stop the others
            result.errors[sensor.name] = f"{type(exc).__name__}: {exc}"
    return result
