"""Soak benchmark: `python bench/soak.py [--minutes 30 | --seconds S] [--rate 500] [--seed 14] [--out DIR]`.

One real engine on the shipped `aios.yaml` and a copy of the shipped `rules/` (its four demo agents on a 1 s
heartbeat with 3 misses, the per-agent run budget raised from 5 to 1,000 an hour: faults come far more often
than the budget expects), in a temporary directory. A steady load (`engine.chaos.load.AckLoad`, which keeps
every acknowledged id) posts `--rate` events/s all along, while seeded random faults go in:
- kill: SIGKILL a demo agent (its pid from `GET /api/agents`); the shipped playbook must restart it;
- stop: SIGSTOP a demo agent for 2-8 s, then SIGCONT (past 3 s its heartbeats are missed: a restart);
- burst: a second load at 5x the rate for 3-8 s.
An agent is hit only while it is up, has no open problem and its last fault is older than the shipped
`restart-down-agent` throttle (read from the rule), so that every fault is one the rules can heal at once;
when no agent qualifies the fault is a burst.

Every few seconds, from outside: the engine's RSS and open fds (psutil), its event-loop lag (`/metrics`:
`aios_event_loop_lag_seconds` and `aios_event_loop_lag_worst_seconds`), runs waiting, events undecided,
problems (`GET /api/problems`). At the end: the store audited (every acknowledged id stored exactly once,
`engine.chaos.audit.audit_store`), `soak.svg` (RSS, fds, lag over time, faults marked) and `soak.json` (the
samples and faults) written to `--out`, and a markdown table.

Baseline: the run's own first tenth, under the same load with no fault injected (faults go in the next eight
tenths, the last tenth settles). The question is drift over time, and on a noisy two-core machine a second,
fault-free run would compare two different moments of the machine; ratios are end / start and max / start,
start and end being the medians of the first and last tenth. PASS needs: 0 events lost, 0 stored twice, none
stored that was never posted, open fds at the end <= start + 16 (the load's pool may hold 8 more keep-alive
connections), RSS growth under RSS_BOUND_MB_PER_H (below), the engine's exit 0 on SIGTERM, and the steady load
acknowledged at >= 90 % of `--rate` over the whole run. Exit 0 on PASS, else 1.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from heal import UP_STATES, Engine  # bench/ is this script's directory, first on sys.path
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.chaos.audit import StoreAudit, audit_store  # noqa: E402
from engine.chaos.engine_api import ChaosError, EngineApi  # noqa: E402
from engine.chaos.load import AckLoad  # noqa: E402
from engine.durations import parse_duration  # noqa: E402
from engine.yaml_loader import load_file  # noqa: E402

TENTHS = 10  # the first tenth is the baseline and the last one settles: no fault in either
KINDS = (("kill", 0.4), ("stop", 0.3), ("burst", 0.3))
STOP_S = (2.0, 8.0)  # under and over the 3 s of silence the heartbeat allows
BURST_S = (3.0, 8.0)
BURST_FACTOR = 5.0
HEARTBEAT = {"interval": "1s", "misses": 3}
MAX_IN_FLIGHT = 8  # batches pending per load: the keep-alive connections it may hold
FD_SLACK = 2 * MAX_IN_FLIGHT
# RSS: fitted over the second half of the run (caches and buffers fill in the first minutes). A short run
# cannot tell a slope from noise, so the growth is judged as end - start <= RSS_SLACK_MB + RSS_BOUND × hours.
RSS_BOUND_MB_PER_H = 20.0
RSS_SLACK_MB = 16.0
RATE_FLOOR = 0.9  # of the asked rate, outages included: an engine that falls behind its load fails the soak
SETTLE_S = 60.0  # after the load, open problems get this long (at most a quarter of the run) to heal
PALETTE = {"kill": "#d62728", "stop": "#ff7f0e", "burst": "#9467bd"}


@dataclass(slots=True)
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    threads: int
    cpu_pct: float
    lag_ms: float
    lag_worst_ms: float
    queue: float  # runs waiting (aios_queue_depth, all priorities)
    undecided: float  # stored events not yet through the matcher
    problems_open: int
    agents_up: int
    acked: int


@dataclass(slots=True)
class Fault:
    t_s: float
    kind: str
    agent: str | None = None
    pid: int | None = None
    seconds: float = 0.0  # how long a stop or a burst lasted


@dataclass
class Soak:
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    loads: list[AckLoad] = field(default_factory=list)  # the steady load first, then the bursts
    problems: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    exit_code: int | None = None
    audit: StoreAudit | None = None


class SoakEngine(Engine):
    """bench/heal.py's engine process, on the shipped configuration and rules instead of its own."""

    def __init__(self, tmp: Path) -> None:  # not Engine.__init__: it writes a configuration of its own
        shutil.copytree(ROOT / "rules", tmp / "rules")
        config = load_file(ROOT / "aios.yaml").value
        for agent in config["agents"].values():
            command = agent["command"]
            command[command.index("--heartbeat") + 1] = HEARTBEAT["interval"]
            agent["heartbeat"] = dict(HEARTBEAT)
        reactor = config.setdefault("reactor", {})
        reactor["budget"] = {**reactor.get("budget", {}), "max_runs": 1000}
        config.update(data_dir="data", rules_dir="rules")
        (tmp / "aios.yaml").write_text(json.dumps(config, indent=1))  # JSON is YAML
        self.names = sorted(config["agents"])
        self.launch(tmp)


