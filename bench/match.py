"""Matcher benchmark: `python bench/match.py` (about 30 s on a 2-core machine).

Workload: playbooks spread over 200 event types (or all on one), three conditions each (`agent` eq,
`data.pct` gt, `severity` in); events drawn from those types; a matching event has exactly one
candidate, whatever the number of playbooks. Measured through the whole pipeline (`Matcher.match`:
candidates, sustained, throttle, confidence, decisions); each figure is the best of 5 runs taken in
turns with its baselines, and the 10 vs 10,000 scaling is measured in turns too.

Baselines, measured in the same run through the same pipeline:
- naive: a Python loop over every playbook with the reference evaluator (what v0.5 did);
- unsharded: every playbook in one durable-rules ruleset with a `type` test, where it can build (a
  ruleset with 512 or more rules on one field cannot).
Also: start-up (load + lint + compile) of 1,000 playbooks from YAML files, and memory per compiled
playbook (RSS, durable-rules' C memory included).
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.playbooks.compiler import Index, RuleBuilder, Shard  # noqa: E402
from engine.playbooks.conditions import all_hold  # noqa: E402
from engine.playbooks.lint import lint_paths  # noqa: E402
from engine.playbooks.matcher import Matcher  # noqa: E402
from engine.playbooks.model import Condition, Playbook  # noqa: E402

TYPES = 200
SIZES = ((10, TYPES), (100, TYPES), (1_000, TYPES), (10_000, TYPES), (1_000, 1))
RATES = (1.0, 0.01)
UNSHARDED_LIMIT = 512  # durable-rules: 512+ rules on one field fail (error 106) or never finish building
GOALS = "cost at 10,000 <= 1.5x cost at 10; 1,000 playbooks >= 30k events/s (100%) and >= 50k (1%); start-up < 1 s"


def playbooks_for(count: int, types: int) -> list[Playbook]:
    """Playbook i: type i mod `types`, its own agent within that type, so each (type, agent) has one."""
    used = min(count, types)
    return [Playbook(id=f"pb-{i:05d}", on=(f"bench.type_{i % used}",), confidence=0.5 + (i % 5) / 10,
                     when=(Condition("agent", "eq", f"agent-{i // used}"), Condition("data.pct", "gt", 50 + i % 40),
                           Condition("severity", "in", ["warning", "error"])))
            for i in range(count)]


def events_for(playbooks: list[Playbook], rate: float, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Events aimed at random playbooks; a fraction `rate` matches (pct 95), the rest does not (pct 10)."""
    out = []
    for i in range(count):
        target = rng.choice(playbooks)
        out.append({"id": f"ev-{i}", "type": target.on[0], "agent": target.when[0].value, "severity": "warning",
                    "source": "bench", "data": {"pct": 95 if rng.random() < rate else 10, "host": "web-1"}})
    return out


class Naive:
    """v0.5: every playbook, every event, in Python."""

    def __init__(self, playbooks: list[Playbook]) -> None:
        self.all = playbooks
        self.playbooks = {p.id: p for p in playbooks}

    def candidates(self, event: dict[str, Any]) -> list[Playbook]:
        return [p for p in self.all if event["type"] in p.on and all_hold(p.when, event)]


class Unsharded:
    """One durable-rules ruleset for every type: each rule also tests the event's type."""

    def __init__(self, playbooks: list[Playbook]) -> None:
        builder = RuleBuilder()
        typed = [dataclasses.replace(p, when=(Condition("type", "eq", p.on[0]), *p.when)) for p in playbooks]
        self.rules = [rule for rule in map(builder.build, typed) if rule is not None]
        self.shard = Shard("bench:unsharded", self.rules, builder)
        self.playbooks = {p.id: p for p in playbooks}

    def candidates(self, event: dict[str, Any]) -> list[Playbook]:
        return [r.playbook for r in self.shard.fire(event, {}, {}) if not r.residual or all_hold(r.residual, event)]


def per_event_us(runs: list[tuple[Any, list[dict[str, Any]]]], budget_s: float, rounds: int = 5) -> list[float]:
    """µs per event of Matcher.match for each (index, events): the best of `rounds` runs, the contenders
    taking turns (a noisy neighbour then slows all of them alike). A run stops after about `budget_s`."""
    matchers = [(Matcher(index, clock=lambda: 0.0), events) for index, events in runs]
    best = [float("inf")] * len(runs)
    for _ in range(rounds):
        for i, (matcher, events) in enumerate(matchers):
            started = time.perf_counter()
            done = 0
            for event in events:
                matcher.match(event)
                done += 1
                if done % 256 == 0 and time.perf_counter() - started > budget_s:
                    break
            best[i] = min(best[i], (time.perf_counter() - started) / done)
    return [value * 1e6 for value in best]


