"""Data disk: `resource.disk_full` when the filesystem holding the data dir fills up.

The event lists the largest folders of the data dir, where the `compact` action frees space. Finding
them is a bounded walk (two levels, a cap on entries), done only when an event goes out.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from engine.sensors.base import MB, ThresholdSensor

WALK_DEPTH = 2
WALK_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class DiskReading:
    path: str  # the data dir
    mount: str  # the mount point of the filesystem holding it
    used_pct: float  # as df shows it: blocks reserved for root count as used
    free_mb: float
    total_mb: float


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing ancestor (a data dir not created yet lives on its parent's disk)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mount(path: Path) -> Path:
    path = path.resolve()
    while not path.is_mount():
        path = path.parent
    return path


def _bytes(stat: os.stat_result) -> int:
    """Space a file takes on disk (allocated blocks, as du counts), its size where blocks are unknown."""
    blocks = getattr(stat, "st_blocks", None)
    return stat.st_size if blocks is None else blocks * 512


def largest_folders(root: Path, n: int, depth: int = WALK_DEPTH,
                    max_entries: int = WALK_MAX_ENTRIES) -> list[dict[str, Any]]:
    """The `n` largest folders down to `depth` levels below `root`, each `{path, size_mb}` with `path`
    relative to `root`. A folder's size counts the files inside it down to that depth (files in deeper
    folders are not visited); the walk stops after `max_entries` entries and never follows symlinks."""
    sizes: dict[str, int] = {}
    budget = max_entries
    pending: deque[tuple[str, tuple[str, ...]]] = deque([(str(root), ())])  # breadth first: fair when cut
    while pending and budget > 0:
        folder, parts = pending.popleft()
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:
            for entry in entries:
                budget -= 1
                if budget < 0:
                    break
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if len(parts) < depth:
                            child = (*parts, entry.name)
                            sizes.setdefault("/".join(child), 0)
                            pending.append((entry.path, child))
                    elif entry.is_file(follow_symlinks=False):
                        size = _bytes(entry.stat(follow_symlinks=False))
                        for level in range(1, len(parts) + 1):
                            sizes["/".join(parts[:level])] += size
                except OSError:  # removed meanwhile, or unreadable
                    continue
    ranked = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [{"path": path, "size_mb": round(size / MB, 1)} for path, size in ranked]


class HostDisk:
    """Reads the filesystem holding `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    def read(self) -> DiskReading:
        where = _existing(self.data_dir)
        usage = psutil.disk_usage(str(where))
        return DiskReading(str(self.data_dir), str(_mount(where)), round(usage.percent, 1),
                           round(usage.free / MB, 1), round(usage.total / MB, 1))

    def top(self, n: int) -> list[dict[str, Any]]:
        return largest_folders(self.data_dir, n)


class DiskSensor(ThresholdSensor):
    """`resource.disk_full`: data `path`, `mount`, `used_pct`, `free_mb`, `total_mb`, `top` (folders)."""

    name = "disk"
    event_type = "resource.disk_full"
    metric = "used_pct"