def restart_throttle_s(rules: Path) -> float:
    """The shipped `restart-down-agent` throttle: an agent hit again inside it would wait for it to lapse."""
    return parse_duration(load_file(rules / "agent_down.yaml").value["throttle"]["within"])


def batch_size(rate: float) -> int:
    """About ten POSTs a second, as an agent fleet would send them."""
    return max(1, min(100, round(rate / 10)))


class Injector:
    """Seeded faults on what the engine looks after; keeps what it did and lets stops and bursts end.

    Kinds, lengths and burst seeds come from the schedule's generator whatever the engine's state, the
    target from a second one: one seed gives the same faults at the same times, only which agent is hit
    (and whether one qualifies, else the fault is a burst) depends on how the engine is doing."""

    def __init__(self, api: EngineApi, seed: int, rate: float, throttle_s: float, started: float,
                 soak: Soak) -> None:
        self.api, self.rate, self.throttle_s = api, rate, throttle_s
        self.schedule, self.targets = random.Random(seed), random.Random(seed + 1)
        self.started, self.soak = started, soak
        self.last_hit: dict[str, float] = {}
        self.pending: list[asyncio.Task[None]] = []

    def gap(self, mean_s: float) -> float:
        return mean_s * self.schedule.uniform(0.5, 1.5)

    async def inject(self) -> None:
        kind = self.schedule.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        stop_s, burst_s = self.schedule.uniform(*STOP_S), self.schedule.uniform(*BURST_S)
        burst_seed = self.schedule.randrange(2**31)
        now = time.monotonic()
        agent = await self._target(now) if kind != "burst" else None
        if agent is None:
            kind = "burst"
        fault = Fault(round(now - self.started, 2), kind)
        if kind == "burst":
            fault.seconds = round(burst_s, 2)
            rate = self.rate * BURST_FACTOR
            burst = AckLoad(self.api.url, rate=rate, batch_size=batch_size(rate), max_in_flight=MAX_IN_FLIGHT,
                            seed=burst_seed)
            self.soak.loads.append(burst)
            await burst.start()
            self.pending.append(asyncio.create_task(self._later(fault.seconds, burst.stop)))
        else:
            assert agent is not None
            fault.agent, fault.pid = agent["name"], int(agent["pid"])
            self.last_hit[fault.agent] = now
            try:
                process = psutil.Process(fault.pid)
                if kind == "kill":
                    process.kill()
                else:
                    fault.seconds = round(stop_s, 2)
                    process.suspend()
                    self.pending.append(asyncio.create_task(self._later(fault.seconds, lambda: self._resume(process))))
            except psutil.NoSuchProcess:
                return  # it died meanwhile: no fault of ours
        self.soak.faults.append(fault)

    async def _target(self, now: float) -> dict[str, Any] | None:
        """A declared agent that is up, has no open problem and was not hit within the restart throttle."""
        troubled = {p["subject"].get("agent") for p in await self.api.problems() if p["status"] == "open"}
        ready = [a for a in await self.api.agents()
                 if a.get("declared") and a.get("pid") and a.get("state") in UP_STATES and a["name"] not in troubled
                 and now - self.last_hit.get(a["name"], -1e9) > self.throttle_s + 1 and psutil.pid_exists(a["pid"])]
        return self.targets.choice(sorted(ready, key=lambda a: a["name"])) if ready else None

    @staticmethod
    async def _later(seconds: float, then: Callable[[], Awaitable[Any]]) -> None:
        await asyncio.sleep(seconds)
        await then()

    @staticmethod
    async def _resume(process: psutil.Process) -> None:
        with suppress(psutil.Error):  # the engine restarted it meanwhile: the stopped process is gone
            if process.is_running():  # the same process (pid and start time), not a pid reused since
                process.resume()

    async def finish(self) -> None:
        """Let the stops and bursts under way end (they are short)."""
        await asyncio.gather(*self.pending)