def timed(build: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = build()
    return value, time.perf_counter() - started


def startup(count: int, per_file: int) -> tuple[float, float]:
    """Seconds to lint `count` playbooks from YAML files, and to compile them."""
    with tempfile.TemporaryDirectory() as tmp:
        for first in range(0, count, per_file):
            entries = []
            for i in range(first, min(first + per_file, count)):
                entries.append(f"""- id: pb-{i:05d}
  "on": bench.type_{i % TYPES}
  when:
    agent: agent-{i // TYPES}
    data.pct: {{gt: {50 + i % 40}}}
    severity: {{in: [warning, error]}}
  confidence: 0.{i % 9 + 1}
  throttle: {{within: 5m, key: [agent]}}
  steps:
    - id: restart
      action: restart_agent
      with: {{agent: "{{agent}}"}}
""")
            (Path(tmp) / f"rules-{first:05d}.yaml").write_text("".join(entries))
        result, lint_s = timed(lambda: lint_paths([tmp]))
        assert result.errors == 0 and len(result.playbooks) == count, result.diagnostics[:3]
        _, compile_s = timed(lambda: Index(result.playbooks))
    return lint_s, compile_s


def memory_per_playbook(count: int) -> tuple[float, float, float]:
    """RSS growth per playbook (KB) once compiled, and once every ruleset has seen an event (durable-rules
    creates a ruleset's state with its first fact); and the process RSS then (MB)."""
    playbooks = playbooks_for(count, TYPES)
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    index = Index(playbooks)
    compiled = process.memory_info().rss
    for playbook in playbooks:  # an event for every (type, agent): every shard gets its state
        index.candidates({"type": playbook.on[0], "agent": playbook.when[0].value, "data": {}})
    used = process.memory_info().rss
    del index
    return (compiled - before) / count / 1024, (used - before) / count / 1024, used / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events per run")
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per timed run, at most")
    args = parser.parse_args()
    rng = random.Random(5)
    compiled_kb, used_kb, rss_mb = memory_per_playbook(10_000)  # first, while the process is small

    print(f"{'playbooks':>16} {'match':>5} | {'ours µs/ev':>10} {'events/s':>9} | {'naive µs/ev':>11} {'ratio':>6} |"
          f" {'unsharded µs/ev':>15} {'ratio':>6} | {'compile':>7}")
    results: dict[tuple[int, int, float], float] = {}
    for count, types in SIZES:
        playbooks = playbooks_for(count, types)
        index, compile_s = timed(lambda: Index(playbooks))
        naive = Naive(playbooks)
        unsharded = Unsharded(playbooks) if count < UNSHARDED_LIMIT else None
        for rate in RATES:
            events = events_for(playbooks, rate, args.events, rng)
            contenders = [index, naive] + ([unsharded] if unsharded is not None else [])
            ours, base, *flat_us = per_event_us([(c, events) for c in contenders], args.budget)
            results[(count, types, rate)] = ours
            label = f"{count:,}" + (" on 1 type" if types == 1 else "")
            flat = f"{flat_us[0]:>15.1f} {flat_us[0] / ours:>5.1f}x" if flat_us else f"{'n/a':>15} {'':>6}"
            print(f"{label:>16} {rate:>5.0%} | {ours:>10.1f} {1e6 / ours:>9,.0f} | {base:>11.1f} {base / ours:>5.1f}x |"
                  f" {flat} | {compile_s:>6.3f}s")
        del index, naive, unsharded
        gc.collect()

    scaling: dict[float, float] = {}
    small, large = playbooks_for(10, TYPES), playbooks_for(10_000, TYPES)
    pair = Index(small), Index(large)
    for rate in RATES:
        runs = [(index, events_for(pbs, rate, args.events, rng)) for index, pbs in zip(pair, (small, large))]
        at_10, at_10k = per_event_us(runs, args.budget, rounds=7)
        scaling[rate] = at_10k / at_10
        print(f"scaling at {rate:.0%} match, measured in turns: {at_10:.1f} µs/event with 10 playbooks, "
              f"{at_10k:.1f} with 10,000")
    del pair
    lint_s, compile_s = startup(1_000, 10)
    print(f"\nstart-up, 1,000 playbooks in 100 files: lint {lint_s:.3f}s + compile {compile_s:.3f}s "
          f"= {lint_s + compile_s:.3f}s")
    print(f"memory per playbook (RSS growth, 10,000 playbooks): {compiled_kb:.1f} KB compiled, {used_kb:.1f} KB once "
          f"every ruleset has seen an event (process RSS {rss_mb:.0f} MB)")
    print(f"ratio columns: baseline cost / ours (higher is better); unsharded n/a: >= {UNSHARDED_LIMIT} rules")
    print(f"\ngoals: {GOALS}")
    for rate in RATES:
        scale = scaling[rate]
        print(f"  {rate:>4.0%} match: cost at 10,000 / cost at 10 = {scale:.2f}x  {'ok' if scale <= 1.5 else 'MISSED'}")
    for rate, goal in ((1.0, 30_000), (0.01, 50_000)):
        speed = 1e6 / results[(1_000, TYPES, rate)]
        print(f"  {rate:>4.0%} match, 1,000 playbooks: {speed:,.0f} events/s  {'ok' if speed >= goal else 'MISSED'}")
    total = lint_s + compile_s
    print(f"  start-up of 1,000 playbooks: {total:.3f}s  {'ok' if total < 1 else 'MISSED'}")


if __name__ == "__main__":
    main()
