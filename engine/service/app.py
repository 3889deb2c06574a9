"""`aios-engine run`: the long-running engine, assembled from its parts.

Data flows one way: API/sensors/agents → intake (validate → durable append → bus) → the matcher loop
(watcher, supervisor heartbeats, matcher) → dispatcher (guards) → scheduler → reactor → outcome events
back into intake. APScheduler drives the periodic work: sensor scans, supervision checks, rules reload,
retention, run-record retention, weekly weight tuning (a hook the score engine fills).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiohttp import web
from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from engine.actions import ACTIONS
from engine.admission.announce import AsideLimiter
from engine.admission.dispatch import Dispatcher
from engine.admission.guards import guards_from_config
from engine.admission.scheduler import Job, Scheduler
from engine.agents.supervisor import Supervisor
from engine.background import Background
from engine.bus import Bus
from engine.config import Config, ConfigError, load_config, server_problems
from engine.controls.gate import Controls
from engine.controls.inhibit import Inhibitions
from engine.controls.maintenance import windows_from_config
from engine.controls.manual import ManualActions
from engine.deciding import Decider
from engine.durations import parse_duration
from engine.emitter import EngineEmitter
from engine.events import EventValidator
from engine.intake import Intake
from engine.live.hub import Hub
from engine.live.ws import feed, tick
from engine.looplag import LoopLag
from engine.notify.base import NotifyError
from engine.notify.notifier import Notifier
from engine.pipeline.base import PipelineContext
from engine.pipeline.runner import run_pipeline
from engine.playbooks.matcher import Decision, Matcher
from engine.playbooks.registry import Registry
from engine.problems.book import Book, Problem
from engine.problems.files import ProblemFiles
from engine.problems.kinds import KindRegistry
from engine.reactor.controls import RunControls
from engine.reactor.records import RecordError
from engine.reactor.rollback import RollbackRefused, rollback_run
from engine.reactor.runner import Reactor, ReactorDeps
from engine.reactor.snapshot import SnapshotError
from engine.reactor.watch import EventWatcher
from engine.score.keeper import ScoreKeeper
from engine.score.weights import same
from engine.sensors.build import build_sensors, scan_all
from engine.service.api import build_app
from engine.service.edge import make_runner
from engine.service.metrics import Metrics
from engine.store.reader import read_events
from engine.store.writer import EventWriter

log = logging.getLogger("aios.engine")
story = logging.getLogger("aios.events")
CATCH_UP_S = 120.0  # events stored this long before the last problems tick are folded again at start
WRITE_BATCH = 200  # problem files written per tick at most
STALL_S = 10.0  # events waiting this long with nothing decided (or runs with free slots not started): stalled
LAG_LIMIT_S = 1.0  # an event loop this late is named in health
# Events worth a line of their own in the engine's log, so `journalctl` tells why something was or was not fixed.
STORY_TYPES = {"agent.down": logging.WARNING, "agent.started": logging.INFO, "playbook.loaded": logging.INFO,
               "playbook.rejected": logging.WARNING, "config.rejected": logging.WARNING,
               "resource.disk_full": logging.WARNING}


# control events that take automation away (the rest give it back or only record)
WARN_CONTROLS = frozenset({"control.paused", "control.silence_added", "control.playbook_disabled"})


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
        env_token = os.environ.get("AIOS_TOKEN") or None  # set but empty means unset, as shells have it
        problems = server_problems({**config.raw, "server": {**server, "host": self.host}}, env_token)
        if problems:
            raise StartupError("; ".join(message for _, message in problems))
        self.token: str | None = server["token"] or env_token
        self.events_dir = self.data_dir / "events"
        self.stopping = False
        self.started_at = clock()
        self.metrics = Metrics()
        self.background = Background(on_failure=lambda name: self.metrics.background_failures.labels(name).inc())
        self.lag = LoopLag()
        self.bus = Bus()
        self.max_undecided = server["max_undecided"]
        self._overloaded = False
        store = config.store
        self.writer = EventWriter(self.data_dir, clock=clock, dedup_window_s=parse_duration(store["dedup_window"]),
                                  max_batch_events=store["max_batch_events"], raw_days=store["raw_days"],
                                  delete_days=store["delete_days"], reserve_mb=store["reserve_mb"],
                                  on_commit=self._on_commit)
        self.validator = EventValidator(clock, config.host, parse_duration(store["max_future"]),
                                        delete_days=store["delete_days"])
        self.intake = Intake(self.validator, self.writer, self.bus)
        self.emitter = EngineEmitter(self.intake)
        self.watcher = EventWatcher(clock)
        self.registry = Registry(self.rules_dir, emit=self._emit_later, config=config)
        controls_cfg = config.raw["controls"]
        self.controls = Controls(self.data_dir, windows_from_config(config.raw["maintenance"]),
                                 emit=self._emit_control, new_id=self.validator.new_id, clock=clock,
                                 max_silences=controls_cfg["max_silences"],
                                 default_silence_s=parse_duration(controls_cfg["default_silence"]))
        self.inhibitions = Inhibitions(is_open=lambda pid: getattr(self.book.get(pid), "status", None) == "open")
        self.matcher = Matcher(self.registry.index, clock, disabled=self.controls.disabled,
                               hold=self.controls.holds(self.inhibitions))
        problems_cfg = config.raw["problems"]
        self.kinds = KindRegistry(self.rules_dir)
        self.book = Book(self.kinds.kinds, emit=self._emit_problem, new_id=self.validator.new_id, clock=clock,
                         resync_s=parse_duration(problems_cfg["resync"]), redecide=problems_cfg["redecide"],
                         max_open=problems_cfg["max_open"], on_healed=self.metrics.heal_seconds.observe)
        self.problem_files = ProblemFiles(self.data_dir)
        try:
            self.notifier = Notifier.from_config(config.raw["notifications"], emit=self._emit_notification,
                                                 clock=clock, data_dir=self.data_dir, problem=self._problem_brief,
                                                 on_outcome=lambda t, o: self.metrics.notifications.labels(t, o).inc())
        except NotifyError as exc:
            raise StartupError(str(exc)) from None
        self.score = ScoreKeeper.from_config(config.raw, self.data_dir, clock)
        self._live_health: tuple[float, str] = (float("-inf"), "ok")
        self.hub = Hub(state=self.live_state, clock=time.monotonic, epoch=self.validator.new_id())
        self._unwritten: dict[str, dict[str, Any]] = {}
        self._writing = asyncio.Lock()
        self.url = f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{self.port}"
        logs = config.raw["agent_logs"]
        self.supervisor = Supervisor(config.agents, self.data_dir, self.url, self._emit_raw, clock, token=self.token,
                                     log_max_bytes=logs["max_mb"] << 20, log_keep=logs["keep"])
        self.sensors = build_sensors(config.raw["sensors"], self.data_dir, self.supervisor.pids)
        reactor_cfg = config.raw["reactor"]
        declared = frozenset(config.agents)
        loop, breaker, budget = guards_from_config(reactor_cfg, clock)
        self.dispatcher = Dispatcher(emitter=self.emitter, declared=lambda: declared, breaker=breaker, budget=budget,
                                     loop=loop, limiter=AsideLimiter(clock), opens_problem=self.book.opened_by)
        self.manual = ManualActions(dispatcher=self.dispatcher, controls=self.controls, declared=lambda: declared,
                                    playbooks=self.registry.playbook,
                                    submit=lambda raw: self.intake.submit_one(raw, external=True),
                                    events_dir=self.events_dir, agents=self.supervisor)
        self.reactor = Reactor(ReactorDeps(
            data_dir=self.data_dir, emit=self.dispatcher.emit_run_event, agents=self.supervisor,
            wait_for=self.watcher.wait_for, compact=self.compact, actions=ACTIONS,
            playbook=self.registry.playbook, clock=clock, python=sys.executable,
            snapshot_cap_bytes=reactor_cfg["snapshot_cap_mb"] << 20, on_outcome=self.dispatcher.on_outcome))
        self.runs = self.reactor.store  # one view of data/runs for the reactor and the API
        self.scheduler = Scheduler(start=self._start_run, emit=self._on_decision, clock=clock,
                                   new_id=self.validator.new_id, max_concurrent=reactor_cfg["max_concurrent"],
                                   queue_max=reactor_cfg["queue_max"], aging_s=parse_duration(reactor_cfg["aging"]),
                                   on_dropped=self._on_dropped)
        self.dispatcher.attach(self.scheduler)
        self.reactor.deps.park = self.scheduler.parked  # a run waiting for a person holds no slot
        self.run_controls = RunControls(self.reactor, self.scheduler, self.dispatcher,
                                        self.registry.playbook, self.dispatcher.emit_run_event)
        self.decider = Decider(self.bus.subscribe("engine", "*", policy="lossless"), self.matcher, self._dispatch,
                               (self.watcher.feed, self._observe, self.book.fold, self.inhibitions.observe,
                                self._score_event),
                               announce=self.dispatcher.announce_set_aside,
                               opens_problem=lambda event: bool(self.book.kinds.opening(event)))
        self.weekly_hooks: list[Callable[[], Awaitable[Any]]] = [self._tune_weekly]
        self.sensor_errors: dict[str, str] = {}
        self._jobs = AsyncIOScheduler(timezone=timezone.utc)
        self._decider_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._pending_emits: list[dict[str, Any]] = []
        self._reloading = asyncio.Lock()

    # -- life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """In order: the store; the rules; crash recovery that only kills and rolls back; the decision loop;
        the server; the agents (adopted or started); the periodic jobs; and only then the runs that were
        waiting for a retry, through the guards and the scheduler like any decision."""
        await asyncio.to_thread(self.writer.open)  # takes the data-dir lock; refuses a second engine
        for line in self.writer.stats.repaired:
            log.warning("store repaired: %s", line)
        await self._load_problems()
        rebuilt = await asyncio.to_thread(self.score.rebuild, self.events_dir)
        log.info("scores rebuilt", extra={"events": rebuilt, "agents": len(self.score.agents())})
        self._decider_task = self.background.spawn(self.decider.run(), "decider")
        self.background.spawn(self.lag.run(), "loop_lag")
        self.background.spawn(feed(self.hub, self.bus.subscribe("live", "*", maxsize=10_000)), "live_feed")
        self.background.spawn(tick(self.hub), "live_tick")
        await self.notifier.load()
        self.background.spawn(self.notifier.run(), "notifier")
        outcome = await asyncio.to_thread(self.registry.reload)
        self._use_rules()
        await self._flush_later()
        log.info("rules loaded", extra={"loaded": len(outcome.loaded), "rejected": list(outcome.rejected)})
        resumable = await self.reactor.recover()
        self._runner = make_runner(build_app(self), self.config)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:  # an ephemeral port (tests): learn which
            self.port = self._runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{self.port}"
        self.supervisor.url = self.url  # agents are told where to post: the server is listening now
        await self.supervisor.start({name: {"by": hold.by, "why": hold.reason}
                                     for name, hold in self.controls.state.stopped.items()})
        self._schedule_jobs()
        # Everything built so far lives as long as the engine: keep it out of the collector's full passes,
        # which otherwise walk it all and pause the loop ~100 ms at a time under load (bench/service.py).
        gc.freeze()
        log.info("engine started", extra={"url": self.url, "data_dir": str(self.data_dir),
                                          "rules_dir": str(self.rules_dir), "resuming": len(resumable)})
        for job in resumable:
            try:
                await self._admit_recovered(job)
            except Exception:  # one damaged run must not stop the others or the engine
                log.exception("recovered run %s could not be offered again", job.run_id)

    async def _load_problems(self) -> None:
        """Problems from data/problems, then the stored events they may have missed (the engine died between
        storing an event and writing the problem it changed): folded again, those already in a timeline skipped."""
        await asyncio.to_thread(self.kinds.reload)
        self.book.set_kinds(self.kinds.kinds)
        raw, newest = await asyncio.to_thread(self.problem_files.load)
        loaded = []
        for item in raw:
            try:
                loaded.append(Problem.from_dict(item))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("problem file skipped", extra={"problem": item.get("id"), "error": repr(exc)})
        since = datetime.fromtimestamp((newest or self.clock()) - CATCH_UP_S, timezone.utc)
        types = self.book.folded_types()
        missed = await asyncio.to_thread(lambda: list(read_events(self.events_dir, since=since, types=types)))
        self.book.restarted(loaded, missed)
        self.inhibitions.seed((p.id, p.kind, p.subject) for p in self.book.problems(open_only=True))
        log.info("problems loaded", extra={"open": len(self.book.open), "resolved": len(self.book.resolved),
                                           "caught_up": len(missed)})

    async def _admit_recovered(self, job: Job) -> None:
        """A run that was waiting for a retry when the engine died: guards and scheduler decide again."""
        outcome = await self.dispatcher.dispatch_job(job)
        log.info("recovered run offered again", extra={"run_id": job.run_id, "playbook": job.playbook.id,
                                                       "outcome": outcome})
        if outcome not in ("queued", "waiting"):
            await self.reactor.abandon(job, f"not admitted again after the restart ({outcome})")

    def _on_dropped(self, job: Job) -> None:
        if "resume" in job.extra:  # a displaced recovered run must still be closed and rolled back
            self.background.spawn(self.reactor.abandon(job, "displaced from the queue after the restart"),
                                  "abandon_run")

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
        await self.background.close()
        await self.notifier.close()
        await self._write_problems()
        self.hub.close()
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
        jobs.add_job(self.writer.poll_space, "interval", seconds=1.0, id="store_space", max_instances=1,
                     coalesce=True)  # outside intake resumes by itself once the disk has room again
        jobs.add_job(self.reload_rules, "interval", seconds=2.0, id="rules", max_instances=1, coalesce=True)
        jobs.add_job(self._problems_tick, "interval", seconds=1.0, id="problems", max_instances=1, coalesce=True)
        jobs.add_job(self.controls.tick, "interval", seconds=1.0, id="controls", max_instances=1, coalesce=True)
        jobs.add_job(self._flush_labels, "interval", seconds=10.0, id="score_labels", max_instances=1, coalesce=True)
        # Daily and weekly jobs run however late they are (misfire_grace_time=None): a stall at 00:10 must
        # not skip a day of retention. APScheduler's default grace of 1 s would.
        jobs.add_job(self._retention, "cron", hour=0, minute=10, id="retention", max_instances=1, coalesce=True,
                     misfire_grace_time=None)
        jobs.add_job(self._weekly, "cron", day_of_week="mon", hour=3, id="weekly_tuning", max_instances=1,
                     coalesce=True, misfire_grace_time=None)
        jobs.add_listener(self._job_failed, EVENT_JOB_ERROR)
        jobs.start()

    def _job_failed(self, event: JobExecutionEvent) -> None:
        """A periodic job raised: counted like any background task (APScheduler has logged the traceback)."""
        self.metrics.background_failures.labels(f"job:{event.job_id}").inc()

    async def run_forever(self) -> int:
        """Start, wait for SIGTERM/SIGINT (SIGHUP reloads the config), stop cleanly; the exit code."""
        import signal  # noqa: PLC0415 - only the foreground process installs handlers

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.background.spawn(self.reload(), "reload"))
        await self.start()
        await stop.wait()
        await self.stop(self.config.raw["reactor"]["shutdown_grace_s"])
        return 0

    # -- the decision loop's hooks ----------------------------------------------------------------
    def _score_event(self, event: dict[str, Any]) -> None:
        for type_, _agent, data, severity in self.score.observe(event):  # the cause names the agent
            self.background.spawn(self.emitter.emit(type_, data, event, severity, source="engine.score"),
                                  "score_event")
    def _observe(self, event: dict[str, Any]) -> None:
        event_type = event["type"]
        self.metrics.count_ingested(event_type)
        self.notifier.observe(event)
        if event_type.startswith("agent."):
            for answer in self.supervisor.note(event):  # agent.recovered: a silent agent heard from again
                self._emit_later(answer)
        level = STORY_TYPES.get(event_type)
        if level is not None:
            story.log(level, event_type, extra={"event": event.get("id"), "agent": event.get("agent"),
                                                "data": event.get("data")})

    async def _dispatch(self, decision: Decision, event: dict[str, Any], redecision: str | None) -> str:
        self.metrics.matches.labels(decision.playbook_id).inc()
        return await self.dispatcher.dispatch(decision.playbook, event, decision.priority, decision.coalesce_key,
                                              redecision=redecision)

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
        story.info("decision %s", data["outcome"], extra={
            "playbook": data["playbook"], "run_id": data["run_id"], "cause": data["cause"],
            "agent": job.event.get("agent"), "priority": data["priority"], "outcome": data["outcome"],
            "reason": data.get("reason"), "queue_depth": data["queue_depth"]})
        await self.dispatcher.emit_decision(type_, data, job)

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
        self.background.spawn(self._flush_later(), "flush_registry_events")

    async def _flush_later(self) -> None:
        pending, self._pending_emits = self._pending_emits, []
        for event in pending:
            await self._emit_raw(event)

    async def _emit_raw(self, event: dict[str, Any]) -> dict[str, Any]:
        return await self.intake.submit_one(event)

    async def _emit_control(self, type_: str, data: dict[str, Any], agent: str | None) -> dict[str, Any]:
        """A control's audit event (engine.controls), logged too: who paused, silenced, reset what, and why."""
        stored = await self.emitter.emit(type_, data, {"agent": agent} if agent else None,
                                         "warning" if type_ in WARN_CONTROLS else "info", source="engine.controls")
        story.warning(type_, extra={"event": stored["id"], "agent": agent, "data": data})  # once it is stored
        return stored

    async def _emit_notification(self, type_: str, data: dict[str, Any], cause: dict[str, Any],
                                 severity: str) -> dict[str, Any]:
        return await self.emitter.emit(type_, data, cause, severity, source="engine.notify")

    def _problem_brief(self, problem_id: str) -> dict[str, Any] | None:
        """What notification templates may look up about a problem: its summary and the event behind it."""
        found = self.book.get(problem_id)
        return None if found is None else {**found.summary(), "cause": found.cause}

    def _emit_problem(self, type_: str, data: dict[str, Any], cause: dict[str, Any], severity: str) -> None:
        """The book is synchronous (it runs in the decision loop): its events are stored by a task."""
        self.background.spawn(self.emitter.emit(type_, data, cause, severity, source="engine.problems"),
                              "problem_event")

    # -- periodic jobs ----------------------------------------------------------------------------
    async def _problems_tick(self) -> None:
        """Escalations and re-decisions that are due, then the problems that changed written to disk."""
        for due in self.book.due():
            log.info("problem decided again", extra={"problem": due.problem, "why": due.why,
                                                     "cause": due.event.get("id")})
            self.decider.redecide(due.event, due.why, due.exclude)
        await self._write_problems()

    async def _write_problems(self) -> None:
        """The problems that changed, at most WRITE_BATCH a tick (a mass escalation spreads over ticks):
        copied on the loop, encoded and written in a thread, one writer at a time (the shutdown's write
        must not race a tick's on the same temp file); then the catch-up mark."""
        async with self._writing:
            for problem in self.book.dirty(WRITE_BATCH):
                self._unwritten[problem.id] = problem.as_dict()
            pending, self._unwritten = self._unwritten, {}
            failed = await asyncio.to_thread(self.problem_files.write, pending)
            for problem_id in failed:  # a full disk: kept, written again at the next tick (newer state wins)
                self._unwritten.setdefault(problem_id, pending[problem_id])

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
            kinds_changed = await asyncio.to_thread(self.kinds.reload)
            if kinds_changed:
                self.book.set_kinds(self.kinds.kinds)
            if outcome.changed:
                self._use_rules()
            if outcome.changed or kinds_changed:
                self.book.rules_changed()
                log.info("rules reloaded", extra={"loaded": list(outcome.loaded), "rejected": list(outcome.rejected),
                                                  "removed": list(outcome.removed)})
        await self._flush_later()
        return {"loaded": list(outcome.loaded), "rejected": list(outcome.rejected), "removed": list(outcome.removed)}

    def _use_rules(self) -> None:
        """The registry's playbooks, as loaded now, for the matcher and the inhibitions it asks."""
        self.matcher.index = self.registry.index
        self.inhibitions.set_playbooks(self.registry.playbooks)

    async def compact(self, dry_run: bool = False) -> dict[str, Any]:
        """Retention now (the `compact` action, `POST /api/compact`, the daily job); `dry_run` only reports."""
        report = await asyncio.to_thread(self.writer.compact, datetime.now(timezone.utc), dry_run=dry_run)
        return report.as_dict()

    async def _retention(self) -> None:
        await self.compact()
        keep = self.config.raw["reactor"]["keep_runs_days"]
        await asyncio.to_thread(self.runs.prune, datetime.now(timezone.utc), keep)
        await asyncio.to_thread(self.problem_files.prune, datetime.now(timezone.utc) - timedelta(days=keep))

    async def _weekly(self) -> None:
        for hook in self.weekly_hooks:
            await hook()

    async def _tune_weekly(self) -> None:
        report = await self.tune(dry_run=False, revert=False)
        changed = [a["agent"] for a in report["agents"] if not same(a["after"], a["before"])]
        log.info("weights tuned", extra={"version": report["version"], "labels": report["labels"], "changed": changed})

    async def _flush_labels(self) -> None:
        due = self.score.due_labels()
        if due:
            await asyncio.to_thread(self.score.write_labels, due)

    # -- what the API asks ------------------------------------------------------------------------
    async def reload(self) -> dict[str, Any]:
        """SIGHUP and `POST /api/reload`: re-read aios.yaml (kept as is when invalid) and the rules."""
        result: dict[str, Any] = {"config": "unchanged"}
        if self.config.source:
            try:
                fresh = load_config(self.config.source)
                # Rules are linted against the new agents at once; sections the running parts were built
                # from (server, store, agents, sensors, reactor, pipelines) take effect at the next start.
                pending = sorted(key for key in fresh.raw if key not in ("rules_dir", "notifications")
                                 and fresh.raw[key] != self.config.raw[key])
                self.notifier.reconfigure(fresh.raw["notifications"])  # NotifyError: below, all kept as it was
                self.config = fresh
                self.registry.config = fresh
                result["config"] = "reloaded"
                result["restart_needed_for"] = pending
            except (ConfigError, NotifyError) as exc:  # a target that cannot be built: the config is refused
                result["config"] = "rejected"
                result["errors"] = [str(d) for d in exc.diagnostics] if isinstance(exc, ConfigError) else [str(exc)]
                await self.emitter.emit("config.rejected", {"file": self.config.source,
                                                             "errors": result["errors"]}, severity="error",
                                        source="engine.config")
        result["rules"] = await self.reload_rules()
        log.info("reload", extra={"config": result["config"], "restart_needed_for": result.get("restart_needed_for"),
                                  "errors": result.get("errors")})
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

    def overloaded(self) -> tuple[str, int] | None:
        """Why outside events are refused right now (503), with a Retry-After in seconds; None: accepted.
        The edge is the only place that pushes back: the engine's own events are never refused for load."""
        undecided = self.decider.undecided
        if undecided <= self.max_undecided:
            if self._overloaded:
                self._overloaded = False
                log.info("overload over", extra={"undecided": undecided})
            return None
        if not self._overloaded:
            self._overloaded = True
            log.warning("overloaded: refusing outside events", extra={"undecided": undecided,
                                                                      "max_undecided": self.max_undecided})
        self.metrics.refused.labels("overload").inc()
        return (f"overloaded: {undecided} events wait to be decided (server.max_undecided is "
                f"{self.max_undecided}); retry later", 2)

    def _deciding_health(self) -> dict[str, Any]:
        """The decision loop and the scheduler: stalled when work waits and nothing moves."""
        now = time.monotonic()
        problems = []
        task = self._decider_task
        if task is None or task.done():
            problems.append("the decision loop is not running")
        stalled = self.decider.stalled_for(now)
        if stalled > STALL_S:
            problems.append(f"the matcher decided nothing for {stalled:.0f}s while {self.decider.undecided} "
                            "events wait")
        waiting = self.scheduler.stalled_for(self.clock())
        if waiting > STALL_S:
            problems.append(f"the scheduler started nothing for {waiting:.0f}s with free slots and "
                            f"{self.scheduler.depth} runs queued")
        notes = []
        if self._overloaded:
            notes.append(f"overloaded: {self.decider.undecided} events wait to be decided "
                         f"(limit {self.max_undecided}); outside events get 503")
        if self.lag.worst > LAG_LIMIT_S:
            notes.append(f"the event loop ran {self.lag.worst:.2f}s late in the last minute")
        state = "stalled" if problems else ("degraded" if notes else "ok")
        return {"state": state, "problems": problems, "notes": notes, "undecided": self.decider.undecided,
                "dispatching": self.decider.in_flight, "queued": self.scheduler.depth,
                "running": self.scheduler.running, "event_loop_lag_s": round(self.lag.worst, 4)}

    def health(self) -> dict[str, Any]:
        store = self.writer.health()
        writable = store["state"] != "failing"
        deciding = self._deciding_health()
        rules = self.registry.health()
        components = {
            "store": store,
            "scheduler": deciding,
            "rules": rules,
            "sensors": {"state": ("failing" if self.sensor_errors else "ok") if self._jobs.running else "stopped",
                        "sensors": [s.name for s in self.sensors], "errors": self.sensor_errors},
            "agents": self._agents_health(),
            "problems": self._problems_health(),
        }
        ok = writable and deciding["state"] != "stalled" and not self.stopping
        degraded = any(c.get("state") not in ("ok", "stopped") for c in components.values())
        status = "failing" if not ok else ("degraded" if degraded else "ok")
        return {"status": status, "stopping": self.stopping,
                "uptime_s": round(self.clock() - self.started_at, 1), "components": components}

    def _agents_health(self) -> dict[str, Any]:
        """Degraded while a declared agent is down, naming each (the engine still decides; status stays 200)."""
        view = self.supervisor.view()
        down = sorted(a["name"] for a in view if a["declared"] and a["state"] == "down")
        return {"state": "degraded" if down else "ok", "agents": {a["name"]: a["state"] for a in view},
                "problems": [f"agent {name} is down" for name in down]}

    def _problems_health(self) -> dict[str, Any]:
        """Degraded while an escalated problem is open: a person has to look."""
        open_ = self.book.problems(open_only=True)
        escalated = [p for p in open_ if p.escalated_at is not None]
        return {"state": "degraded" if escalated else "ok", "open": len(open_),
                "problems": [f"{p.kind} {p.key} escalated ({p.id}): {'; '.join(sorted(p.reasons)) or 'unhealed'}"
                             for p in escalated[:20]],
                "kinds": self.kinds.health()}

    def problems_view(self, open_only: bool) -> list[dict[str, Any]]:
        return [p.summary() for p in self.book.problems(open_only)]

    def problem(self, problem_id: str) -> dict[str, Any] | None:
        found = self.book.get(problem_id)
        return found.as_dict() if found is not None else None

    def live_state(self) -> dict[str, Any]:
        """The document `/ws` clients hold (docs/live.md): what the dashboard and the office draw."""
        scores = self.score.scorer.summary()
        agents = {}
        for row in self.supervisor.view():
            score = scores.pop(row["name"], None) or {}
            agents[row["name"]] = {**row, "score": score.get("score"), "components": score.get("components"),
                                   "degraded": bool(score.get("degraded"))}
        for name, score in scores.items():  # seen only in events
            agents[name] = {"name": name, "declared": False, **score}
        now = time.monotonic()
        if now - self._live_health[0] >= 1.0:  # a round per event: health is worth one look a second
            self._live_health = (now, self.health()["status"])
        runs = {job.run_id: {"playbook": job.playbook.id, "agent": job.event.get("agent"), "priority": job.priority,
                             "cause": job.event.get("type")} for job in self.scheduler.running_jobs()}
        for waiting in self.run_controls.approvals():  # the office draws a "waiting for approval" bubble
            runs.setdefault(waiting["run_id"], {}).update(waiting="approval", message=waiting["message"],
                                                          expires_at=waiting["expires_at"])
        return {"engine": {"status": self._live_health[1], "stopping": self.stopping},
                "agents": agents,
                "problems": {p.id: p.summary() for p in self.book.problems(open_only=True)},
                "queue": {"depth": self.scheduler.depth, "by_priority": self.scheduler.depth_by_priority(),
                          "running": list(runs)},
                "runs": runs,
                "controls": self.controls.live(),
                "playbooks": {p["id"]: {"enabled": p["enabled"], "circuit": p["circuit"], "priority": p["priority"]}
                              for p in self.playbooks_view()["playbooks"]}}

    def score_view(self, agent: str | None) -> list[dict[str, Any]]:
        return self.score.scorer.view(agent)

    async def feedback(self, body: Any) -> dict[str, Any]:
        """An operator's label (FeedbackError for bad input, before anything is stored)."""
        return await asyncio.to_thread(self.score.feedback, self.events_dir, body)

    async def tune(self, dry_run: bool, revert: bool) -> dict[str, Any]:
        """`tune` and the weekly job: agents whose weights are being fitted show `agent.learning` meanwhile."""
        agents = self.score.agents()
        learning = [] if dry_run or revert else await asyncio.to_thread(self.score.labelled_agents)
        for agent in learning:
            await self.emitter.emit("agent.learning", {"active": True, "topic": "weight tuning"}, {"agent": agent},
                                    source="engine.score")
        try:
            return await asyncio.to_thread(self.score.tune, agents, dry_run=dry_run, revert=revert)
        finally:
            for agent in learning:
                await self.emitter.emit("agent.learning", {"active": False, "topic": "weight tuning"},
                                        {"agent": agent}, source="engine.score")

    def agents_view(self) -> list[dict[str, Any]]:
        return self.supervisor.view()

    def playbooks_view(self) -> dict[str, Any]:
        playbooks = [{"id": p.id, "on": list(p.on), "file": p.file, "priority": p.priority,
                      "confidence": p.confidence, "exclusive": p.exclusive, "enabled": p.enabled,
                      "labels": p.labels, "owner": p.owner, "description": p.description,
                      "circuit": self.dispatcher.breaker.states(p.id) or "closed"}
                     for p in sorted(self.registry.playbooks.values(), key=lambda p: p.id)]
        return {"playbooks": playbooks, "health": self.registry.health()}

    def render_metrics(self) -> tuple[bytes, str]:
        m = self.metrics
        m.agents_up.set(sum(1 for a in self.supervisor.view() if a.get("pid")))
        for priority, depth in self.scheduler.depth_by_priority().items():
            m.queue_depth.labels(priority).set(depth)
        for name, depth in self.bus.depth().items():
            m.bus_depth.labels(name).set(depth)
        m.undecided.set(self.decider.undecided)
        m.dispatching.set(self.decider.in_flight)
        m.decision_errors.set(self.decider.errors)
        m.approval_timer_failures.set(self.reactor.room.timer_failures)
        m.loop_lag.set(self.lag.last)
        m.loop_lag_worst.set(self.lag.worst)
        guards = self.dispatcher
        for capped in (guards.breaker.map, guards.budget.map, guards.loop.map, guards.loop.emitted_by,
                       *self.book.capped_maps(), *self.score.labeler.capped_maps()):
            m.evictions.labels(capped.name).set(capped.evicted)
        for name, evicted in self.matcher.evictions.items():
            m.evictions.labels(f"matcher_{name}").set(evicted)
        m.evictions.labels("metric_labels").set(m.label_overflow)
        m.evictions.labels("problems").set(self.book.evicted)
        m.evictions.labels("score_agents").set(self.score.scorer.evicted)
        m.evictions.labels("score_label_per_agent").set(self.score.labeler.dropped)
        m.evictions.labels("set_aside_limiter").set(guards.limiter.map.evicted)
        m.set_asides_held.set(guards.limiter.held)
        m.problems(self.book)
        live = self.hub.stats()
        m.ws_clients.set(live["clients"])
        for name, evicted in live["evictions"].items():
            m.evictions.labels(name).set(evicted)
        for name in self.hub.counts:
            m.live.labels(name).set(live[name])
        return m.render()
