"""What every sensor shares: the `Sensor` class, thresholds with hysteresis, per-process sampling.

A sensor reads the machine through a small probe object (the only part that touches psutil, replaced by
a fake in tests) and turns readings into raw event dicts. It never publishes them (the service does) and
never reads the clock (`now` is passed in), so the alert logic is deterministic. Every threshold sensor
uses one `Hysteresis`, so that firing, repeating and clearing behave alike everywhere.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import psutil

from engine.osutil import proctree
from engine.sensors.thresholds import Threshold, ThresholdError  # noqa: F401 - re-exported

Event = dict[str, Any]
AgentPids = Callable[[], dict[str, int]]  # the supervisor's live agents: name -> pid
# What can happen to a process between listing it and reading it (ZombieProcess is a NoSuchProcess).
PROC_ERRORS = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)
MB = 1024 * 1024
TOP_N = 5  # length of the `top` lists in event data
HOST_SOURCE = "sensor.host"


class Sensor(ABC):
    """One kind of reading, scanned by the service every `sensors.interval`."""

    name: ClassVar[str]

    @abstractmethod
    def scan(self, now: float) -> list[Event]:
        """Raw events (`type`, `source`, `severity`, `data`, `agent` when about one) for the alerts that
        fire, repeat or clear at `now`; [] when nothing changed or there is no reading yet. Never
        publishes, never sleeps; scans of one sensor must not overlap (it is not thread-safe)."""


# What an alert's event says besides the threshold bookkeeping: its `data`, and the agent it is about.
Describe = Callable[[], tuple[dict[str, Any], str | None]]


@dataclass(slots=True)
class _State:
    streak: int = 0  # consecutive scans at or above high, while not firing
    since: float | None = None  # when the alert fired; None while it is not firing
    announced: float = 0.0  # when it was last announced (fired or repeated)
    agent: str | None = None  # the agent named when it fired: its cleared event names the same one


class Hysteresis:
    """Alert state per key (a mount, an agent…) for one event type.

    An alert fires when a value stays at or above `high` for `for_scans` scans in a row (a scan below
    `high` restarts the count), is not fired again while it holds (a value between `clear` and `high`
    keeps it firing), and clears only at or below `clear`, with a `<type>_cleared` event at severity
    info, so that the dashboard and the score see the recovery. `describe` is called only when an event
    goes out, so costly details (the largest folders, the top processes) are gathered only then.
    """

    def __init__(self, event_type: str, threshold: Threshold, source: str = HOST_SOURCE) -> None:
        self.event_type = event_type
        self.threshold = threshold
        self.source = source
        self._states: dict[str, _State] = {}

    def update(self, key: str, value: float, now: float, describe: Describe) -> list[Event]:
        """The event (at most one) that `value`, read at `now`, causes for `key`."""
        limits = self.threshold
        state = self._states.get(key)
        if state is None or state.since is None:
            if value < limits.high:
                self._states.pop(key, None)
                return []
            state = self._states.setdefault(key, _State())
            state.streak += 1
            if state.streak < limits.for_scans:
                return []
            data, state.agent = describe()
            state.since = state.announced = now
            return [self._event(self.event_type, "warning", data, state.agent, repeat=False)]
        if value <= limits.clear:
            del self._states[key]
            return [self._event(f"{self.event_type}_cleared", "info", describe()[0], state.agent,
                                duration_s=round(now - state.since, 3))]
        if limits.repeat is not None and now - state.announced >= limits.repeat:
            state.announced = now
            data, agent = describe()
            return [self._event(self.event_type, "warning", data, agent, repeat=True,
                                duration_s=round(now - state.since, 3))]
        return []

    def forget(self, live: Iterable[str], now: float) -> list[Event]:
        """Drop the keys not in `live` (an agent that went away); an alert still firing for one of them
        clears with `data.reason: gone`, so that nothing shows it as firing for ever."""
        live = set(live)
        events = []
        for key in [key for key in self._states if key not in live]:
            state = self._states.pop(key)
            if state.since is not None:
                events.append(self._event(f"{self.event_type}_cleared", "info", {"reason": "gone"}, state.agent,
                                          duration_s=round(now - state.since, 3)))
        return events

    def _event(self, event_type: str, severity: str, data: dict[str, Any], agent: str | None,
               **extra: Any) -> Event:
        event: Event = {"type": event_type, "source": self.source, "severity": severity,
                        "data": {**data, "threshold": self.threshold.high, "clear": self.threshold.clear, **extra}}
        if agent is not None:
            event["agent"] = agent
        return event


class Probe(Protocol):
    """The psutil-reading part of a host sensor: `read()` every scan, `top(n)` only for an event."""

    def read(self) -> Any:
        """A reading dataclass, or None when there is none yet (the sensor then does nothing)."""

    def top(self, n: int) -> list[dict[str, Any]]:
        """The `n` biggest consumers behind the last reading, biggest first."""


class ThresholdSensor(Sensor):
    """A host sensor comparing one field (`metric`) of its probe's reading with a threshold.

    With `agent_pids`, an event whose top consumer is in a supervised agent's process tree names that
    agent (the shipped playbooks restart it).
    """

    event_type: ClassVar[str]
    metric: ClassVar[str]

    def __init__(self, threshold: Threshold, probe: Probe, agent_pids: AgentPids | None = None) -> None:
        self.probe = probe
        self.alert = Hysteresis(self.event_type, threshold)
        self._agent_pids = agent_pids

    def scan(self, now: float) -> list[Event]:
        reading = self.probe.read()
        if reading is None:
            return []
        return self.alert.update(self.name, getattr(reading, self.metric), now, lambda: self._describe(reading))

    def _describe(self, reading: Any) -> tuple[dict[str, Any], str | None]:
        top = self.probe.top(TOP_N)
        agent = owner(top[0]["pid"], self._agent_pids()) if self._agent_pids and top else None
        return {**dataclasses.asdict(reading), "top": top}, agent


def owner(pid: int, agents: dict[str, int]) -> str | None:
    """The agent whose process tree holds `pid`: its root pid is `pid` or one of `pid`'s ancestors, or `pid`
    carries the root's start marker (`AIOS_RUN_MARK`: a daemonized child, reparented away from the agent,
    is still the agent's; a restart kills it with the rest of the tree)."""
    names = {root: name for name, root in agents.items()}
    if pid in names:
        return names[pid]
    try:
        process = psutil.Process(pid)
        found = next((names[proc.pid] for proc in process.parents() if proc.pid in names), None)
        if found is not None:
            return found
        mark = process.environ().get(proctree.MARK_ENV, "")
        name = mark.split("/")[1] if mark.startswith("agent/") and mark.count("/") == 2 else None
        root = agents.get(name or "")
        return name if root is not None and psutil.Process(root).environ().get(proctree.MARK_ENV) == mark else None
    except PROC_ERRORS:
        return None


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process as the `top` lists show it."""

    pid: int
    name: str
    cpu_pct: float  # of one core, like top: a busy multi-threaded process can exceed 100
    rss_mb: float


class ProcessSampler:
    """CPU% and RSS of processes; CPU% over the time since this sampler last saw each process.

    psutil measures a process's CPU% between two calls on the same `Process` object, so the objects are
    kept from one scan to the next instead of sleeping between two readings; a process seen for the first
    time reads 0. A reused pid is a new process: psutil's `Process` equality includes the create time.
    """

    def __init__(self) -> None:
        self._known: dict[int, psutil.Process] = {}

    def sample(self, procs: Iterable[psutil.Process]) -> list[ProcessSample]:
        """A sample of each process in `procs` still readable; the processes not in `procs` are forgotten."""
        known: dict[int, psutil.Process] = {}
        samples = []
        for proc in procs:
            previous = self._known.get(proc.pid)
            proc = previous if previous is not None and previous == proc else proc
            try:
                with proc.oneshot():
                    samples.append(ProcessSample(proc.pid, proc.name(), round(proc.cpu_percent(None), 1),
                                                 round(proc.memory_info().rss / MB, 1)))
            except PROC_ERRORS:
                continue
            known[proc.pid] = proc
        self._known = known
        return samples