async def sample(api: EngineApi, http: aiohttp.ClientSession, process: psutil.Process, t_s: float,
                 acked: int) -> Sample:
    async with http.get(api.url + "/metrics") as answer:
        text = await answer.text()
    metrics: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for point in family.samples:
            metrics[point.name] += point.value
    problems = await api.problems()
    agents = await api.agents()
    with process.oneshot():
        rss, fds, threads, cpu = (process.memory_info().rss / 2**20, process.num_fds(), process.num_threads(),
                                  process.cpu_percent())
    return Sample(round(t_s, 2), round(rss, 2), fds, threads, cpu,
                  round(metrics["aios_event_loop_lag_seconds"] * 1e3, 2),
                  round(metrics["aios_event_loop_lag_worst_seconds"] * 1e3, 2), metrics["aios_queue_depth"],
                  metrics["aios_events_undecided"], sum(p["status"] == "open" for p in problems),
                  sum(a.get("declared") and a.get("state") in UP_STATES for a in agents), acked)


async def soak(engine: SoakEngine, seconds: float, rate: float, seed: int, every_s: float, throttle_s: float) -> Soak:
    result = Soak(seconds)
    process = psutil.Process(engine.proc.pid)
    process.cpu_percent()
    timeout = aiohttp.ClientTimeout(total=30)
    async with EngineApi(engine.url) as api, aiohttp.ClientSession(timeout=timeout) as http:
        load = AckLoad(engine.url, rate=rate, batch_size=batch_size(rate), max_in_flight=MAX_IN_FLIGHT, seed=seed)
        result.loads.append(load)
        started = time.monotonic()
        await load.start()
        injector = Injector(api, seed, rate, throttle_s, started, result)

        async def sampler() -> None:  # from one interval in: CPU % is measured since the sample before
            tick = started + every_s
            while tick <= started + seconds + 0.01:
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
                result.samples.append(await sample(api, http, process, time.monotonic() - started, load.stats.acked))
                tick += every_s

        async def faults() -> None:
            gap = min(20.0, seconds / 8)
            at, last = started + seconds / TENTHS, started + seconds * (TENTHS - 1) / TENTHS
            while (at := at + injector.gap(gap)) < last:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                await injector.inject()

        await asyncio.gather(sampler(), faults())
        await load.stop(drain_s=30.0)
        await injector.finish()
        settle_until = time.monotonic() + min(SETTLE_S, seconds / 4)
        while any(p["status"] == "open" for p in await api.problems()) and time.monotonic() < settle_until:
            await asyncio.sleep(0.5)
        result.problems = await api.problems()
        result.restarts = sum(a.get("restarts", 0) for a in await api.agents() if a.get("declared"))
    return result


