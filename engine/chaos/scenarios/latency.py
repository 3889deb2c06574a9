"""latency: slow an agent for real. Its process tree is stopped and continued (SIGSTOP/SIGCONT), running only
0.1 s in every 2 s, and its calls to the engine go through a delaying proxy on loopback (when it has a route
file, `AIOS_URL_FILE`). Its tasks miss their deadlines and its heartbeats come late → its score degrades (or
it is declared down) → the shipped P0 playbook restarts it → the new process runs unhindered → recovered."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import urllib.parse
from pathlib import Path
from typing import Any

import psutil

from engine.chaos.proxy import DelayProxy
from engine.chaos.scenarios.base import Scenario, new_process_heard
from engine.osutil.files import atomic_write

log = logging.getLogger("aios.chaos")
PERIOD_S = 2.0
STOPPED_SHARE = 0.95  # of each period: the agent runs 0.1 s in every 2 s
NETWORK_DELAY_S = 0.2  # per chunk, each way
PROC_ERRORS = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


class Latency(Scenario):
    name = "latency"
    kinds = ("score-degraded", "agent-down")
    deadline_s = 600.0
    summary = ("stop and continue an agent (running 0.1 s in every 2 s) and delay its network; the engine must "
               "restart it")

    async def prepare(self) -> None:
        await super().prepare()
        assert self.agent is not None
        self.root = psutil.Process(int(self.agent["pid"]))
        environ = self.root.environ()
        self.route = Path(environ["AIOS_URL_FILE"]) if environ.get("AIOS_URL_FILE") else None
        self.engine_url = environ.get("AIOS_URL") or self.api.url
        self.proxy: DelayProxy | None = None
        self.proxy_url: str | None = None
        self.route_was: bytes | None = None
        self.duty: asyncio.Task[None] | None = None
        self.cycles = 0

    async def inject(self) -> dict[str, Any]:
        self.started_at = time.time()
        fault: dict[str, Any] = {"pid": self.root.pid, "period_s": PERIOD_S, "stopped_share": STOPPED_SHARE}
        if self.route is not None:
            engine = urllib.parse.urlsplit(self.engine_url)
            self.proxy = DelayProxy(engine.hostname or "127.0.0.1", engine.port or 80, NETWORK_DELAY_S)
            self.proxy_url = await self.proxy.start()
            self.route_was = await asyncio.to_thread(self.route.read_bytes)
            await asyncio.to_thread(atomic_write, self.route, self.proxy_url.encode() + b"\n")
            fault.update(network_delay_ms=round(NETWORK_DELAY_S * 1000), proxy=self.proxy_url)
        else:
            fault["network"] = "not delayed: the agent has no route file (AIOS_URL_FILE)"
        self.duty = asyncio.create_task(self._duty_cycle(), name="chaos-latency-duty")
        return fault

    async def _duty_cycle(self) -> None:
        """Stop and continue the tree until it is gone (restarted) or the duration is over."""
        end = time.monotonic() + self.options.duration_s
        while time.monotonic() < end and self._alive():
            tree = self._tree()
            _signal(tree, signal.SIGSTOP)
            try:
                await asyncio.sleep(PERIOD_S * STOPPED_SHARE)
            finally:
                _signal(tree, signal.SIGCONT)  # never leave it stopped, even when cancelled
            self.cycles += 1
            await asyncio.sleep(PERIOD_S * (1 - STOPPED_SHARE))

    def _alive(self) -> bool:
        with contextlib.suppress(*PROC_ERRORS):
            return self.root.is_running() and self.root.status() != psutil.STATUS_ZOMBIE
        return False

    def _tree(self) -> list[psutil.Process]:
        with contextlib.suppress(*PROC_ERRORS):
            return [self.root, *self.root.children(recursive=True)]
        return []

    async def verify(self) -> str | None:
        return await new_process_heard(self.api, self.agent, self.started_at)

    async def cleanup(self) -> None:
        if self.duty is not None:
            self.duty.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.duty
        _signal(self._tree(), signal.SIGCONT)
        if self.route is not None and self.route_was is not None:
            try:  # put the route back unless the engine rewrote it (it restarted the agent meanwhile)
                if (await asyncio.to_thread(self.route.read_bytes)).strip() == (self.proxy_url or "").encode():
                    await asyncio.to_thread(atomic_write, self.route, self.route_was)
            except OSError as exc:
                log.warning("cannot restore the route file %s: %s", self.route, exc)
        if self.proxy is not None:
            await self.proxy.close()


def _signal(procs: list[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        with contextlib.suppress(*PROC_ERRORS):
            proc.send_signal(sig)
