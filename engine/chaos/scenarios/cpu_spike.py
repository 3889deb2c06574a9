"""cpu-spike: CPU burners under an agent → `resource.cpu_spike` naming the agent as the top consumer → the
shipped playbook restarts the agent, and the restart ends the burners with the rest of its tree.

The burners are started apart but carry the agent's start marker (`AIOS_RUN_MARK`), which is what makes a
process the agent's for the engine (a daemonized child is too): the sensor names the agent, and a restart
kills every process with the marker."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Any

import psutil

from engine.chaos.engine_api import ChaosError
from engine.chaos.scenarios.base import Scenario
from engine.osutil import proctree

BURN = "import time\nend = time.monotonic() + float(__import__('sys').argv[1])\nwhile time.monotonic() < end: pass\n"


class CpuSpike(Scenario):
    name = "cpu-spike"
    kinds = ("cpu-spike",)
    deadline_s = 300.0
    summary = "burn every core under an agent; the engine must stop the burners"

    async def prepare(self) -> None:
        await super().prepare()
        assert self.agent is not None
        self.marker = psutil.Process(int(self.agent["pid"])).environ().get(proctree.MARK_ENV)
        if not self.marker:
            raise ChaosError(f"agent {self.target} has no {proctree.MARK_ENV} in its environment: it was not "
                             "started by this engine")
        self.burners: list[subprocess.Popen[bytes]] = []

    def subject(self) -> dict[str, Any]:
        return {}  # cpu-spike problems are the host's (keyed by host)

    async def inject(self) -> dict[str, Any]:
        env = {**os.environ, proctree.MARK_ENV: self.marker, "AIOS_CHAOS": "cpu-spike burner"}
        life = (self.options.deadline_s or self.deadline_s) + 30  # outlives the deadline: only a fix stops it
        for _ in range(os.cpu_count() or 1):  # each still ends by itself, whatever happens to this process
            self.burners.append(subprocess.Popen([sys.executable, "-c", BURN, str(life)],
                                                 env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL, start_new_session=True))
        return {"burners": [b.pid for b in self.burners], "cores": os.cpu_count(), "marker": self.marker}

    async def verify(self) -> str | None:
        alive = [b.pid for b in self.burners if b.poll() is None]
        if alive:
            return f"burners still running after the problem resolved: {alive}"
        ran_out = [b.pid for b in self.burners if b.returncode == 0]
        return f"burners {ran_out} ran out by themselves: the engine did not stop them" if ran_out else None

    async def cleanup(self) -> None:
        for burner in self.burners:
            with contextlib.suppress(OSError):
                burner.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                burner.wait(timeout=5)
