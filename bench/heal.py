"""Healing benchmark: `python bench/heal.py [--agents 32] [--faults 250] [--seed 7]` (about 2.5 minutes).

Two real engines, one after the other, each on a copy of the shipped rules with its demo agents (heartbeat
1 s, 3 misses): the baseline with level-triggered re-decisions switched off (`problems.redecide: false`,
the engine before problems: an `agent.down` set aside is never looked at again), then the shipped
behaviour. Into each, the same seeded mix of faults goes, each on an agent that is up:
- kill: SIGKILL, at least a throttle window after the agent's last restart;
- stop: SIGSTOP (the agent goes silent; its heartbeats stop), as long after;
- repeat: SIGKILL within 2 s of the agent coming back, inside `restart-down-agent`'s throttle window;
- crash loop: three SIGKILLs in a row, each as soon as the agent is back.
Windows kept in minutes by the shipped rules are scaled down so that the whole run fits in three minutes:
throttle 2m → 6s, escalate_after 5m → 15s, resync backoff → 5s; the budget is raised to 1000 runs (with the
shipped 5 per hour, most faults here would be escalated as budget-spent, in both engines alike).

Each fault is followed to the problem it opened (`GET /api/problems`: the agent's first `agent-down`
problem opened after the injection). Healed: resolved before the run ended (every run is far under the
5 minutes the goal allows), its time to heal counted from the injection. Escalated: still open with
`problem.escalated`. Forgotten: neither. Goals (issue 11): ≥ 99 % healed or escalated, ≥ 95 % healed.
The baseline still tracks and escalates problems (only re-decisions are off), so its unhealed faults show
as escalated; the engine before problems left them silent. It injects fewer faults: its agents stay down.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from service import free_port  # bench/ is this script's directory, first on sys.path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.events import parse_ts  # noqa: E402

THROTTLE_S = 6.0
ESCALATE_S = 15.0
REPEAT_WITHIN_S = 2.0  # a repeat lands this soon after the agent is back: well inside the throttle window
TICK_S = 0.2
KINDS = (("kill", 0.3), ("stop", 0.2), ("repeat", 0.3), ("crash-loop", 0.2))
LOOP_KILLS = 3
ROLES = ("coder", "analyst", "monitor", "researcher")
UP_STATES = {"running", "working", "learning"}
RULE_EDITS = {
    "agent_down.yaml": [("throttle: {within: 2m", f"throttle: {{within: {THROTTLE_S:g}s")],
    "problems.problems.yaml": [("  key: [agent]\n", f"  key: [agent]\n  escalate_after: {ESCALATE_S:g}s\n")],
}


@dataclass
class Fault:
    agent: str
    kind: str
    pid: int
    at: float  # wall clock of the injection
    outcome: str = "forgotten"
    heal_s: float | None = None


@dataclass
class Agent:
    name: str
    pid: int | None = None  # the process a fault was injected into, while it is not back
    back_at: float | None = None  # when it was last seen back after a fault
    up_since: float = 0.0
    loop_left: int = 0  # kills still due in a crash loop


@dataclass
class Run:
    label: str
    faults: list[Fault] = field(default_factory=list)
    restarts: int = 0
    other_problems: int = 0
    seconds: float = 0.0


class Engine:
    """`aios-engine run` in `tmp` on the shipped rules (edited), with `agents` demo agents."""

    def __init__(self, tmp: Path, agents: int, redecide: bool) -> None:
        rules = tmp / "rules"
        shutil.copytree(ROOT / "rules", rules)
        for name, edits in RULE_EDITS.items():
            text = (rules / name).read_text()
            for old, new in edits:
                if old not in text:
                    raise SystemExit(f"bench/heal.py: {name} no longer holds {old!r}: update RULE_EDITS")
                text = text.replace(old, new)
            (rules / name).write_text(text)
        self.names = [f"{ROLES[n % len(ROLES)]}{n // len(ROLES) + 1}" for n in range(agents)]
        lines = [f"  {name}: {{command: [{sys.executable}, -m, engine.demo.worker, --role, {name.rstrip('0123456789')},"
                 f" --heartbeat, 1s], heartbeat: {{interval: 1s, misses: 3}}}}" for name in self.names]
        (tmp / "aios.yaml").write_text(
            "sensors: {interval: 1h}\n"
            f"problems: {{redecide: {str(redecide).lower()}, resync: 5s}}\n"
            "reactor: {budget: {max_runs: 1000}}\n"
            "agents:\n" + "\n".join(lines) + "\n")
        self.launch(tmp)

    def launch(self, tmp: Path) -> None:
        """Start `aios-engine run` on `tmp/aios.yaml`, on a free port, its log in `tmp/engine.log`."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp / "engine.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bin" / "aios-engine"), "run", "--port", str(self.port), "--config",
             str(tmp / "aios.yaml")], cwd=tmp, stderr=self.log, stdout=subprocess.DEVNULL,
            env={**os.environ, "AIOS_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def agents(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in self.get("/api/agents")["agents"] if row["declared"]}

    def wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"engine exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if all(row["state"] in UP_STATES for row in self.agents().values()):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"engine or agents not up after {timeout:.0f}s; see {self.log.name}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if "engine.demo.worker" in " ".join(proc.info["cmdline"] or ()) and \
                        proc.environ().get("AIOS_URL") == self.url:
                    proc.kill()
            except psutil.Error:
                continue
        self.log.close()


@contextmanager
def engine(agents: int, redecide: bool) -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="aios-heal-") as tmp:
        running = Engine(Path(tmp), agents, redecide)
        try:
            running.wait_up(60)
            yield running
        finally:
            running.close()


