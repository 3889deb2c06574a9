"""Supervision of the agents declared in `aios.yaml` (contract §7).

The supervisor starts each agent (or adopts the one an earlier engine left running), watches it, and
reports: `agent.started` when it starts or is adopted, one `agent.down` when its process ends or its
heartbeats stop, `agent.recovered` when a silent agent speaks again by itself. It never restarts anything
by itself: restarts come only through `restart()`, which the `restart_agent` action calls, so that
playbooks' throttles, budgets and silences apply.

Pidfiles (`data/agents/<name>.pid`, JSON `{pid, create_time, marker, started, restarts, command}`) let the
next engine adopt an agent: a pid is trusted only when the process it names has the recorded create_time
(and carries the recorded marker), so a pid the kernel reused for something else is never taken for the
agent. Output goes from the agent through its log pump into `data/agents/<name>.log`, capped and rotated
by the pump (`engine/agents/logpump.py`), so it survives an engine restart. Starts and pidfile writes run
in worker threads, off the event loop.

The engine calls `start()` once, `note(event)` for every `agent.*` event (it emits the events `note`
returns), `check(now)` about every second and `close()` on its way out; `pids()` may be called from any
thread.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.agents.local import LOG_KEEP, LOG_MAX_BYTES, AgentProcess, Exit, LocalAgents
from engine.durations import parse_duration
from engine.events import format_ts
from engine.osutil import proctree
from engine.osutil.files import atomic_write
from engine.schemas import apply_defaults, load_schema

log = logging.getLogger("aios.agents")

SOURCE = "engine.supervisor"
DEGRADED_INTERVALS = 2.0  # a heartbeat later than this many intervals shows the agent as degraded
UNDECLARED_MAX = 256  # agents seen only in events that the view remembers (a flood of names stays bounded)
Emit = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(slots=True)
class _Agent:
    """What the supervisor knows of one agent. Times are the supervisor's clock (epoch seconds)."""

    room: str
    declared: bool
    interval_s: float
    misses: int
    started: float | None = None  # when its current process was started (from the pidfile when adopted)
    since: float | None = None  # when this supervisor started or adopted it: heartbeats are due from then
    last_heartbeat: float | None = None
    adopted: bool = False
    restarts: int = 0
    down: dict[str, Any] | None = None  # the agent.down data of the current episode; None while it is up
    activity: str | None = None  # "working" or "learning", from the agent's own events
    task: str | None = None
    pipeline: str | None = None  # the current task's `data.pipeline`: agents sharing one meet (the office)
    reported_pid: int | None = None  # undeclared agents: the pid their heartbeats carry
    pidfile: bytes | None = None  # a pidfile record the disk refused so far: `check()` writes it again

    def silent_since(self, now: float) -> float:
        """Since when nothing was heard: the last heartbeat, else the (re)start, else `now`."""
        for moment in (self.last_heartbeat, self.since):
            if moment is not None:
                return moment
        return now


