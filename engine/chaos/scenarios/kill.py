"""kill: SIGKILL an agent → `agent.down` → the shipped playbook restarts it → a heartbeat from the new process."""
from __future__ import annotations

import os
import signal
import time
from typing import Any

from engine.chaos.scenarios.base import Scenario, new_process_heard


class Kill(Scenario):
    name = "kill"
    kinds = ("agent-down",)
    deadline_s = 120.0
    summary = "SIGKILL an agent; the engine must restart it"

    async def inject(self) -> dict[str, Any]:
        assert self.agent is not None
        self.killed_at = time.time()
        os.kill(int(self.agent["pid"]), signal.SIGKILL)
        return {"signal": "SIGKILL", "pid": self.agent["pid"]}

    async def verify(self) -> str | None:
        return await new_process_heard(self.api, self.agent, self.killed_at)