# -- figures --------------------------------------------------------------------------------------------
def tenth(samples: list[Sample], seconds: float, which: int) -> list[Sample]:
    low, high = seconds * which / TENTHS, seconds * (which + 1) / TENTHS
    return [s for s in samples if low <= s.t_s <= high] or samples[:1]


def median(samples: list[Sample], name: str) -> float:
    return statistics.median(getattr(s, name) for s in samples)


def rss_slope_mb_per_h(samples: list[Sample], seconds: float) -> float:
    """Least-squares slope of RSS over the second half of the run, per hour."""
    half = [s for s in samples if s.t_s >= seconds / 2]
    if len(half) < 2:
        return 0.0
    return statistics.linear_regression([s.t_s for s in half], [s.rss_mb for s in half]).slope * 3600


def summary(result: Soak, rate: float) -> dict[str, Any]:
    samples, seconds = result.samples, result.seconds
    first, last = tenth(samples, seconds, 0), tenth(samples, seconds, TENTHS - 1)
    series = {}
    for name in ("rss_mb", "fds", "lag_ms", "lag_worst_ms", "queue", "undecided", "cpu_pct", "threads"):
        series[name] = {"start": median(first, name), "end": median(last, name),
                        "max": max(getattr(s, name) for s in samples)}
    problems = result.problems
    resolved = [p for p in problems if p["status"] == "resolved"]
    main, *bursts = result.loads
    audit = result.audit
    assert audit is not None
    growth = series["rss_mb"]["end"] - series["rss_mb"]["start"]
    rss_limit = RSS_SLACK_MB + RSS_BOUND_MB_PER_H * seconds / 3600
    checks = {
        "0 events lost": not audit.missing,
        "0 events stored twice": not audit.duplicated,
        "0 stored never posted": not audit.unknown,
        f"fds end <= start + {FD_SLACK}": series["fds"]["end"] <= series["fds"]["start"] + FD_SLACK,
        f"RSS end - start <= {rss_limit:.1f} MB": growth <= rss_limit,
        "engine exit 0 on SIGTERM": result.exit_code == 0,
        f"steady load acknowledged >= {RATE_FLOOR:.0%} of asked": main.stats.rate >= RATE_FLOOR * rate,
    }
    return {
        "series": series,
        "rss_growth_mb": round(growth, 2),
        "rss_slope_mb_per_h": round(rss_slope_mb_per_h(samples, seconds), 1),
        "faults": dict(Counter(f.kind for f in result.faults)),
        "agent_restarts": result.restarts,
        "problems": {"opened": len(problems), "healed_by_run": sum(bool(p["run_id"]) for p in resolved),
                     "healed_by_itself": sum(not p["run_id"] for p in resolved),
                     "escalated": sum(bool(p["escalated_at"]) for p in problems),
                     "open_at_end": sum(p["status"] == "open" for p in problems),
                     "heal_s": sorted(p["heal_s"] for p in resolved if p["heal_s"] is not None),
                     "by_kind": dict(Counter(p["kind"] for p in problems))},
        "events": {"acked": audit.acked, "lost": len(audit.missing), "duplicated": len(audit.duplicated),
                   "stored_unacked": audit.unacked_stored, "never_posted": audit.unknown,
                   "steady_rate": round(main.stats.rate, 1), "burst_acked": sum(b.stats.acked for b in bursts),
                   "refused": dict(sum((load.stats.refused for load in result.loads), Counter()))},
        "checks": checks,
        "pass": all(checks.values()),
    }