class Supervisor:
    """Starts, adopts and watches the declared agents; implements AgentControl (`known`, `restart`,
    `signal`) for the actions. `agents_config` is the config's `agents:` mapping."""

    def __init__(self, agents_config: Mapping[str, Mapping[str, Any]], data_dir: Path, url: str | None,
                 emit: Emit, clock: Callable[[], float] = time.time, *, token: str | None = None,
                 grace_s: float = proctree.KILL_GRACE_S, log_max_bytes: int = LOG_MAX_BYTES,
                 log_keep: int = LOG_KEEP) -> None:
        schema = load_schema("config")
        specs = apply_defaults(schema, {"agents": dict(agents_config)})["agents"]
        fields = schema["$defs"]["agent"]["properties"]  # defaults for agents seen only in events
        beat = fields["heartbeat"]["properties"]
        self._default_agent = (fields["room"]["default"], parse_duration(beat["interval"]["default"]),
                               beat["misses"]["default"])
        self._dir = Path(data_dir) / "agents"
        self._emit = emit
        self._clock = clock
        self.local = LocalAgents(specs, data_dir, url, grace_s, {"AIOS_TOKEN": token} if token else None,
                                 log_max_bytes=log_max_bytes, log_keep=log_keep)
        self._agents = {name: _Agent(spec["room"], True, parse_duration(spec["heartbeat"]["interval"]),
                                     spec["heartbeat"]["misses"])
                        for name, spec in specs.items()}
        self._undeclared: OrderedDict[str, _Agent] = OrderedDict()
        self.held: set[str] = set()  # stopped by an operator: no restart until released (`agent start`)
        self._pidfile_locks = {name: asyncio.Lock() for name in specs}  # one writer per pidfile at a time
        self._live: dict[str, int] = {}  # replaced whole, never mutated: safe to read from another thread

    @property
    def url(self) -> str | None:
        """The engine URL agents are given; set it before `start()` when the port is only known then."""
        return self.local.url

    @url.setter
    def url(self, value: str | None) -> None:
        self.local.url = value

    # -- AgentControl ----------------------------------------------------------------------------------
    def known(self, name: str) -> bool:
        return name in self._agents

    async def restart(self, name: str) -> dict[str, Any]:
        """Kill the agent's tree and start it again; `{agent, old_pid, pid, killed, started}`. OSError when
        the new process cannot start (the old one is gone by then, and the agent shows as down)."""
        if name in self.held:  # a run queued before an operator's stop must not bring the agent back
            raise OSError(f"agent {name} was stopped by an operator (aios-engine agent start {name})")
        agent = self._agents[name]
        try:
            outcome = await self.local.restart(name)
        except OSError as exc:
            agent.down, agent.pidfile = {"reason": "start_failed", "error": str(exc)}, None
            async with self._pidfile_locks[name]:
                await asyncio.to_thread(self._pidfile(name).unlink, missing_ok=True)
            self._refresh_live()
            raise
        agent.restarts += 1
        await self._started(name, adopted=False, restarted=True)
        return outcome

    async def signal(self, name: str, signal_name: str) -> dict[str, Any]:
        return await self.local.signal(name, signal_name)

    async def stop(self, name: str, by: str, reason: str) -> dict[str, Any]:
        """An operator's stop: kill the tree, forget the pidfile, and report `agent.stopped` (not `agent.down`:
        nothing is wrong, and no playbook should bring it back). It stays stopped until started again."""
        agent = self._agents[name]
        self.held.add(name)
        killed = await self.local.stop(name)
        agent.down, agent.pidfile = {"reason": "stopped", "by": by, "why": reason}, None
        async with self._pidfile_locks[name]:
            await asyncio.to_thread(self._pidfile(name).unlink, missing_ok=True)
        self._refresh_live()
        await self._emit({"type": "agent.stopped", "source": SOURCE, "agent": name, "severity": "warning",
                          "data": {"by": by, "reason": reason, "killed": killed}})
        return {"agent": name, "killed": killed}

    def release(self, name: str) -> None:
        """An operator's stop is over: the agent may be (re)started again (`agent start` does so next)."""
        self.held.discard(name)

    # -- life cycle ------------------------------------------------------------------------------------
    async def start(self, stopped: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Adopt each declared agent its pidfile names, when that very process still runs; start the others,
        except those an operator stopped (`stopped`: name -> who and why). An agent that cannot start is
        reported as `agent.down` with `reason: start_failed`."""
        for name in self._agents:
            if stopped and name in stopped:
                self._agents[name].down = {"reason": "stopped", **stopped[name]}
                self.held.add(name)
                continue
            record = await asyncio.to_thread(self._read_pidfile, name)
            if record and await self.local.adopt(name, record["pid"], record["create_time"], record["marker"]):
                self._agents[name].restarts = record["restarts"]
                if record.get("command") != self.local.command(name):
                    log.warning("agent %s was adopted but runs another command than aios.yaml declares; "
                                "restart it to apply the change", name)
                await self._started(name, adopted=True, started=record.get("started"))
                continue
            try:
                await self.local.start(name)
            except OSError as exc:
                await self._report_down(name, {"reason": "start_failed", "error": str(exc)})
                continue
            await self._started(name, adopted=False)

    async def close(self) -> None:
        """Forget the agents' handles. The agents keep running (and their pidfiles stay) for the next engine
        to adopt: stopping the engine never stops an agent."""
        self.local.release()
        self._live = {}

    # -- what the engine feeds in ----------------------------------------------------------------------
    def heartbeat(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """An `agent.heartbeat`: the agent is alive. It ends a heartbeat `agent.down` episode when its process
        runs (an exited agent comes back only through a restart) and returns the `agent.recovered` that says
        so (`silent_s`: since the previous heartbeat, else since the start), for the caller to emit; else []."""
        agent = self._agent_of(event)
        if agent is None:
            return []
        now = self._clock()
        silent_s = now - agent.silent_since(now)
        agent.last_heartbeat = now
        if not agent.declared:
            pid = (event.get("data") or {}).get("pid")
            agent.reported_pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
            return []
        if agent.down is None or agent.down.get("reason") != "heartbeat":
            return []
        pid = self.local.pid(event["agent"])
        if pid is None:
            return []
        agent.down = None
        return [{"type": "agent.recovered", "source": SOURCE, "agent": event["agent"], "severity": "info",
                 "data": {"reason": "heartbeat", "silent_s": round(silent_s, 1), "pid": pid}}]

    def note(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Any `agent.*` event: heartbeats, and what the agent is doing, for `view()`. Returns the events the
        engine must emit in answer (`agent.recovered`), usually none; synchronous, for the decision loop."""
        kind = event.get("type")
        if kind == "agent.heartbeat":
            return self.heartbeat(event)
        if kind not in ("agent.task_started", "agent.task_done", "agent.learning"):
            return []
        agent = self._agent_of(event)
        if agent is None:
            return []
        data = event.get("data") or {}
        if kind == "agent.task_started":
            agent.activity, agent.task = "working", str(data.get("task") or "") or None
            agent.pipeline = str(data.get("pipeline") or "")[:200] or None
        elif kind == "agent.task_done":
            agent.activity, agent.task, agent.pipeline = None, None, None
        else:
            agent.activity = "learning" if data.get("active") is True else None
        return []

    async def check(self, now: float) -> None:
        """Report each declared agent that exited or went silent (once per episode); write pidfiles the
        disk refused before."""
        for name, agent in self._agents.items():
            if agent.pidfile is not None:
                await self._write_pidfile(name, again=True)
            if agent.down is not None or self.local.busy(name):
                continue
            process = self.local.process(name)
            if process is None:
                continue
            ended = process.exit()
            silent_s = now - agent.silent_since(now)
            if ended is not None:
                data = self._exit_data(process, ended, now, agent)
            elif silent_s >= agent.interval_s * agent.misses:
                data = {"reason": "heartbeat", "pid": process.pid, "silent_s": round(silent_s, 1),
                        "last_heartbeat": _ts(agent.last_heartbeat), "interval_s": agent.interval_s,
                        "misses": agent.misses}
            else:
                continue
            try:
                await self._report_down(name, data)
            except Exception:  # the store refused (disk full…): the next check reports it again
                log.exception("cannot report agent %s down", name)
        self._refresh_live()

    # -- what the engine reads -------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """`{name: pid}` of the declared agents whose process ran at the last check."""
        return dict(self._live)

    def view(self) -> list[dict[str, Any]]:
        """One row per agent, declared ones first: name, room, pid, state (starting, running, working,
        learning, degraded: heartbeat late, down), times as RFC 3339, restarts, and the current task."""
        now = self._clock()
        rows = []
        for name, agent in [*self._agents.items(), *self._undeclared.items()]:
            pid = self.local.pid(name) if agent.declared else agent.reported_pid
            rows.append({
                "name": name, "room": agent.room, "declared": agent.declared, "pid": pid,
                "state": self._state(agent, now), "adopted": agent.adopted,
                "started": _ts(agent.started), "last_heartbeat": _ts(agent.last_heartbeat),
                "restarts": agent.restarts, "task": agent.task, "pipeline": agent.pipeline,
                "down": dict(agent.down) if agent.down else None,
            })
        return rows

    # -- inside ----------------------------------------------------------------------------------------
    def _agent_of(self, event: dict[str, Any]) -> _Agent | None:
        """The declared agent an event is about, or the undeclared one (remembered, bounded); None without
        an agent name."""
        name = event.get("agent")
        if not isinstance(name, str) or not name:
            return None
        if name in self._agents:
            return self._agents[name]
        agent = self._undeclared.pop(name, None)
        if agent is None:
            room, interval_s, misses = self._default_agent
            agent = _Agent(room, False, interval_s, misses, since=self._clock())
        self._undeclared[name] = agent  # most recently heard last
        while len(self._undeclared) > UNDECLARED_MAX:
            self._undeclared.popitem(last=False)
        return agent

    def _state(self, agent: _Agent, now: float) -> str:
        if agent.down is not None and agent.down.get("reason") == "stopped":
            return "stopped"  # an operator's stop: not a fault (health stays ok)
        silent = now - agent.silent_since(now)
        if agent.down is not None or (not agent.declared and silent >= agent.interval_s * agent.misses):
            return "down"
        if agent.last_heartbeat is not None and silent >= agent.interval_s * DEGRADED_INTERVALS:
            return "degraded"
        if agent.activity:
            return agent.activity
        return "starting" if agent.last_heartbeat is None and not agent.adopted else "running"

    def _exit_data(self, process: AgentProcess, ended: Exit, now: float, agent: _Agent) -> dict[str, Any]:
        data: dict[str, Any] = {"reason": "exited", "pid": process.pid}
        if ended.exit_code is not None:
            data["exit_code"] = ended.exit_code
        elif ended.signal is not None:
            data["signal"] = ended.signal
        else:
            data["adopted"] = True  # not our child: how it ended is unknown
        if agent.started is not None:
            data["uptime_s"] = round(max(0.0, now - agent.started), 1)
        return data

    async def _report_down(self, name: str, data: dict[str, Any]) -> None:
        """Emit `agent.down` and open the episode. The episode opens before the emit is awaited, so a restart
        that lands meanwhile closes it; an emit that fails leaves it closed, to be reported again."""
        agent = self._agents[name]
        agent.down = data
        try:
            await self._emit({"type": "agent.down", "source": SOURCE, "agent": name,
                              "severity": "warning" if data.get("exit_code") == 0 else "error", "data": data})
        except BaseException:
            if agent.down is data:
                agent.down = None
            raise

    async def _started(self, name: str, adopted: bool, restarted: bool = False, started: float | None = None) -> None:
        """Record a process just started or adopted: pidfile, fresh episode, `agent.started`."""
        process = self.local.process(name)
        assert process is not None, "started without a process"
        agent = self._agents[name]
        now = self._clock()
        agent.started = float(started) if isinstance(started, (int, float)) else now
        agent.since, agent.last_heartbeat, agent.adopted = now, None, adopted
        agent.down, agent.activity, agent.task, agent.pipeline = None, None, None, None
        if not adopted:
            agent.pidfile = orjson.dumps({
                "pid": process.pid, "create_time": process.create_time, "marker": process.marker,
                "started": agent.started, "restarts": agent.restarts, "command": self.local.command(name)})
            await self._write_pidfile(name)
        self._refresh_live()
        await self._emit({"type": "agent.started", "source": SOURCE, "agent": name, "severity": "info",
                          "data": {"pid": process.pid, "adopted": adopted, "restarted": restarted,
                                   "room": agent.room}})

    def _pidfile(self, name: str) -> Path:
        return self._dir / f"{name}.pid"

    async def _write_pidfile(self, name: str, again: bool = False) -> None:
        """Write the agent's pending pidfile record, in a thread (it fsyncs). When the disk refuses, the
        record stays pending for the next `check()`: without it the next engine would not adopt the agent
        but start a second one. Only the first failure of a record is logged as a warning."""
        agent = self._agents[name]
        async with self._pidfile_locks[name]:
            record = agent.pidfile
            if record is None:
                return
            try:
                await asyncio.to_thread(atomic_write, self._pidfile(name), record)
            except OSError as exc:
                log.log(logging.DEBUG if again else logging.WARNING, "cannot write %s (%s); trying again at "
                        "each check", self._pidfile(name), exc)
                return
            if agent.pidfile is record:
                agent.pidfile = None

    def _read_pidfile(self, name: str) -> dict[str, Any] | None:
        """The pidfile's record when it is whole and well formed; None otherwise (nothing to adopt)."""
        try:
            record = orjson.loads(self._pidfile(name).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("pid"), int) \
                or not isinstance(record.get("create_time"), float) or not isinstance(record.get("marker"), str):
            return None
        if not isinstance(record.get("restarts"), int):
            record["restarts"] = 0
        return record

    def _refresh_live(self) -> None:
        """Rebuild the `pids()` snapshot from the processes as they are now."""
        self._live = {name: pid for name in self._agents if (pid := self.local.pid(name)) is not None}


def _ts(moment: float | None) -> str | None:
    return None if moment is None else format_ts(moment)
