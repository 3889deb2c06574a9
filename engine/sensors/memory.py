"""Host memory: `resource.memory_high` when little memory is left for new work."""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import psutil

from engine.sensors.base import MB, ThresholdSensor


@dataclass(frozen=True, slots=True)
class MemoryReading:
    used_pct: float  # (total - available) / total: page cache that can be dropped counts as free
    available_mb: float
    total_mb: float
    swap_pct: float


class HostMemory:
    """Reads the machine's memory; the processes only when an event asks for the top consumers."""

    def read(self) -> MemoryReading:
        memory = psutil.virtual_memory()
        return MemoryReading(round(memory.percent, 1), round(memory.available / MB, 1), round(memory.total / MB, 1),
                             round(psutil.swap_memory().percent, 1))

    def top(self, n: int) -> list[dict[str, Any]]:
        """The `n` processes with the largest RSS (processes gone or unreadable meanwhile are skipped)."""
        rows = []
        for proc in psutil.process_iter(["name", "memory_info"]):
            memory = proc.info["memory_info"]
            if memory is not None:
                rows.append({"pid": proc.pid, "name": proc.info["name"] or "?", "rss_mb": round(memory.rss / MB, 1)})
        return heapq.nlargest(n, rows, key=lambda row: row["rss_mb"])


class MemorySensor(ThresholdSensor):
    """`resource.memory_high`: data `used_pct`, `available_mb`, `total_mb`, `swap_pct`, `top` (by RSS)."""

    name = "memory"
    event_type = "resource.memory_high"
    metric = "used_pct"
