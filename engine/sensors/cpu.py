"""Host CPU: `resource.cpu_spike` when the machine's CPU stays busy.

The busy share is measured between two scans, never by sleeping. It is computed here from
`psutil.cpu_times` rather than with `psutil.cpu_percent(interval=None)`: psutil keeps that function's
previous sample per thread, and the scheduler may run each scan on a different pool thread.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import psutil

from engine.sensors.base import ProcessSample, ProcessSampler, ThresholdSensor

MIN_WINDOW_S = 0.2  # CPU seconds per core between two readings; a shorter window is mostly noise


@dataclass(frozen=True, slots=True)
class CpuReading:
    cpu_pct: float  # whole machine, 0..100
    per_cpu: list[float]
    load_avg: list[float]  # 1, 5 and 15 minutes


def _busy_and_total(before: NamedTuple, after: NamedTuple) -> tuple[float, float]:
    """Busy and total CPU seconds of one core between two `cpu_times` readings (psutil's own formula:
    guest time is already in user time, and iowait is idle)."""
    delta = {field: max(0.0, getattr(after, field) - getattr(before, field)) for field in after._fields}
    total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)
    return total - delta["idle"] - delta.get("iowait", 0.0), total


def _pct(busy: float, total: float) -> float:
    return round(min(100.0, 100.0 * busy / total), 1) if total > 0 else 0.0


class HostCpu:
    """Reads the machine's CPU and every process's, over the window since its previous reading."""

    def __init__(self) -> None:
        self._last: Sequence[NamedTuple] | None = None
        self._processes = ProcessSampler()
        self._samples: list[ProcessSample] = []

    def read(self) -> CpuReading | None:
        """None on the first call (it primes the baseline) and while the window is under MIN_WINDOW_S."""
        times = psutil.cpu_times(percpu=True)
        last = self._last
        if last is None or len(last) != len(times):  # first reading, or a core went on or offline
            self._last = times
            self._samples = self._processes.sample(psutil.process_iter())
            return None
        cores = [_busy_and_total(before, after) for before, after in zip(last, times)]
        total = sum(core_total for _, core_total in cores)
        if total < MIN_WINDOW_S * len(cores):
            return None  # keep the baseline: the next reading covers a longer window
        self._last = times
        self._samples = self._processes.sample(psutil.process_iter())
        return CpuReading(_pct(sum(busy for busy, _ in cores), total), [_pct(*core) for core in cores],
                          [round(load, 2) for load in psutil.getloadavg()])

    def top(self, n: int) -> list[dict[str, Any]]:
        """The `n` processes that used the most CPU in the last reading's window."""
        ranked = sorted(self._samples, key=lambda s: (s.cpu_pct, s.rss_mb), reverse=True)
        return [dataclasses.asdict(sample) for sample in ranked[:n]]


class CpuSensor(ThresholdSensor):
    """`resource.cpu_spike`: data `cpu_pct`, `per_cpu`, `load_avg`, `top` (by CPU)."""

    name = "cpu"
    event_type = "resource.cpu_spike"
    metric = "cpu_pct"
