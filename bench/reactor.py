"""Scheduler and reactor benchmark: `python bench/reactor.py`.

One table, each figure beside a baseline measured in the same run:
1. event → `scheduler.decision` latency (p50/p99) with 1,000 events/s of background load, through the real
   path (validate, durable group commit, bus, compiled matcher, guards, scheduler, decision stored), against
   a v0.5-style synchronous if/else dispatcher that runs each remediation inline;
2. queue wait by priority when 2,000 runs arrive at once on 5 slots;
3. runs/s with no-op steps (journal, record, snapshot and outcome events included).
"""
from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from engine.actions import ACTIONS
from engine.agents.local import LocalAgents  # noqa: E402
from engine.bus import Bus  # noqa: E402
from engine.admission.dispatch import Dispatcher  # noqa: E402
from engine.emitter import EngineEmitter  # noqa: E402
from engine.events import EventValidator  # noqa: E402
from engine.intake import Intake  # noqa: E402
from engine.playbooks.compiler import Index  # noqa: E402
from engine.playbooks.matcher import Matcher  # noqa: E402
from engine.playbooks.model import playbook_from  # noqa: E402
from engine.admission.guards import Budget, CircuitBreaker, LoopGuard  # noqa: E402
from engine.reactor.runner import Reactor, ReactorDeps  # noqa: E402
from engine.reactor.watch import EventWatcher  # noqa: E402
from engine.admission.scheduler import Job, Scheduler  # noqa: E402
from engine.store.writer import EventWriter  # noqa: E402

NOOP = ["/bin/true"]
FIX = ["sleep", "0.2"]  # a remediation as quick as a real one gets (restarting an agent takes longer)
PLAYBOOKS = [playbook_from({"id": f"fix-{t.replace('.', '-')}", "on": t, "when": {"agent": {"exists": True}},
                            "throttle": {"within": "1s", "key": ["agent"]},
                            "steps": [{"id": "fix", "action": "shell", "with": {"argv": FIX}}]})
             for t in ("agent.error", "agent.down", "resource.cpu_spike", "resource.memory_high")]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def engine_latency(data_dir: Path, seconds: float) -> tuple[list[float], list[float], list[float]]:
    """Probe events (agent.error) among 1,000 heartbeats/s: latency until the scheduler decided (queued
    the run) and until the `scheduler.decision` event is durably stored."""
    commits: list[float] = []
    writer = EventWriter(data_dir, on_commit=lambda _n, took: commits.append(took)).open()
    bus = Bus()
    intake = Intake(EventValidator(), writer, bus)
    emitter = EngineEmitter(intake)
    clock = time.time
    matcher = Matcher(Index(PLAYBOOKS), clock)
    dispatcher = Dispatcher(emitter=emitter, breaker=CircuitBreaker(clock), budget=Budget(clock, max_runs=10**9),
                            loop=LoopGuard(clock), declared=lambda: frozenset())
    reactor = Reactor(ReactorDeps(data_dir=data_dir, emit=dispatcher.emit_run_event,
                                  agents=LocalAgents({}, data_dir),
                                  wait_for=EventWatcher(clock).wait_for, compact=_nothing, actions=ACTIONS,
                                  playbook=lambda _: None, python=sys.executable))
    sent: dict[str, float] = {}
    decided: list[float] = []
    stored: list[float] = []

    async def on_decision(type_: str, data: dict[str, Any], job: Job) -> None:
        started = sent.pop(job.event["id"], None)
        if started is not None:
            decided.append(time.perf_counter() - started)
        await dispatcher.emit_decision(type_, data, job)
        if started is not None:
            stored.append(time.perf_counter() - started)

    scheduler = Scheduler(start=reactor.run, emit=on_decision, clock=clock, new_id=intake.validator.new_id)
    dispatcher.attach(scheduler)
    sub = bus.subscribe("matcher", "*")

    async def matcher_loop() -> None:
        async for event in sub:
            for decision in matcher.match(event).decisions:
                asyncio.ensure_future(dispatcher.dispatch(decision.playbook, event, decision.priority,
                                                          decision.coalesce_key))

    loop_task = asyncio.ensure_future(matcher_loop())

    async def background() -> None:
        """1,000 events/s in batches of 10 every 10 ms, as agents posting heartbeats would."""
        tick = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            batch = [{"type": "agent.heartbeat", "agent": f"a{(tick * 10 + i) % 50}"} for i in range(10)]
            asyncio.ensure_future(intake.submit(batch))
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.01 - time.perf_counter()))

    async def probes() -> None:
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < seconds:
            event_id = f"probe{n:06d}"
            sent[event_id] = time.perf_counter()
            await intake.submit([{"id": event_id, "type": "agent.error", "agent": f"p{n % 40}"}])
            n += 1
            await asyncio.sleep(0.05)

    await asyncio.gather(background(), probes())
    await asyncio.sleep(0.5)
    await scheduler.drain(10)
    loop_task.cancel()
    writer.close()
    return decided, stored, commits


async def _nothing() -> dict[str, Any]:
    return {}