def table(result: Soak, figures: dict[str, Any], rate: float) -> str:
    def ratio(value: float, base: float) -> str:
        return f"{value / base:.2f}" if base else "-"

    def counts(by: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(by.items())) or "none"

    names = {"rss_mb": "RSS (MB)", "fds": "open fds", "lag_ms": "event-loop lag (ms)",
             "lag_worst_ms": "event-loop lag, worst of the minute (ms)", "queue": "runs waiting",
             "undecided": "events undecided", "cpu_pct": "engine CPU (% of one core)", "threads": "engine threads"}
    lines = ["| figure | start (baseline) | end | max | end/start | max/start |", "|---|---:|---:|---:|---:|---:|"]
    for name, label in names.items():
        s = figures["series"][name]
        lines.append(f"| {label} | {s['start']:.1f} | {s['end']:.1f} | {s['max']:.1f} | {ratio(s['end'], s['start'])} "
                     f"| {ratio(s['max'], s['start'])} |")
    faults, problems, events = figures["faults"], figures["problems"], figures["events"]
    heals = problems["heal_s"]
    heal = f"{statistics.median(heals):.1f} / {heals[-1]:.1f}" if heals else "-"
    rows = [
        ("RSS growth, end - start", f"{figures['rss_growth_mb']:+.1f} MB"),
        ("RSS growth per hour (fit, second half)", f"{figures['rss_slope_mb_per_h']:+.1f} MB/h"),
        ("faults injected", f"{sum(faults.values())} ({counts(faults)})"),
        ("agent restarts", str(figures["agent_restarts"])),
        ("problems opened", f"{problems['opened']} ({counts(problems['by_kind'])})"),
        ("problems healed (by a run / by itself)", f"{problems['healed_by_run']} / {problems['healed_by_itself']}"),
        ("time to heal, median / max (s)", heal),
        ("problems escalated / still open at the end", f"{problems['escalated']} / {problems['open_at_end']}"),
        ("steady load acknowledged (events/s, of asked)", f"{events['steady_rate']:.0f} of {rate:g} "
                                                          f"({ratio(events['steady_rate'], rate)})"),
        ("events acked / lost / duplicated", f"{events['acked']} / {events['lost']} / {events['duplicated']}"),
        ("stored though unacknowledged (answer lost) / never posted", f"{events['stored_unacked']} / "
                                                                     f"{events['never_posted']}"),
        ("load refusals and retries, by status", ", ".join(f"{k}: {v}" for k, v in sorted(events["refused"].items()))
         or "none"),
    ]
    lines += ["", "| figure | value |", "|---|---:|", *(f"| {k} | {v} |" for k, v in rows)]
    lines += ["", "| check | result |", "|---|---|",
              *(f"| {name} | {'PASS' if ok else 'FAIL'} |" for name, ok in figures["checks"].items()),
              f"| **soak** | **{'PASS' if figures['pass'] else 'FAIL'}** |"]
    return "\n".join(lines)


# -- the plot -------------------------------------------------------------------------------------------
PANELS = (("rss_mb", "RSS (MB)", "#1f77b4"), ("fds", "open fds", "#2ca02c"),
          ("lag_worst_ms", "event-loop lag, worst of the minute (ms)", "#d62728"))
