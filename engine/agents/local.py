"""Agents as processes of this engine: the AgentControl that `restart_agent` and `signal` act through.

Each agent runs in its own session (so it outlives the engine, as contract §7 wants) with `AIOS_AGENT`,
`AIOS_URL` and a start marker (`AIOS_RUN_MARK`) in its environment. Its stdout and stderr are a pipe to a
log pump (`logpump.py`, started beside it, in a session of its own, with the same marker) that writes
`data/agents/<name>.log` under its cap: the engine is not in the middle, so an engine restart breaks
nothing. A restart kills the old tree through `proctree`, marker included, so a worker that called
`setsid()` does not survive its agent, and neither does the pump. Starting (fork, exec, pipes) blocks, so
it runs in a worker thread. An agent an earlier engine started is adopted: it is not
our child, so it is watched and signalled through psutil, which refuses a pid that was reused. Watching,
heartbeats, pidfiles and events belong to the supervisor, which builds on this.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from engine.osutil import proctree
from engine.osutil.files import atomic_write

log = logging.getLogger("aios.agents")

_REAP_S = 5.0  # after the tree was killed, how long to wait for the old process to be reaped
ENGINE_ROOT = str(Path(__file__).resolve().parents[2])  # so `python -m engine…` agents import this engine
LOGPUMP = str(Path(__file__).with_name("logpump.py"))  # run by path with `-I -S`: stdlib only, small
LOG_MAX_BYTES = 10 << 20
LOG_KEEP = 3


@dataclass(frozen=True, slots=True)
class Exit:
    """How an agent's process ended: `exit_code`, or `signal` (its name) when one killed it. Both are None
    for an adopted process: only its parent can learn how it ended, and that parent is not this engine."""

    exit_code: int | None = None
    signal: str | None = None


def _exit_of(returncode: int) -> Exit:
    """Popen's returncode (negative: killed by that signal) as an Exit."""
    if returncode >= 0:
        return Exit(exit_code=returncode)
    try:
        return Exit(signal=signal.Signals(-returncode).name)
    except ValueError:  # a real-time signal without a name of its own
        return Exit(signal=f"SIG{-returncode}")