def v05_latency(data_dir: Path, seconds: float) -> list[float]:
    """v0.5: one loop, events appended to events.jsonl and kept in memory, if/else dispatch, the fix run
    inline. The same load arrives on a wall-clock schedule; an event waits while a fix runs."""
    events_file = open(data_dir / "events.jsonl", "ab")
    history: list[dict[str, Any]] = []
    latencies = []
    arrivals = []
    start = time.perf_counter()
    t = 0.0
    n = 0
    while t < seconds:
        for i in range(10):
            arrivals.append((t, {"type": "agent.heartbeat", "agent": f"a{i}"}))
        if abs((t / 0.05) - round(t / 0.05)) < 1e-9:
            arrivals.append((t, {"type": "agent.error", "agent": f"p{n}", "probe": True}))
            n += 1
        t = round(t + 0.01, 6)
    for at, event in arrivals:
        now = time.perf_counter() - start
        if now < at:
            time.sleep(at - now)
        events_file.write(orjson.dumps(event) + b"\n")
        events_file.flush()
        history.append(event)
        if event["type"] == "agent.error":  # if/else: the decision, then the fix, inline
            latencies.append(time.perf_counter() - start - at)
            subprocess.run(FIX, check=False)
        elif event["type"] == "resource.cpu_spike":
            subprocess.run(FIX, check=False)
    events_file.close()
    return latencies


async def queue_waits() -> dict[str, list[float]]:
    """2,000 runs of 10 ms each arrive at once on 5 slots: how long each priority waits to start."""
    waits: dict[str, list[float]] = {p: [] for p in ("P0", "P1", "P2", "P3")}
    ids = iter(range(10**9))

    async def start(job: Job) -> None:
        waits[job.priority].append(time.perf_counter() - job.extra["t"])
        await asyncio.sleep(0.01)

    async def emit(*_: Any) -> None:
        return None

    scheduler = Scheduler(start=start, emit=emit, clock=time.time, new_id=lambda: f"r{next(ids)}")
    rng = random.Random(3)
    playbook = PLAYBOOKS[0]
    for i in range(2000):
        priority = rng.choice(("P0", "P1", "P2", "P3"))
        await scheduler.offer(Job(playbook, {"id": f"e{i}"}, priority, (str(i),), extra={"t": time.perf_counter()}))
    await scheduler.wait_idle()
    return waits


async def runs_per_second(data_dir: Path, action: str, count: int) -> float:
    emitted = []

    async def emit(type_: str, data: dict[str, Any], cause: dict[str, Any], severity: str) -> dict[str, Any]:
        emitted.append(type_)
        return {"id": f"x{len(emitted)}"}

    step = {"id": "noop", "action": "shell", "with": {"argv": NOOP}} if action == "shell" else \
        {"id": "noop", "action": "emit", "with": {"type": "bench.noop"}}
    playbook = playbook_from({"id": "noop", "on": "a.b", "steps": [step]})
    reactor = Reactor(ReactorDeps(data_dir=data_dir, emit=emit, agents=LocalAgents({}, data_dir),
                                  wait_for=EventWatcher(time.time).wait_for, compact=_nothing, actions=ACTIONS,
                                  playbook=lambda _: playbook, python=sys.executable))
    ids = iter(range(10**9))
    scheduler = Scheduler(start=reactor.run, emit=lambda *_: _nothing(), clock=time.time,
                          new_id=lambda: f"01BENCH{next(ids):019d}")
    started = time.perf_counter()
    for i in range(count):
        await scheduler.offer(Job(playbook, {"id": f"e{i}", "type": "a.b"}, "P3", (str(i),)))
    await scheduler.wait_idle()
    return count / (time.perf_counter() - started)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "engine").mkdir()
        (tmp / "v05").mkdir()
        decided, stored, commits = asyncio.run(engine_latency(tmp / "engine", seconds))
        theirs = v05_latency(tmp / "v05", seconds)
        waits = asyncio.run(queue_waits())
        (tmp / "r1").mkdir()
        (tmp / "r2").mkdir()
        shell_rate = asyncio.run(runs_per_second(tmp / "r1", "shell", 200))
        emit_rate = asyncio.run(runs_per_second(tmp / "r2", "emit", 500))
    print(f"\nScheduler/reactor benchmark ({seconds:.0f} s of load: 1,000 heartbeats/s + 20 agent.error/s, "
          f"each fixed by a 200 ms step)\n")
    print(f"| {'event -> scheduler.decision latency (ms)':<66} | {'engine':>10} | {'v0.5 sync':>10} | {'ratio':>8} |")
    print(f"|{'-' * 68}|{'-' * 12}|{'-' * 12}|{'-' * 10}|")
    for name, ours in (("run queued", decided), ("decision event durably stored", stored)):
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            a, b = percentile(ours, q) * 1000, percentile(theirs, q) * 1000
            print(f"| {name + ' ' + label:<66} | {a:>10.2f} | {b:>10.2f} | {b / a:>7.1f}x |")
    print(f"| {'probes measured':<66} | {len(stored):>10} | {len(theirs):>10} | {'':>8} |")
    print(f"| {'(the disk) group commit write+fsync p50 / p99 (ms), same run':<66} | "
          f"{percentile(commits, 0.5) * 1000:>4.2f}/{percentile(commits, 0.99) * 1000:<5.2f} | {'':>10} | {'':>8} |")
    print()
    print(f"| {'queue wait, 2,000 runs of 10 ms on 5 slots':<40} | {'mean (s)':>9} | {'p99 (s)':>9} | {'runs':>6} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 11}|{'-' * 8}|")
    for priority, values in waits.items():
        print(f"| {priority:<40} | {statistics.mean(values):>9.2f} | {percentile(values, 0.99):>9.2f} | "
              f"{len(values):>6} |")
    print()
    print(f"| {'runs/s with no-op steps (5 concurrent; journal + record + snapshot)':<72} | {'runs/s':>8} |")
    print(f"|{'-' * 74}|{'-' * 10}|")
    print(f"| {'one shell step (a real process: /bin/true)':<72} | {shell_rate:>8.1f} |")
    print(f"| {'one emit step (in-process)':<72} | {emit_rate:>8.1f} |")


if __name__ == "__main__":
    main()
