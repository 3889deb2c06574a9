"""`aios-engine run`: the long-running engine, assembled from its parts.

Data flows one way: API/sensors/agents → intake (validate → durable append → bus) → the matcher loop
(watcher, supervisor heartbeats, matcher) → dispatcher (guards) → scheduler → reactor → outcome events
back into intake. APScheduler drives the periodic work: sensor scans, supervision checks, rules reload,
retention, run-record retention, weekly weight tuning (a hook the score engine fills).
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from engine.actions import KINDS as ACTION_KINDS
from engine.actions import get_action
from engine.agents.supervisor import Supervisor
from engine.bus import Bus
from engine.config import Config, ConfigError, load_config
from engine.admission.dispatch import Dispatcher
from engine.durations import parse_duration
from engine.emitter import EngineEmitter
from engine.events import EventValidator
from engine.intake import Intake
from engine.pipeline.base import PipelineContext
from engine.pipeline.runner import run_pipeline
from engine.playbooks.matcher import Matcher
from engine.playbooks.registry import Registry
from engine.admission.guards import Budget, CircuitBreaker, LoopGuard
from engine.reactor.records import RecordError
from engine.reactor.rollback import RollbackRefused, rollback_run
from engine.reactor.runner import Reactor, ReactorDeps
from engine.reactor.snapshot import SnapshotError
from engine.reactor.watch import EventWatcher
from engine.admission.scheduler import Job, Scheduler
from engine.sensors.build import build_sensors, scan_all
from engine.service.api import build_app
from engine.service.metrics import Metrics
from engine.store.writer import EventWriter

log = logging.getLogger("aios.engine")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_DISPATCHING = 1000  # decisions being handed to the scheduler at once before the matcher loop waits


class StartupError(Exception):
    """The engine cannot start as configured; the message says why and what to change."""


class Engine:
    """One engine on one data directory. `start()`, then `stop()`; `run_forever()` does both with signals."""

    def __init__(self, config: Config, *, data_dir: Path | None = None, rules_dir: Path | None = None,
                 host: str | None = None, port: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.data_dir = Path(data_dir or config.data_dir).resolve()
        self.rules_dir = Path(rules_dir or config.rules_dir).resolve()
        server = config.raw["server"]
        self.host = host or server["host"]
        self.port = server["port"] if port is None else port
        self.token: str | None = server["token"] or os.environ.get("AIOS_TOKEN") or None
        if self.host not in LOOPBACK and not self.token:
            raise StartupError(f"binding to {self.host} needs a token: set server.token in aios.yaml or the "
                               "AIOS_TOKEN environment variable (or bind to 127.0.0.1)")
        self.events_dir = self.data_dir / "events"
        self.stopping = False
        self.started_at = clock()
        self.metrics = Metrics()
        self.bus = Bus()
        store = config.store
        self.writer = EventWriter(self.data_dir, clock=clock, dedup_window_s=parse_duration(store["dedup_window"]),
                                  max_batch_events=store["max_batch_events"], raw_days=store["raw_days"],
                                  delete_days=store["delete_days"], on_commit=self._on_commit)
        self.validator = EventValidator(clock, config.host, parse_duration(store["max_future"]),
                                        store["delete_days"] * 86400.0)
        self.intake = Intake(self.validator, self.writer, self.bus)
        self.emitter = EngineEmitter(self.intake)
        self.watcher = EventWatcher(clock)
        self.registry = Registry(self.rules_dir, emit=self._emit_later, config=config)
        self.matcher = Matcher(self.registry.index, clock)
        self.url = f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{self.port}"
        self.supervisor = Supervisor(config.agents, self.data_dir, self.url, self._emit_raw, clock, token=self.token)
        self.sensors = build_sensors(config.raw["sensors"], self.data_dir, self.supervisor.pids)
        reactor_cfg = config.raw["reactor"]
        self.dispatcher = Dispatcher(
            emitter=self.emitter, clock=clock,
            breaker=CircuitBreaker(clock, reactor_cfg["breaker"]["failures"],
                                   parse_duration(reactor_cfg["breaker"]["window"]),
                                   parse_duration(reactor_cfg["breaker"]["cooldown"])),
            budget=Budget(clock, reactor_cfg["budget"]["max_runs"], parse_duration(reactor_cfg["budget"]["window"])),
            loop=LoopGuard(clock, reactor_cfg["loop"]["max_depth"], reactor_cfg["loop"]["max_self"],
                           parse_duration(reactor_cfg["loop"]["window"])))
        self.reactor = Reactor(ReactorDeps(
            data_dir=self.data_dir, emit=self.dispatcher.emit_run_event, agents=self.supervisor,
            wait_for=self.watcher.wait_for, compact=self._compact, actions={k: get_action(k) for k in ACTION_KINDS},
            playbook=lambda pid: self.registry.playbooks.get(pid), clock=clock, python=sys.executable,
            snapshot_cap_bytes=reactor_cfg["snapshot_cap_mb"] << 20, on_outcome=self._on_outcome))
        self.runs = self.reactor.store  # one view of data/runs for the reactor and the API
        self.scheduler = Scheduler(start=self._start_run, emit=self._on_decision, clock=clock,
                                   new_id=self.validator.new_id, max_concurrent=reactor_cfg["max_concurrent"],
                                   queue_max=reactor_cfg["queue_max"], aging_s=parse_duration(reactor_cfg["aging"]))
        self.dispatcher.attach(self.scheduler)
        self.weekly_hooks: list[Callable[[], Awaitable[Any]]] = []
        self.sensor_errors: dict[str, str] = {}
        self._jobs = AsyncIOScheduler(timezone=timezone.utc)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._matcher_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._pending_emits: list[dict[str, Any]] = []
        self._reloading = asyncio.Lock()

    # -- life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self.writer.open)  # takes the data-dir lock; refuses a second engine
        for line in self.writer.stats.repaired:
            log.warning("store repaired: %s", line)
        self._subscription = self.bus.subscribe("engine", "*", maxsize=10_000)
        self._matcher_task = asyncio.get_running_loop().create_task(self._matcher_loop(), name="matcher")
        outcome = self.registry.reload()
        self.matcher.index = self.registry.index
        await self._flush_later()
        log.info("rules loaded", extra={"loaded": len(outcome.loaded), "rejected": list(outcome.rejected)})
        await self.reactor.recover()
        self._runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:  # an ephemeral port (tests): learn which
            self.port = self._runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{self.port}"
        self.supervisor.url = self.url  # agents are told where to post: the server is listening now
        await self.supervisor.start()
        self._schedule_jobs()
        log.info("engine started", extra={"url": self.url, "data_dir": str(self.data_dir),
                                          "rules_dir": str(self.rules_dir)})

    async def stop(self, grace_s: float = 20.0) -> None:
        """Stop intake (503), let runs finish up to `grace_s`, cancel and roll back the rest, flush, close.

        Agents keep running: the next engine adopts them.
        """
        self.stopping = True
        if self._jobs.running:
            self._jobs.shutdown(wait=False)
        cancelled = await self.scheduler.drain(grace_s)
        if cancelled:
            log.warning("runs cancelled at shutdown", extra={"runs": cancelled})
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._matcher_task is not None:
            self._matcher_task.cancel()
            await asyncio.gather(self._matcher_task, return_exceptions=True)
        await self.supervisor.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.to_thread(self.writer.close)
        log.info("engine stopped")

    def _schedule_jobs(self) -> None:
        jobs = self._jobs
        pipelines = {name: spec for name, spec in self.config.raw["pipelines"].items() if spec["enabled"]}
        for name, spec in pipelines.items():
            jobs.add_job(self._run_pipeline, "interval", args=(name, spec), seconds=parse_duration(spec["every"]),
                         id=f"pipeline:{name}", max_instances=1, coalesce=True)
        if not any(t["task"] == "sensor_scan" for spec in pipelines.values() for t in spec["tasks"]):
            jobs.add_job(self._scan_sensors, "interval", seconds=parse_duration(self.config.raw["sensors"]["interval"]),
                         id="sensors", max_instances=1, coalesce=True)
        jobs.add_job(self._check_agents, "interval", seconds=1.0, id="supervise", max_instances=1, coalesce=True)
        jobs.add_job(self.reload_rules, "interval", seconds=2.0, id="rules", max_instances=1, coalesce=True)
        jobs.add_job(self._retention, "cron", hour=0, minute=10, id="retention", max_instances=1, coalesce=True)
        jobs.add_job(self._weekly, "cron", day_of_week="mon", hour=3, id="weekly_tuning", max_instances=1,
                     coalesce=True)
        jobs.start()

    async def run_forever(self) -> int:
        """Start, wait for SIGTERM/SIGINT (SIGHUP reloads the config), stop cleanly; the exit code."""
        import signal  # noqa: PLC0415 - only the foreground process installs handlers

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        await self.start()
        await stop.wait()
        await self.stop(self.config.raw["reactor"]["shutdown_grace_s"])
        return 0

    # -- the matcher loop -------------------------------------------------------------------------
    async def _matcher_loop(self) -> None:
        dispatching: set[asyncio.Task[Any]] = set()
        async for event in self._subscription:
            try:
                self.watcher.feed(event)
                event_type = event["type"]
                self.metrics.count_ingested(event_type)
                if event_type.startswith("agent."):
                    self.supervisor.note(event)
                match = self.matcher.match(event)
                for decision in match.decisions:
                    self.metrics.matches.labels(decision.playbook_id).inc()
                    task = asyncio.ensure_future(self.dispatcher.dispatch(
                        decision.playbook, event, decision.priority, decision.coalesce_key))
                    dispatching.add(task)
                    task.add_done_callback(dispatching.discard)
                if len(dispatching) >= MAX_DISPATCHING:
                    await asyncio.wait(dispatching, return_when=asyncio.FIRST_COMPLETED)
            except Exception:  # one bad event or playbook must not stop the engine
                log.exception("matcher failed on event %s", event.get("id"))

    async def _start_run(self, job: Job) -> None:
        self.metrics.running.inc()
        started = time.perf_counter()
        try:
            status = await self.reactor.run(job)
            self.metrics.runs.labels(status).inc()
        finally:
            self.metrics.running.dec()
            self.metrics.run_seconds.observe(time.perf_counter() - started)

    async def _on_decision(self, type_: str, data: dict[str, Any], job: Job) -> None:
        self.metrics.decisions.labels(data["priority"], data["outcome"]).inc()
        for priority, depth in self.scheduler.depth_by_priority().items():
            self.metrics.queue_depth.labels(priority).set(depth)
        await self.dispatcher.emit_decision(type_, data, job)

    def _on_outcome(self, job: Job, status: str) -> None:
        self.dispatcher.on_outcome(job, status)

    def _on_commit(self, events: int, seconds: float) -> None:
        self.metrics.fsync_seconds.observe(seconds)

    # -- emitting from synchronous callbacks ------------------------------------------------------
    def _emit_later(self, event: dict[str, Any]) -> None:
        """For callbacks that cannot await (the registry): queued, then stored by `_flush_later`."""
        self._pending_emits.append(event)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._spawn(self._flush_later())

    async def _flush_later(self) -> None:
        pending, self._pending_emits = self._pending_emits, []
        for event in pending:
            await self._emit_raw(event)

    async def _emit_raw(self, event: dict[str, Any]) -> dict[str, Any]:
        return await self.intake.submit_one(event)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- periodic jobs ----------------------------------------------------------------------------
    async def _scan_sensors(self) -> None:
        result = await asyncio.to_thread(scan_all, self.sensors, self.clock())
        self.sensor_errors = result.errors
        for event in result.events:
            await self._emit_raw(event)

    async def _run_pipeline(self, name: str, spec: dict[str, Any]) -> None:
        ctx = PipelineContext(name, self._emit_raw, self.sensors, self.watcher.recent, self.clock, asyncio.sleep,
                              self.clock())
        await run_pipeline(name, spec, ctx)

    async def _check_agents(self) -> None:
        await self.supervisor.check(self.clock())

    async def reload_rules(self) -> dict[str, Any]:
        async with self._reloading:  # the 2 s poll and /api/reload never lint at the same time
            outcome = await asyncio.to_thread(self.registry.reload)  # lint + compile: off the event loop
            if outcome.changed:
                self.matcher.index = self.registry.index
        await self._flush_later()
        return {"loaded": list(outcome.loaded), "rejected": list(outcome.rejected), "removed": list(outcome.removed)}

    async def _compact(self) -> dict[str, Any]:
        report = await asyncio.to_thread(self.writer.compact, datetime.now(timezone.utc))
        return report.as_dict()

    async def _retention(self) -> None:
        await self._compact()
        keep = self.config.raw["reactor"]["keep_runs_days"]
        await asyncio.to_thread(self.runs.prune, datetime.now(timezone.utc), keep)

    async def _weekly(self) -> None:
        for hook in self.weekly_hooks:
            await hook()

    # -- what the API asks ------------------------------------------------------------------------
    async def reload(self) -> dict[str, Any]:
        """SIGHUP and `POST /api/reload`: re-read aios.yaml (kept as is when invalid) and the rules."""
        result: dict[str, Any] = {"config": "unchanged"}
        if self.config.source:
            try:
                fresh = load_config(self.config.source)
                # Rules are linted against the new agents at once; sections the running parts were built
                # from (server, store, agents, sensors, reactor, pipelines) take effect at the next start.
                pending = sorted(key for key in fresh.raw if key not in ("rules_dir",)
                                 and fresh.raw[key] != self.config.raw[key])
                self.config = fresh
                self.registry.config = fresh
                result["config"] = "reloaded"
                result["restart_needed_for"] = pending
            except ConfigError as exc:
                result["config"] = "rejected"
                result["errors"] = [str(d) for d in exc.diagnostics]
                await self.emitter.emit("config.rejected", {"file": self.config.source,
                                                             "errors": result["errors"]}, severity="error",
                                        source="engine.config")
        result["rules"] = await self.reload_rules()
        return result

    async def rollback(self, run_id: str, force: bool) -> tuple[int, dict[str, Any]]:
        try:
            paths = await asyncio.to_thread(rollback_run, self.data_dir, run_id, force, by="api")
        except KeyError:
            return 404, {"error": f"no run {run_id}"}
        except RollbackRefused as exc:
            return 409, {"error": str(exc), "changed": exc.changed}
        except (RecordError, SnapshotError) as exc:  # damaged files: say which, don't answer 500
            return 422, {"error": str(exc)}
        return 200, {"run_id": run_id, "restored": paths}

    def health(self) -> dict[str, Any]:
        stats = self.writer.stats
        writable = stats.last_error is None and _has_space(self.events_dir)
        loop_ok = self._matcher_task is not None and not self._matcher_task.done()
        rules = self.registry.health()
        components = {
            "store": {"state": "ok" if writable else "failing", "last_error": stats.last_error,
                      "commits": stats.commits, "events": stats.events_written},
            "scheduler": {"state": "ok" if loop_ok else "stopped", "queued": self.scheduler.depth,
                          "running": self.scheduler.running},
            "rules": rules,
            "sensors": {"state": ("failing" if self.sensor_errors else "ok") if self._jobs.running else "stopped",
                        "sensors": [s.name for s in self.sensors], "errors": self.sensor_errors},
            "agents": {"state": "ok", "agents": {a["name"]: a["state"] for a in self.supervisor.view()}},
        }
        ok = writable and loop_ok and not self.stopping
        return {"status": "ok" if ok else "failing", "stopping": self.stopping,
                "uptime_s": round(self.clock() - self.started_at, 1), "components": components}

    def agents_view(self) -> list[dict[str, Any]]:
        return self.supervisor.view()

    def playbooks_view(self) -> dict[str, Any]:
        playbooks = [{"id": p.id, "on": list(p.on), "file": p.file, "priority": p.priority,
                      "confidence": p.confidence, "exclusive": p.exclusive, "enabled": p.enabled,
                      "labels": p.labels, "owner": p.owner, "description": p.description,
                      "circuit": self.dispatcher.breaker.state(p.id)}
                     for p in sorted(self.registry.playbooks.values(), key=lambda p: p.id)]
        return {"playbooks": playbooks, "health": self.registry.health()}

    def render_metrics(self) -> tuple[bytes, str]:
        self.metrics.agents_up.set(sum(1 for a in self.supervisor.view() if a.get("pid")))
        return self.metrics.render()


def _has_space(path: Path, minimum: int = 1 << 20) -> bool:
    try:
        return shutil.disk_usage(path).free >= minimum
    except OSError:
        return False