class Injector:
    """Chooses and injects faults on agents that are up, one per tick at most; follows them back."""

    def __init__(self, names: list[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.agents = {name: Agent(name, up_since=time.time()) for name in names}
        self.faults: list[Fault] = []

    def tick(self, rows: dict[str, dict[str, Any]], open_agents: set[str], inject: bool) -> None:
        now = time.time()
        for agent in self.agents.values():
            row = rows.get(agent.name, {})
            if agent.pid is not None and row.get("pid") not in (None, agent.pid) \
                    and row.get("state") in UP_STATES and agent.name not in open_agents:
                agent.pid, agent.back_at = None, now
        for agent in self.agents.values():  # a crash loop goes on the moment its agent is back
            if agent.loop_left and agent.pid is None:
                self._inject(agent, rows, "crash-loop", signal.SIGKILL)
                return
        if not inject:
            return
        kind = self.rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        ready = sorted(name for name, agent in self.agents.items() if self._eligible(agent, kind, now, rows))
        if not ready:
            return
        agent = self.agents[self.rng.choice(ready)]
        if kind == "crash-loop":
            agent.loop_left = LOOP_KILLS
        self._inject(agent, rows, kind, signal.SIGSTOP if kind == "stop" else signal.SIGKILL)

    def _eligible(self, agent: Agent, kind: str, now: float, rows: dict[str, dict[str, Any]]) -> bool:
        row = rows.get(agent.name, {})
        if agent.pid is not None or agent.loop_left or not row.get("pid") or row.get("state") not in UP_STATES:
            return False
        if kind == "repeat":
            return agent.back_at is not None and now - agent.back_at <= REPEAT_WITHIN_S
        return now - (agent.back_at or agent.up_since) >= THROTTLE_S + 0.5

    def _inject(self, agent: Agent, rows: dict[str, dict[str, Any]], kind: str, sig: signal.Signals) -> None:
        pid = rows[agent.name]["pid"]
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        agent.pid = pid
        agent.loop_left = max(0, agent.loop_left - 1)
        self.faults.append(Fault(agent.name, kind, pid, time.time()))

    def pending(self) -> bool:
        return any(agent.pid is not None or agent.loop_left for agent in self.agents.values())


def run(label: str, agents: int, faults: int, inject_s: float, drain_s: float, seed: int, redecide: bool) -> Run:
    result = Run(label)
    started = time.monotonic()
    with engine(agents, redecide) as running:
        injector = Injector(running.names, seed)
        inject_until = time.monotonic() + inject_s
        drain_until = None
        while True:
            rows = running.agents()
            problems = running.get("/api/problems?open=1")["problems"]
            open_agents = {p["subject"].get("agent") for p in problems if p["kind"] == "agent-down"}
            injecting = len(injector.faults) < faults and time.monotonic() < inject_until
            injector.tick(rows, open_agents, injecting)
            if not injecting:
                drain_until = drain_until or time.monotonic() + drain_s
                settled = all(p["escalated_at"] and not p["running"] for p in problems if p["kind"] == "agent-down")
                if (not injector.pending() and not problems) or (settled and not injector.pending()) \
                        or time.monotonic() > drain_until:
                    break
            time.sleep(TICK_S)
        tally(result, injector.faults, running.get("/api/problems")["problems"])
        result.restarts = sum(row["restarts"] for row in running.agents().values())
    result.seconds = time.monotonic() - started
    return result


def tally(result: Run, faults: list[Fault], problems: list[dict[str, Any]]) -> None:
    """Each fault's problem: its agent's first agent-down problem opened after the injection."""
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for problem in sorted((p for p in problems if p["kind"] == "agent-down"), key=lambda p: p["opened_at"]):
        by_agent.setdefault(problem["subject"].get("agent"), []).append(problem)
    used: set[str] = set()
    for fault in faults:
        for problem in by_agent.get(fault.agent, []):
            if problem["id"] in used or parse_ts(problem["opened_at"]).timestamp() < fault.at - 0.05:
                continue
            used.add(problem["id"])
            if problem["status"] == "resolved":
                fault.outcome = "healed"
                fault.heal_s = parse_ts(problem["resolved_at"]).timestamp() - fault.at
            elif problem["escalated_at"]:
                fault.outcome = "escalated"
            break
    result.faults = faults
    result.other_problems = len(problems) - len(used)


def share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else \
        (values[0] if values else float("nan"))


def figures(result: Run) -> dict[str, tuple[float, str]]:
    """name -> (value, format): `%` a share (`%N`: of N faults), `s` seconds, `n` a count."""
    outcomes = Counter(f.outcome for f in result.faults)
    heals = sorted(f.heal_s for f in result.faults if f.heal_s is not None)
    fresh = sorted(f.heal_s for f in result.faults if f.heal_s is not None and f.kind in ("kill", "stop"))
    total = len(result.faults)
    out = {"faults injected": (total, "n"), "healed": (share(outcomes["healed"], total), "%"),
           "healed or escalated": (share(outcomes["healed"] + outcomes["escalated"], total), "%"),
           "escalated, unhealed": (outcomes["escalated"], "n"), "forgotten": (outcomes["forgotten"], "n"),
           "time to heal p50 (s)": (percentile(heals, 50), "s"), "time to heal p95 (s)": (percentile(heals, 95), "s"),
           "time to heal p50, kill+stop (s)": (percentile(fresh, 50), "s"),
           "agent restarts": (result.restarts, "n"), "problems not from a fault": (result.other_problems, "n")}
    for kind, _ in KINDS:
        of_kind = [f for f in result.faults if f.kind == kind]
        out[f"healed: {kind}"] = (share(sum(f.outcome == "healed" for f in of_kind), len(of_kind)), f"%{len(of_kind)}")
    return out


GOALS = {"healed": 0.95, "healed or escalated": 0.99}


def show(value: float, fmt: str) -> str:
    if fmt.startswith("%"):
        return f"{value:.1%}" + (f" of {fmt[1:]}" if fmt[1:] else "")
    return f"{value:.2f}" if fmt == "s" else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=32, help="demo agents per engine (default 32)")
    parser.add_argument("--faults", type=int, default=250, help="faults per engine at most (default 250)")
    parser.add_argument("--inject-for", type=float, default=55.0, help="seconds of injection per engine")
    parser.add_argument("--drain", type=float, default=25.0, help="seconds after the last fault, at most")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    runs = [run(label, args.agents, args.faults, args.inject_for, args.drain, args.seed, redecide)
            for label, redecide in (("baseline: redecide off", False), ("level-triggered", True))]
    base, level = (figures(r) for r in runs)
    print(f"\nbench/heal.py: {args.agents} demo agents, seed {args.seed}; throttle {THROTTLE_S:g}s, "
          f"escalate_after {ESCALATE_S:g}s; {runs[0].seconds:.0f}s + {runs[1].seconds:.0f}s\n")
    print(f"| {'figure':<32} | {runs[0].label:>22} | {runs[1].label:>16} | {'ratio':>6} | goal |")
    print(f"|{'-' * 34}|{'-' * 24}:|{'-' * 17}:|{'-' * 7}:|------|")
    missed = False
    for name, (value, fmt) in level.items():
        baseline, base_fmt = base[name]
        ratio = f"{value / baseline:.2f}" if baseline else "-"
        goal = ""
        if name in GOALS:
            goal = "PASS" if value >= GOALS[name] else "MISS"
            missed |= goal == "MISS"
        print(f"| {name:<32} | {show(baseline, base_fmt):>22} | {show(value, fmt):>16} | {ratio:>6} | {goal:<4} |")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
