"""The chaos scenarios, one file per fault (`base.py` says what a scenario is); `SCENARIOS` by name."""
from __future__ import annotations

from engine.chaos.scenarios.base import Scenario
from engine.chaos.scenarios.cpu_spike import CpuSpike
from engine.chaos.scenarios.disk_full import DiskFull
from engine.chaos.scenarios.kill import Kill
from engine.chaos.scenarios.latency import Latency

SCENARIOS: dict[str, type[Scenario]] = {cls.name: cls for cls in (Kill, Latency, DiskFull, CpuSpike)}