WIDTH, PANEL_H, LEFT, RIGHT, TOP, GAP = 900, 160, 70, 20, 50, 45


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering low..high."""
    span = max(high - low, 1e-9)
    raw = span / count
    power = 10 ** int(f"{raw:e}".split("e")[1])
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = step * (low // step)
    ticks = [first]
    while ticks[-1] < high:
        ticks.append(ticks[-1] + step)
    return ticks


def svg(result: Soak) -> str:
    samples, seconds = result.samples, result.seconds
    in_minutes = seconds > 180
    unit, scale = ("min", 60.0) if in_minutes else ("s", 1.0)
    plot_w = WIDTH - LEFT - RIGHT
    height = TOP + len(PANELS) * (PANEL_H + GAP) + 10

    def x(t: float) -> float:
        return LEFT + plot_w * t / seconds

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" '
           f'font-size="11">', f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{LEFT}" y="18" font-size="14">bench/soak.py: {seconds / scale:g} {unit}, '
           f'{len(result.faults)} faults</text>']
    for n, (kind, color) in enumerate(PALETTE.items()):
        left = LEFT + 300 + n * 90
        out.append(f'<line x1="{left}" y1="14" x2="{left}" y2="24" stroke="{color}" stroke-width="3"/>'
                   f'<text x="{left + 5}" y="23">{kind}</text>')
    for index, (name, label, color) in enumerate(PANELS):
        top = TOP + index * (PANEL_H + GAP)
        values = [getattr(s, name) for s in samples]
        ticks = nice_ticks(0.0 if name != "rss_mb" else min(values), max(values) or 1.0)
        low, high = ticks[0], ticks[-1]

        def y(v: float, top: float = top, low: float = low, high: float = high) -> float:
            return top + PANEL_H - PANEL_H * (v - low) / (high - low)

        out.append(f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#888"/>')
        out.append(f'<text x="{LEFT}" y="{top - 6}" font-size="12">{label}</text>')
        for tick in ticks:
            out.append(f'<line x1="{LEFT - 4}" y1="{y(tick):.1f}" x2="{LEFT + plot_w}" y2="{y(tick):.1f}" '
                       f'stroke="#eee"/><text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
        for fault in result.faults:
            out.append(f'<line x1="{x(fault.t_s):.1f}" y1="{top}" x2="{x(fault.t_s):.1f}" y2="{top + PANEL_H}" '
                       f'stroke="{PALETTE[fault.kind]}" stroke-opacity="0.5"/>')
        points = " ".join(f"{x(s.t_s):.1f},{y(getattr(s, name)):.1f}" for s in samples)
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for tick in nice_ticks(0.0, seconds / scale, 6):
            if tick * scale <= seconds:
                out.append(f'<text x="{x(tick * scale):.1f}" y="{top + PANEL_H + 14}" text-anchor="middle">'
                           f'{tick:g}</text>')
        out.append(f'<text x="{LEFT + plot_w}" y="{top + PANEL_H + 28}" text-anchor="end">time ({unit})</text>')
    out.append("</svg>")
    return "\n".join(out)


def write_outputs(out: Path, result: Soak, figures: dict[str, Any], args: argparse.Namespace) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.svg").write_text(svg(result))
    report = {"args": vars(args), "summary": figures, "faults": [asdict(f) for f in result.faults],
              "samples": [asdict(s) for s in result.samples]}
    (out / "soak.json").write_text(json.dumps(report, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=30.0, help="length of the load (default 30)")
    length.add_argument("--seconds", type=float, help="length of the load in seconds (instead of --minutes)")
    parser.add_argument("--rate", type=float, default=500.0, help="steady load, events/s (default 500)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--sample-every", type=float, help="seconds between samples (default: 5, or a thirtieth "
                        "of a shorter run)")
    parser.add_argument("--out", type=Path, default=ROOT / "test-artifacts" / "soak")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    if seconds < 20 or args.rate <= 0:
        parser.error("the run must last at least 20 s and the rate be positive")
    every_s = args.sample_every or min(5.0, seconds / 30)
    with tempfile.TemporaryDirectory(prefix="aios-soak-") as name:
        tmp = Path(name)
        engine = SoakEngine(tmp)
        try:
            engine.wait_up(60)
            throttle_s = restart_throttle_s(tmp / "rules")
            try:
                result = asyncio.run(soak(engine, seconds, args.rate, args.seed, every_s, throttle_s))
            except ChaosError as exc:  # the engine stopped answering: that is the finding
                print(f"bench/soak.py: FAIL: {exc}; engine log:\n{(tmp / 'engine.log').read_text()[-3000:]}",
                      file=sys.stderr)
                return 1
            engine.proc.send_signal(signal.SIGTERM)
            try:
                result.exit_code = engine.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                result.exit_code = None
        finally:
            engine.close()
        main_load, *_ = result.loads
        acked = set().union(*(load.acked for load in result.loads))
        unacked = set().union(*(load.unacked() for load in result.loads))
        result.audit = audit_store(tmp / "data", acked, unacked)
        if not main_load.acked:
            print(f"no event acknowledged; engine log:\n{(tmp / 'engine.log').read_text()[-3000:]}", file=sys.stderr)
    figures = summary(result, args.rate)
    write_outputs(args.out, result, figures, args)
    print(f"\nbench/soak.py: {seconds:g} s at {args.rate:g} events/s, seed {args.seed}, a sample every "
          f"{every_s:.3g} s; {args.out / 'soak.svg'}, {args.out / 'soak.json'}\n")
    print(table(result, figures, args.rate))
    return 0 if figures["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
