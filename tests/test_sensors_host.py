"""Sensors on the real machine: real psutil readings of real child processes (kept short)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from engine.sensors.agents import AgentsSensor, AgentTrees
from engine.sensors.base import Threshold, owner
from engine.sensors.cpu import CpuSensor, HostCpu
from engine.sensors.disk import DiskSensor, HostDisk
from engine.sensors.memory import HostMemory

GRANDCHILD_MB = 64
# The child starts a grandchild that fills GRANDCHILD_MB of memory, says so on the shared stdout, and waits.
PARENT = f"""
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c",
                  "import time; block = b'x' * ({GRANDCHILD_MB} << 20); print('ready', flush=True); time.sleep(60)"])
time.sleep(60)
"""


@pytest.fixture
def spawn() -> Iterator:
    """Starts child processes; kills them and their descendants afterwards."""
    started: list[subprocess.Popen] = []

    def start(code: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code], **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        for member in family:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(5)


def test_cpu_sensor_finds_a_burning_child_in_top(spawn):
    burner = spawn("while True: pass")
    sensor = CpuSensor(Threshold(1, 0, for_scans=1), HostCpu())
    assert sensor.scan(0.0) == []  # primes the machine's and every process's baseline
    time.sleep(0.7)
    [event] = sensor.scan(0.7)
    assert event["type"] == "resource.cpu_spike" and event["data"]["cpu_pct"] >= 1
    assert len(event["data"]["per_cpu"]) == psutil.cpu_count() and len(event["data"]["load_avg"]) == 3
    row = next(row for row in event["data"]["top"] if row["pid"] == burner.pid)
    assert row["cpu_pct"] > 10 and row["rss_mb"] > 1 and row["name"].startswith("python")  # shares 2 cores


def test_cpu_probe_waits_for_a_long_enough_window():
    probe = HostCpu()
    assert probe.read() is None and probe.read() is None  # priming, then a window too short to mean much
    time.sleep(0.3)
    reading = probe.read()
    assert reading is not None and 0 <= reading.cpu_pct <= 100


def test_agents_sensor_sums_the_whole_process_tree_and_owns_its_descendants(spawn):
    child = spawn(PARENT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    grandchild = psutil.Process(child.pid).children()[0]
    sensor = AgentsSensor(Threshold(90, 70), Threshold(2048, 1536), lambda: {"coder": child.pid, "gone": 2 ** 22 + 7},
                          AgentTrees())
    assert sensor.scan(0.0) == []
    stats = sensor.stats()
    assert set(stats) == {"coder"}  # a pid with no process has no reading
    coder = stats["coder"]
    assert coder["pid"] == child.pid and coder["processes"] == 2
    assert {row["pid"] for row in coder["top"]} == {child.pid, grandchild.pid}
    child_rss = psutil.Process(child.pid).memory_info().rss / 2 ** 20
    assert coder["rss_mb"] >= child_rss + GRANDCHILD_MB - 1
    assert owner(grandchild.pid, {"coder": child.pid}) == "coder"
    assert owner(child.pid, {"other": grandchild.pid}) is None


def test_memory_and_disk_probes_read_sane_numbers(tmp_path: Path):
    reading = HostMemory().read()
    assert 0 < reading.used_pct <= 100 and 0 < reading.available_mb <= reading.total_mb
    top = HostMemory().top(3)
    assert len(top) == 3 and top[0]["rss_mb"] >= top[-1]["rss_mb"] > 0
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "day.jsonl").write_bytes(b"x" * 100_000)
    sensor = DiskSensor(Threshold(0.5, 0, for_scans=1), HostDisk(tmp_path / "data-not-created-yet"))
    [event] = sensor.scan(0.0)
    assert event["data"]["path"].endswith("data-not-created-yet") and Path(event["data"]["mount"]).is_mount()
    assert 0 < event["data"]["free_mb"] < event["data"]["total_mb"] and event["data"]["top"] == []
    assert HostDisk(tmp_path).top(5) == [{"path": "events", "size_mb": 0.1}]


def test_a_process_with_an_agents_start_marker_is_that_agents_even_outside_its_tree(spawn):
    """A burner started apart (a daemonized child, or `chaos cpu-spike`) that carries the agent's current
    marker is named as the agent's, so the shipped playbook restarts the agent and the restart kills it;
    a stale or made-up marker names nobody."""
    mark = "agent/coder/0123456789ab"
    sleeper = "import time; time.sleep(60)"
    root = spawn(sleeper, env={**os.environ, "AIOS_RUN_MARK": mark})
    burner = spawn(sleeper, env={**os.environ, "AIOS_RUN_MARK": mark})
    stale = spawn(sleeper, env={**os.environ, "AIOS_RUN_MARK": "agent/coder/ffffffffffff"})
    for proc in (root, burner, stale):  # their environments are set once exec is done
        wait_until = time.monotonic() + 5
        while psutil.Process(proc.pid).environ().get("AIOS_RUN_MARK") is None and time.monotonic() < wait_until:
            time.sleep(0.01)
    assert owner(burner.pid, {"coder": root.pid}) == "coder"
    assert owner(stale.pid, {"coder": root.pid}) is None
    assert owner(burner.pid, {"analyst": root.pid}) is None  # the marker names coder, not whoever has the root