class AgentProcess:
    """One agent's process: our child (`popen`, with its log pump `pump`, also our child), or adopted from
    an earlier engine (`proc`, psutil's handle, which remembers the create_time and so never acts on a
    process that merely reuses the pid; its pump is not ours to reap)."""

    __slots__ = ("create_time", "marker", "pid", "popen", "proc", "pump")

    def __init__(self, pid: int, marker: str, create_time: float | None,
                 popen: subprocess.Popen[bytes] | None = None, proc: psutil.Process | None = None,
                 pump: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.marker = marker
        self.create_time = create_time
        self.popen = popen
        self.proc = proc
        self.pump = pump

    @property
    def adopted(self) -> bool:
        return self.popen is None

    def exit(self) -> Exit | None:
        """None while the process runs; how it ended otherwise (our child is reaped here, and so is its pump
        once it ended: after the agent and whatever inherited its output)."""
        if self.pump is not None:
            self.pump.poll()
        if self.popen is not None:
            code = self.popen.poll()
            return None if code is None else _exit_of(code)
        try:
            alive = self.proc is not None and self.proc.is_running() and self.proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        return None if alive else Exit()

    def send_signal(self, sig: signal.Signals) -> None:
        """ProcessLookupError when the process is gone (or its pid now names another process)."""
        try:
            if self.popen is not None:
                self.popen.send_signal(sig)  # our unreaped child: its pid cannot have been reused
            elif self.proc is not None:
                self.proc.send_signal(sig)
        except psutil.NoSuchProcess:
            raise ProcessLookupError(f"process {self.pid} is gone") from None
        except psutil.AccessDenied:
            raise PermissionError(f"not allowed to signal process {self.pid}") from None


class LocalAgents:
    """Starts, adopts, restarts and signals the agents of the config's `agents:` mapping (`{name: {command,
    cwd, env}}`); `python` as the first word of a command is the engine's own interpreter. `url` and `env`
    (extra variables for every agent, such as `AIOS_TOKEN`) may be changed before agents are started. Each
    log stays under `log_max_bytes`, with `log_keep` rotated files beside it."""

    def __init__(self, agents: Mapping[str, Mapping[str, Any]], data_dir: str | Path, url: str | None = None,
                 grace_s: float = proctree.KILL_GRACE_S, env: Mapping[str, str] | None = None, *,
                 log_max_bytes: int = LOG_MAX_BYTES, log_keep: int = LOG_KEEP) -> None:
        self._specs = dict(agents)
        self._log_dir = Path(data_dir) / "agents"
        self.url = url
        self.env = dict(env or {})
        self._grace_s = grace_s
        self._log_max_bytes = log_max_bytes
        self._log_keep = log_keep
        self._running: dict[str, AgentProcess] = {}
        self._locks = {name: asyncio.Lock() for name in self._specs}  # one start or restart at a time per agent

    def known(self, name: str) -> bool:
        return name in self._specs

    def log_path(self, name: str) -> Path:
        return self._log_dir / f"{name}.log"

    def route_path(self, name: str) -> Path:
        """The agent's route file (`AIOS_URL_FILE`): the URL it reaches the engine at, written at each start;
        an agent that reads it again when it changes can be routed elsewhere for a while (chaos latency)."""
        return self._log_dir / f"{name}.url"

    def command(self, name: str) -> list[str]:
        """The argv the agent runs with: `python` as the first word becomes this engine's interpreter."""
        command = [str(word) for word in self._specs[name]["command"]]
        return [sys.executable, *command[1:]] if command[0] == "python" else command

    def process(self, name: str) -> AgentProcess | None:
        """The agent's current process, running or exited; None when it was never started (or is being
        replaced right now)."""
        return self._running.get(name)

    def busy(self, name: str) -> bool:
        """A start or restart of the agent is under way: its process is about to change."""
        return self._lock(name).locked()

    def pid(self, name: str) -> int | None:
        """The agent's pid while it runs (an exited child is reaped here), else None."""
        running = self._running.get(name)
        return running.pid if running and running.exit() is None else None

    async def adopt(self, name: str, pid: int, create_time: float, marker: str) -> AgentProcess | None:
        """Take over an agent an earlier engine started, when `pid` still names that very process: the same
        create_time and, when its environment is readable, the same marker (its log pump has another pid,
        so it is never taken for the agent). None (and nothing adopted) otherwise: the process is gone, a
        zombie, or an unrelated one that got the pid."""
        async with self._lock(name):  # KeyError for an agent that is not declared
            proc = await asyncio.to_thread(_same_process, pid, create_time, marker)
            if proc is None:
                return None
            self._running[name] = running = AgentProcess(pid, marker, create_time, proc=proc)
            return running

    async def start(self, name: str) -> dict[str, Any]:
        """Start the agent unless it runs already; `{agent, pid, started}`. OSError if it cannot start."""
        async with self._lock(name):
            return await self._start(name)

    async def restart(self, name: str) -> dict[str, Any]:
        """Kill the agent's whole tree (if any) and start it anew; `{agent, old_pid, pid, killed, started}`."""
        async with self._lock(name):
            old = self._running.pop(name, None)
            killed = await asyncio.to_thread(self._kill, old) if old else []
            return {**await self._start(name), "old_pid": old.pid if old else None, "killed": killed}

    async def stop(self, name: str) -> list[int]:
        """Kill the agent's whole tree and forget it (an operator's stop); the pids signalled."""
        async with self._lock(name):
            old = self._running.pop(name, None)
            return await asyncio.to_thread(self._kill, old) if old else []

    async def signal(self, name: str, signal_name: str) -> dict[str, Any]:
        """Send a signal (`TERM`, `SIGHUP`…) to the agent's process; ProcessLookupError when it is not running."""
        sig = proctree.signal_from_name(signal_name)
        pid = self.pid(name)
        if pid is None:
            raise ProcessLookupError(f"agent {name!r} is not running")
        self._running[name].send_signal(sig)
        return {"agent": name, "pid": pid, "signal": sig.name}

    async def stop_all(self) -> dict[str, list[int]]:
        """Kill every agent's tree; the pids signalled, per agent. The engine never calls this on its own
        way out (agents outlive it); tools and tests do."""
        running, self._running = self._running, {}
        killed = await asyncio.gather(*(asyncio.to_thread(self._kill, item) for item in running.values()))
        return dict(zip(running, killed))

    def release(self) -> None:
        """Forget every process without touching it (the engine is going away; the agents stay)."""
        self._running = {}

    def _lock(self, name: str) -> asyncio.Lock:
        if name not in self._locks:
            raise KeyError(f"agent {name!r} is not declared in the config")
        return self._locks[name]

    def _write_route(self, name: str) -> bool:
        """A full disk must not keep an agent from starting: without a route file it is given only `AIOS_URL`
        (not `AIOS_URL_FILE`, whose old content may name another engine)."""
        try:
            atomic_write(self.route_path(name), (self.url or "").encode() + b"\n")
            return True
        except OSError as exc:
            log.warning("cannot write the route file of agent %s (%s); it uses AIOS_URL", name, exc)
            return False

    def _environment(self, name: str, marker: str, routed: bool) -> dict[str, str]:
        spec = self._specs[name]
        env = {**os.environ, **self.env, **spec.get("env", {}), "AIOS_AGENT": name, proctree.MARK_ENV: marker}
        if self.url:
            env["AIOS_URL"] = self.url
        if routed:
            env["AIOS_URL_FILE"] = str(self.route_path(name))
        if self._specs[name]["command"][0] == "python":  # an engine run from a checkout: let its modules be found
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), ENGINE_ROOT]))
        return env

    async def _start(self, name: str) -> dict[str, Any]:
        current = self.pid(name)
        if current is not None:
            return {"agent": name, "pid": current, "started": False}
        self._running[name] = running = await asyncio.to_thread(self._spawn, name)
        return {"agent": name, "pid": running.pid, "started": True}

    def _spawn(self, name: str) -> AgentProcess:
        """The log pump, then the agent writing into it (blocking: run it in a thread). The engine keeps no
        end of the pipe, so the pump ends when the agent's last writer does; an agent that cannot start
        leaves a line saying why in its log."""
        command = self.command(name)
        marker = f"agent/{name}/{uuid.uuid4().hex[:12]}"
        self._log_dir.mkdir(parents=True, exist_ok=True)
        routed = bool(self.url) and self._write_route(name)
        reader, writer = os.pipe()
        try:
            pump = subprocess.Popen(
                [sys.executable, "-I", "-S", LOGPUMP, str(self._log_max_bytes), str(self._log_keep),
                 str(self.log_path(name))],
                stdin=reader, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={proctree.MARK_ENV: marker}, start_new_session=True)
        except BaseException:
            os.close(writer)
            raise
        finally:
            os.close(reader)
        try:
            _line(writer, f"aios-engine starts {name}: {subprocess.list2cmdline(command)}")
            popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=writer, stderr=writer,
                                     cwd=self._specs[name].get("cwd"), env=self._environment(name, marker, routed),
                                     start_new_session=True)
        except OSError as exc:
            with contextlib.suppress(OSError):
                _line(writer, f"aios-engine cannot start {name}: {exc}")
            os.close(writer)
            _reap(pump)
            raise
        os.close(writer)
        known = proctree.describe(popen.pid)
        return AgentProcess(popen.pid, marker, known["create_time"] if known else None, popen=popen, pump=pump)

    def _kill(self, running: AgentProcess) -> list[int]:
        """Kill the tree and reap the agent when it is our child (blocking: run it in a thread)."""
        killed = proctree.kill_tree(running.pid, running.marker, self._grace_s, running.create_time)
        for child in (running.popen, running.pump):
            if child is not None:
                _reap(child)
        return killed


def _reap(child: subprocess.Popen[bytes]) -> None:
    """Wait (a while) for a child that was killed or lost its input; blocking."""
    try:
        child.wait(_REAP_S)
    except subprocess.TimeoutExpired:  # unkillable (uninterruptible sleep): left to a later poll
        pass


def _same_process(pid: int, create_time: float, marker: str) -> psutil.Process | None:
    """psutil's handle on `pid` when it is the live process with `create_time` and (when its environment
    is readable) `marker`; None otherwise."""
    try:
        proc = psutil.Process(pid)
        if proc.create_time() != create_time or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        try:
            if proc.environ().get(proctree.MARK_ENV) != marker:
                return None
        except psutil.AccessDenied:  # another user's process: create_time alone has to do
            pass
    except psutil.Error:
        return None
    return proc


def _line(fd: int, text: str) -> None:
    """One `--- <UTC time> text` line into the log pipe (the pump is reading it already)."""
    os.write(fd, f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}\n".encode())
