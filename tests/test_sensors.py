"""Sensors with injected readings: thresholds, hysteresis, event shapes, config. No psutil involved."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from engine.config import ConfigError, load_config
from engine.schemas import apply_defaults, load_schema
from engine.yaml_loader import load_file
from engine.events import EventValidator
from engine.sensors.build import build_sensors, scan_all
from engine.sensors.thresholds import config_problems
from engine.sensors.agents import AgentReading, AgentsSensor
from engine.sensors.base import Hysteresis, Sensor, Threshold, ThresholdError
from engine.sensors.cpu import CpuReading, CpuSensor
from engine.sensors.disk import DiskReading, DiskSensor, largest_folders
from engine.sensors.memory import MemoryReading, MemorySensor

TOP = [{"pid": 4242, "name": "burner", "cpu_pct": 99.0, "rss_mb": 12.0}]


class FakeProbe:
    """Replays one reading per scan; counts how often the (costly) top list is asked for."""

    def __init__(self, readings: Iterable[Any], top: list[dict[str, Any]] | None = None) -> None:
        self.readings = iter(readings)
        self.top_calls = 0
        self._top = TOP if top is None else top

    def read(self) -> Any:
        return next(self.readings)

    def top(self, n: int) -> list[dict[str, Any]]:
        self.top_calls += 1
        return self._top[:n]


def cpu(pct: float) -> CpuReading:
    return CpuReading(pct, [pct, pct], [1.0, 0.5, 0.25])


def memory(pct: float) -> MemoryReading:
    return MemoryReading(pct, 1000.0, 8000.0, 0.0)


def disk(pct: float) -> DiskReading:
    return DiskReading("/srv/aios/data", "/srv", pct, 500.0, 10000.0)


# Each host sensor kind, with the readings it is fed: the hysteresis must behave the same in all of them.
KINDS = [(CpuSensor, cpu, "resource.cpu_spike", "cpu_pct"),
         (MemorySensor, memory, "resource.memory_high", "used_pct"),
         (DiskSensor, disk, "resource.disk_full", "used_pct")]


def run(sensor: Sensor, count: int, interval: float = 10.0) -> list[list[dict[str, Any]]]:
    """The events of `count` scans, one list per scan, `interval` seconds apart; each one checked to be
    what intake accepts from the engine."""
    scans = [sensor.scan(1000.0 + i * interval) for i in range(count)]
    for events in scans:
        EventValidator().normalize_batch(events, source="engine", external=False)
    return scans


def types(scans: list[list[dict[str, Any]]]) -> list[list[str]]:
    return [[event["type"] for event in events] for events in scans]


@pytest.mark.parametrize(("kind", "reading", "event_type", "metric"), KINDS)
def test_fires_after_for_scans_at_or_above_high_once_then_clears_at_clear(kind, reading, event_type, metric):
    values = [95, 90, 90, 97, 89, 76, 90, 75, 95]  # 90 = high counts; 75 = clear clears
    probe = FakeProbe(map(reading, values))
    scans = run(kind(Threshold(90, 75, for_scans=2), probe), len(values))
    assert types(scans) == [[], [event_type], [], [], [], [], [], [f"{event_type}_cleared"], []]
    fired, cleared = scans[1][0], scans[7][0]
    assert fired["severity"] == "warning" and fired["source"] == "sensor.host" and "agent" not in fired
    assert fired["data"][metric] == 90 and fired["data"]["threshold"] == 90 and fired["data"]["clear"] == 75
    assert fired["data"]["repeat"] is False and fired["data"]["top"] == TOP
    assert cleared["severity"] == "info" and cleared["data"][metric] == 75
    assert cleared["data"]["duration_s"] == 60.0  # fired at scan 1, cleared at scan 7
    assert probe.top_calls == 2  # gathered only for the two events


@pytest.mark.parametrize(("kind", "reading", "event_type", "metric"), KINDS)
def test_a_scan_below_high_restarts_the_count(kind, reading, event_type, metric):
    values = [95, 89, 95, 95, 95]
    scans = run(kind(Threshold(90, 75, for_scans=3), FakeProbe(map(reading, values))), len(values))
    assert types(scans) == [[], [], [], [], [event_type]]


def test_flapping_between_clear_and_high_never_fires_again():
    values = [95, 95] + [76, 99] * 20
    scans = run(CpuSensor(Threshold(90, 75), FakeProbe(map(cpu, values))), len(values))
    assert sum(len(events) for events in scans) == 1


def test_flapping_across_clear_fires_a_new_episode_only_after_for_scans():
    values = [95, 95, 70, 95, 70, 95, 95]
    scans = run(CpuSensor(Threshold(90, 75), FakeProbe(map(cpu, values))), len(values))
    assert types(scans) == [[], ["resource.cpu_spike"], ["resource.cpu_spike_cleared"], [], [], [],
                            ["resource.cpu_spike"]]


def test_repeat_re_announces_while_the_alert_holds():
    values = [95] * 8
    scans = run(CpuSensor(Threshold(90, 75, for_scans=1, repeat=30), FakeProbe(map(cpu, values))), len(values))
    announced = [(i, events[0]["data"]) for i, events in enumerate(scans) if events]
    assert [i for i, _ in announced] == [0, 3, 6]
    assert [data["repeat"] for _, data in announced] == [False, True, True]
    assert [data.get("duration_s") for _, data in announced] == [None, 30.0, 60.0]


def test_no_reading_yet_leaves_the_state_alone():
    scans = run(CpuSensor(Threshold(90, 75), FakeProbe([cpu(95), None, cpu(95)])), 3)
    assert types(scans) == [[], [], ["resource.cpu_spike"]]


def test_the_event_names_the_agent_behind_the_top_process_and_its_clear_names_it_too():
    sensor = CpuSensor(Threshold(90, 75, for_scans=1), FakeProbe(map(cpu, [95, 50])), lambda: {"coder": 4242})
    fired, cleared = (events[0] for events in run(sensor, 2))
    assert fired["agent"] == "coder" and cleared["agent"] == "coder"


def test_hysteresis_keeps_state_per_key_and_forgets_keys_that_went_away():
    alert = Hysteresis("resource.agent_cpu", Threshold(90, 70, for_scans=2), "sensor.agents")

    def describe(name: str):
        return lambda: ({"cpu_pct": 1.0}, name)

    assert alert.update("a", 95, 0, describe("a")) == [] and alert.update("b", 95, 0, describe("b")) == []
    assert alert.update("a", 95, 10, describe("a"))[0]["agent"] == "a"
    assert alert.update("b", 10, 10, describe("b")) == []  # b's streak restarts, a stays firing
    assert alert.update("a", 80, 20, describe("a")) == []
    gone = alert.forget(["b"], 25)
    assert gone == [{"type": "resource.agent_cpu_cleared", "source": "sensor.agents", "severity": "info",
                     "agent": "a", "data": {"reason": "gone", "threshold": 90, "clear": 70, "duration_s": 15.0}}]
    assert alert.forget([], 30) == []  # b was not firing: dropped silently


def test_threshold_refuses_values_that_cannot_work():
    with pytest.raises(ThresholdError, match="below high") as caught:
        Threshold(80, 80)
    assert caught.value.key == "clear"
    with pytest.raises(ThresholdError):
        Threshold(90, 75, for_scans=0)
    with pytest.raises(ThresholdError):
        Threshold(90, 75, repeat=0)


class FakeAgents:
    def __init__(self, rounds: Iterable[dict[str, AgentReading]]) -> None:
        self.rounds = iter(rounds)
        self.asked: list[dict[str, int]] = []

    def read(self, pids: dict[str, int]) -> dict[str, AgentReading]:
        self.asked.append(pids)
        return next(self.rounds)


def agent(pid: int, cpu_pct: float, rss_mb: float) -> AgentReading:
    return AgentReading(pid, cpu_pct, rss_mb, 2, [{"pid": pid, "name": "python", "cpu_pct": cpu_pct,
                                                    "rss_mb": rss_mb}])


def test_agents_alert_per_agent_and_metric_and_clear_when_an_agent_is_gone():
    rounds = [{"coder": agent(10, 95, 100), "monitor": agent(20, 5, 3000)},
              {"coder": agent(10, 95, 100), "monitor": agent(20, 5, 3000)},
              {"coder": agent(10, 20, 100), "monitor": agent(20, 5, 3000)},
              {"coder": agent(10, 20, 100)}]
    probe = FakeAgents(rounds)
    sensor = AgentsSensor(Threshold(90, 70), Threshold(2048, 1536), lambda: {"coder": 10, "monitor": 20}, probe)
    scans = run(sensor, 4)
    assert [[(e["type"], e["agent"]) for e in events] for events in scans] == [
        [], [("resource.agent_cpu", "coder"), ("resource.agent_memory", "monitor")],
        [("resource.agent_cpu_cleared", "coder")], [("resource.agent_memory_cleared", "monitor")]]
    fired = scans[1][0]
    assert fired["source"] == "sensor.agents" and fired["severity"] == "warning"
    assert fired["data"]["pid"] == 10 and fired["data"]["cpu_pct"] == 95 and fired["data"]["processes"] == 2
    assert scans[3][0]["data"]["reason"] == "gone"
    assert probe.asked[0] == {"coder": 10, "monitor": 20}
    assert sensor.stats() == {"coder": {"pid": 10, "cpu_pct": 20, "rss_mb": 100, "processes": 2,
                                        "top": rounds[3]["coder"].top, "at": 1030.0}}


def test_scan_all_reports_a_broken_sensor_and_keeps_the_others():
    class Broken(Sensor):
        name = "broken"

        def scan(self, now: float) -> list[dict[str, Any]]:
            raise OSError("disk vanished")

    working = CpuSensor(Threshold(90, 75, for_scans=1), FakeProbe([cpu(99)]))
    result = scan_all([Broken(), working], 0.0)
    assert result.errors == {"broken": "OSError: disk vanished"}
    assert [event["type"] for event in result.events] == ["resource.cpu_spike"]


def test_defaults_and_build_sensors(tmp_path: Path):
    section = load_config(None).raw["sensors"]
    assert section["interval"] == "10s"
    assert (section["cpu"]["high"], section["cpu"]["clear"], section["cpu"]["for_scans"]) == (90, 75, 2)
    assert (section["memory"]["high"], section["memory"]["clear"]) == (90, 80)
    assert (section["disk"]["high"], section["disk"]["clear"]) == (90, 85)
    assert section["agents"]["cpu"] == {"high": 90, "clear": 70}
    assert section["agents"]["rss_mb"] == {"high": 2048, "clear": 1536}
    sensors = build_sensors(section, tmp_path, dict)
    assert [sensor.name for sensor in sensors] == ["cpu", "memory", "disk", "agents"]
    assert sensors[0].alert.threshold == Threshold(90, 75, 2, 30.0)


def test_build_sensors_skips_disabled_ones_and_names_bad_thresholds(tmp_path: Path):
    path = tmp_path / "aios.yaml"
    path.write_text("sensors:\n  disk: {enabled: false}\n  agents: {enabled: false, repeat: 0s}\n"
                    "  cpu: {high: 80, clear: 85}\n")
    with pytest.raises(ConfigError) as refused:  # config check catches them before start-up
        load_config(path)
    assert [str(d).split(": error: ")[1] for d in refused.value.diagnostics] == [
        "repeat must be a positive duration, or null for never",
        "clear (85) must be below high (80), or alerts would flap"]
    section = apply_defaults(load_schema("config"), load_file(path).value)["sensors"]
    assert config_problems(section) == [
        ("/sensors/cpu/clear", "clear (85) must be below high (80), or alerts would flap"),
        ("/sensors/agents/repeat", "repeat must be a positive duration, or null for never"),
        ("/sensors/agents/repeat", "repeat must be a positive duration, or null for never")]
    with pytest.raises(ValueError, match="/sensors/cpu/clear"):
        build_sensors(section, tmp_path, dict)
    section["cpu"]["clear"] = 75
    section["agents"]["repeat"] = None
    assert [sensor.name for sensor in build_sensors(section, tmp_path, dict)] == ["cpu", "memory"]


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


def test_largest_folders_walks_two_levels_without_following_symlinks(tmp_path: Path):
    write(tmp_path / "events" / "2024-01-01.jsonl", 300_000)
    write(tmp_path / "events" / "archive" / "2023-12-01.jsonl.gz", 200_000)
    write(tmp_path / "agents" / "coder.log", 100_000)
    write(tmp_path / "snapshots" / "run1" / "deep" / "file", 5_000_000)  # below the walk's depth
    write(tmp_path / "top.bin", 1_000_000)  # not in a folder
    (tmp_path / "link").symlink_to(tmp_path / "events")
    found = {row["path"]: row["size_mb"] for row in largest_folders(tmp_path, 10)}
    assert set(found) == {"events", "events/archive", "agents", "snapshots", "snapshots/run1"}
    assert found["events"] >= found["events/archive"] + found["agents"] > 0
    assert found["snapshots"] == found["snapshots/run1"] == 0
    assert [row["path"] for row in largest_folders(tmp_path, 2)] == ["events", "events/archive"]


def test_largest_folders_stops_after_max_entries(tmp_path: Path):
    for i in range(50):
        write(tmp_path / "many" / f"{i}.bin", 10)
    assert largest_folders(tmp_path, 5, max_entries=10) == [{"path": "many", "size_mb": 0.0}]
    assert largest_folders(tmp_path / "missing", 5) == []
