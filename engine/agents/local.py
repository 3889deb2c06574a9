"""Agents as child processes of this engine: the AgentControl that `restart_agent` and `signal` act through.

Each agent runs in its own session (so it outlives the engine, as contract §7 wants) with its output
appended to `data/agents/<name>.log` and `AIOS_AGENT`, `AIOS_URL` and a start marker (`AIOS_RUN_MARK`) in
its environment; a restart kills the old tree through `proctree`, marker included, so a worker that
called `setsid()` does not survive its agent. Watching, heartbeats and adoption after an engine restart
belong to the supervisor, which builds on this.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.reactor import proctree

_REAP_S = 5.0  # after the tree was killed, how long to wait for the old process to be reaped


@dataclass(frozen=True, slots=True)
class _Running:
    popen: subprocess.Popen[bytes]
    marker: str
    create_time: float | None


class LocalAgents:
    """Starts, restarts and signals the agents of the config's `agents:` mapping (`{name: {command, cwd,
    env}}`); `python` as the first word of a command is the engine's own interpreter."""

    def __init__(self, agents: Mapping[str, Mapping[str, Any]], data_dir: str | Path, url: str | None = None,
                 grace_s: float = proctree.KILL_GRACE_S) -> None:
        self._specs = dict(agents)
        self._log_dir = Path(data_dir) / "agents"
        self._url = url
        self._grace_s = grace_s
        self._running: dict[str, _Running] = {}
        self._locks = {name: asyncio.Lock() for name in self._specs}  # one start or restart at a time per agent

    def known(self, name: str) -> bool:
        return name in self._specs

    def pid(self, name: str) -> int | None:
        """The agent's pid while it runs (an exited agent is reaped here), else None."""
        running = self._running.get(name)
        return running.popen.pid if running and running.popen.poll() is None else None

    async def start(self, name: str) -> dict[str, Any]:
        """Start the agent unless it runs already; `{agent, pid, started}`. OSError if it cannot start."""
        async with self._lock(name):
            return self._start(name)

    async def restart(self, name: str) -> dict[str, Any]:
        """Kill the agent's whole tree (if any) and start it anew; `{agent, old_pid, pid, killed, started}`."""
        async with self._lock(name):
            old = self._running.pop(name, None)
            killed = await asyncio.to_thread(self._kill, old) if old else []
            return {**self._start(name), "old_pid": old.popen.pid if old else None, "killed": killed}

    async def signal(self, name: str, signal_name: str) -> dict[str, Any]:
        """Send a signal (`TERM`, `SIGHUP`…) to the agent's process; ProcessLookupError when it is not running."""
        sig = proctree.signal_from_name(signal_name)
        pid = self.pid(name)
        if pid is None:
            raise ProcessLookupError(f"agent {name!r} is not running")
        self._running[name].popen.send_signal(sig)  # our unreaped child: its pid cannot have been reused
        return {"agent": name, "pid": pid, "signal": sig.name}

    async def stop_all(self) -> dict[str, list[int]]:
        """Kill every agent's tree; the pids signalled, per agent."""
        running, self._running = self._running, {}
        killed = await asyncio.gather(*(asyncio.to_thread(self._kill, item) for item in running.values()))
        return dict(zip(running, killed))

    def _lock(self, name: str) -> asyncio.Lock:
        if name not in self._locks:
            raise KeyError(f"agent {name!r} is not declared in the config")
        return self._locks[name]

    def _start(self, name: str) -> dict[str, Any]:
        current = self.pid(name)
        if current is not None:
            return {"agent": name, "pid": current, "started": False}
        spec = self._specs[name]
        command = [str(word) for word in spec["command"]]
        if command[0] == "python":
            command[0] = sys.executable
        marker = f"agent/{name}/{uuid.uuid4().hex[:12]}"
        env = {**os.environ, **spec.get("env", {}), "AIOS_AGENT": name, proctree.MARK_ENV: marker}
        if self._url:
            env["AIOS_URL"] = self._url
        self._log_dir.mkdir(parents=True, exist_ok=True)
        with open(self._log_dir / f"{name}.log", "ab") as log:
            popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=spec.get("cwd"), env=env, start_new_session=True)
        known = proctree.describe(popen.pid)
        self._running[name] = _Running(popen, marker, known["create_time"] if known else None)
        return {"agent": name, "pid": popen.pid, "started": True}

    def _kill(self, running: _Running) -> list[int]:
        """Kill the tree and reap the agent (blocking: run it in a thread)."""
        killed = proctree.kill_tree(running.popen.pid, running.marker, self._grace_s, running.create_time)
        try:
            running.popen.wait(_REAP_S)
        except subprocess.TimeoutExpired:  # unkillable (uninterruptible sleep): leave it to a later poll
            pass
        return killed
