"""Score engine evaluation: `python bench/score_eval.py` (about 30 s on a 2-core machine), seeded.

Per scenario of engine/score/simulator.py (its docstring documents the fault, noise, operator and healing
models): weights tuned week by week, as the weekly job would (one bounded step a week), on the training seeds'
histories; then the seed's fixed weights and the tuned ones scored on other seeds' histories, through the real
Scorer. Figures: precision, recall, F1 of degradation detection, false alarms per agent-day, and the share of
faults healed within 5 minutes with the score-driven P0 remediation off, on with fixed weights, on with tuned.

Cost: Scorer.fold over a stream spread over 10,000 agents (tuned weights looked up per event, as the engine
does), against two baselines over the same events in the same run: a plain dict update per event, and the
same with the event's `ts` parsed (which the Scorer must do). Memory per agent: tracemalloc growth once
10,000 agents are held, divided by 10,000.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import config  # noqa: E402
from engine.durations import parse_duration  # noqa: E402
from engine.events import event_time, format_ts  # noqa: E402
from engine.score.scorer import Scorer  # noqa: E402
from engine.score.simulator import EPOCH, SCENARIOS, Detection, SimConfig, evaluate, generate, train  # noqa: E402

SCORE = config.load_embedded().raw["score"]
SIM = SimConfig(agents=6, days=21, task_every_s=120)
TRAIN_SEEDS = (1, 2)  # 2 × 3 weeks: 6 weekly tuning runs
TEST_SEEDS = (101, 102)  # a week each, never trained on
TEST_DAYS = 7.0
AGENTS_AT_SCALE = 10_000


Figures = tuple[str, Detection, Detection, dict[str, float], int, int]


def scenario_figures(scenario: str, score: dict[str, Any]) -> Figures:
    """One scenario's fixed and tuned detection, the tuned fleet weights, tuning runs and labels, under `score`."""
    trained = train([generate(scenario, seed, SIM) for seed in TRAIN_SEEDS], score, round_days=7)
    fixed = tuned = Detection()
    for seed in TEST_SEEDS:
        history = generate(scenario, seed, dataclasses.replace(SIM, days=TEST_DAYS))
        fixed += evaluate(history, {}, score)
        tuned += evaluate(history, trained.weights, score)
    return scenario, fixed, tuned, trained.fleet, trained.rounds, trained.labels


def stream(count: int, agents: int, rng: random.Random) -> list[dict[str, Any]]:
    """Mostly finished tasks, some errors, crashes and alerts, spread over `agents` agents, 0.1 s apart (after
    the memory stream's events)."""
    out = []
    for i in range(count):
        agent, pick, ts = f"agent-{rng.randrange(agents)}", rng.random(), format_ts(EPOCH + 3600 + i * 0.1)
        if pick < 0.9:
            event = {"type": "agent.task_done", "data": {"ok": rng.random() > 0.05,
                                                         "duration_ms": round(rng.lognormvariate(6.5, 0.5))}}
        elif pick < 0.96:
            event = {"type": "agent.error", "data": {}}
        elif pick < 0.97:
            event = {"type": "agent.down", "data": {"exit_code": 1}}
        else:
            event = {"type": "resource.agent_cpu", "data": {"cpu_pct": rng.uniform(90, 200)}}
        out.append({"id": f"ev-{i}", "ts": ts, "agent": agent, "source": "bench", "severity": "info", **event})
    return out


def scorer(weights: dict[str, dict[str, float]]) -> Scorer:
    return Scorer(SCORE, cpu_high=SIM.cpu_high, rss_high=SIM.rss_high, clock=lambda: EPOCH, weights_of=weights.get)


def per_event_us(contenders: list[Callable[[dict[str, Any]], Any]], events: list[dict[str, Any]],
                 rounds: int = 3) -> list[float]:
    """µs per event of each contender over the same events: the best of `rounds`, taken in turns."""
    best = [float("inf")] * len(contenders)
    for _ in range(rounds):
        for i, contender in enumerate(contenders):
            started = time.perf_counter()
            for event in events:
                contender(event)
            best[i] = min(best[i], (time.perf_counter() - started) / len(events))
    return [value * 1e6 for value in best]


def each_agent(agents: int) -> list[dict[str, Any]]:
    """A finished task, an error and a CPU alert for every agent: each one held, with every window in use."""
    out = []
    for i in range(agents):
        ts, agent = format_ts(EPOCH + i * 0.01), f"agent-{i}"
        out += [{"type": "agent.task_done", "ts": ts, "agent": agent, "data": {"ok": True, "duration_ms": 800}},
                {"type": "agent.error", "ts": ts, "agent": agent, "data": {}},
                {"type": "resource.agent_cpu", "ts": ts, "agent": agent, "data": {"cpu_pct": 120.0}}]
    return out


def memory_per_agent(weights: dict[str, dict[str, float]]) -> tuple[Scorer, float]:
    """The scorer holding every agent, and its tracemalloc growth per agent (the events themselves excluded)."""
    events = each_agent(AGENTS_AT_SCALE)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = scorer(weights)
    for event in events:
        held.fold(event)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held, used / len(held.view())


def cost(held: Scorer, events: list[dict[str, Any]]) -> tuple[float, float, float]:
    """µs per event: the scorer (every agent already held: the steady state), a plain dict update, and a dict
    update of the event's parsed `ts`."""
    counts: dict[str, int] = {}
    last: dict[str, float] = {}

    def plain(event: dict[str, Any]) -> None:
        counts[event["agent"]] = counts.get(event["agent"], 0) + 1

    def parsed(event: dict[str, Any]) -> None:
        last[event["agent"]] = event_time(event, 0.0)

    ours, base, base_ts = per_event_us([held.fold, plain, parsed], events)
    return ours, base, base_ts


def ratio(new: float, old: float) -> str:
    return f"{new / old:>5.2f}x" if old else f"{'n/a':>6}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="events in the cost stream")
    parser.add_argument("--jobs", type=int, default=min(len(SCENARIOS), os.cpu_count() or 1))
    parser.add_argument("--half-life", help="score.half_life for the scenarios (default: the configured one)")
    parser.add_argument("--stability-half-life", help="score.stability_half_life for the scenarios (default: the "
                        "configured one)")
    args = parser.parse_args()
    score = {**SCORE, **{key: value for key, value in (("half_life", args.half_life),
                                                       ("stability_half_life", args.stability_half_life)) if value}}
    for key in ("half_life", "stability_half_life"):
        try:
            positive = parse_duration(score[key]) > 0
        except ValueError as error:
            parser.error(f"--{key.replace('_', '-')}: {error}")
        if not positive:
            parser.error(f"--{key.replace('_', '-')}: {score[key]!r} is not a positive duration")
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(scenario_figures, SCENARIOS, [score] * len(SCENARIOS)))
    evaluated = time.perf_counter() - started

    print(f"simulator: {SIM.agents} agents; train seeds {TRAIN_SEEDS} × {SIM.days:g} days (weekly tuning), test seeds "
          f"{TEST_SEEDS} × {TEST_DAYS:g} days; a task every {SIM.task_every_s:g} s on average; "
          f"{SIM.faults_per_day:g} faults and {SIM.noise_per_day:g} noise episodes per agent-day;")
    print(f"score: half_life {score['half_life']}, stability_half_life {score['stability_half_life']}")
    print(f"faults last {SIM.fault_min_s / 60:g}–{SIM.fault_max_s / 60:g} min (log-uniform); labels: coverage "
          f"{SIM.coverage:.0%}, noise {SIM.label_noise:.0%}; P0 on: healthy {SIM.restart_s:g} s after detection, "
          f"the restart working {SIM.restart_heals:.0%} of the time\n")
    print(f"{'scenario':>9} | {'F1 fixed':>8} {'tuned':>5} {'ratio':>6} | {'P fixed':>7} {'tuned':>5} | "
          f"{'R fixed':>7} {'tuned':>5} | {'FA/agent-day fixed':>18} {'tuned':>5} {'ratio':>6} | "
          f"{'healed ≤5m off':>14} {'P0 fixed':>8} {'P0 tuned':>8} | {'faults':>6} | tuned fleet weights")
    for scenario, fixed, tuned, fleet, rounds, labels in results:
        weights = " ".join(f"{name[:4]} {value:.2f}" for name, value in fleet.items())
        print(f"{scenario:>9} | {fixed.f1:>8.2f} {tuned.f1:>5.2f} {ratio(tuned.f1, fixed.f1)} | "
              f"{fixed.precision:>7.2f} {tuned.precision:>5.2f} | {fixed.recall:>7.2f} {tuned.recall:>5.2f} | "
              f"{fixed.false_alarms_per_agent_day:>18.2f} {tuned.false_alarms_per_agent_day:>5.2f} "
              f"{ratio(tuned.false_alarms_per_agent_day, fixed.false_alarms_per_agent_day)} | "
              f"{fixed.healed_off_share:>14.0%} {fixed.healed_on_share:>8.0%} {tuned.healed_on_share:>8.0%} | "
              f"{fixed.faults:>6} | {weights} ({rounds} runs, {labels} labels)")
    every = Detection()
    for _, _, tuned, *_ in results:
        every += tuned
    print(f"{'all':>9} | healed within 5 min: {every.healed_off_share:.0%} off, {every.healed_on_share:.0%} with "
          f"P0 on and tuned weights ({every.faults} faults); ratio columns: tuned / fixed")

    tuned_weights = {f"agent-{i}": dict(results[0][3]) for i in range(AGENTS_AT_SCALE)}
    held, per_agent = memory_per_agent(tuned_weights)
    events = stream(args.events, AGENTS_AT_SCALE, random.Random(5))
    ours, base, base_ts = cost(held, events)
    print(f"\ncost per scored event ({len(events):,} events over {AGENTS_AT_SCALE:,} agents): "
          f"Scorer.fold {ours:.1f} µs "
          f"({1e6 / ours:,.0f} events/s); plain dict update {base:.2f} µs ({ours / base:.0f}x); dict update with "
          f"ts parsed {base_ts:.1f} µs ({ours / base_ts:.1f}x)")
    print(f"memory per agent at {AGENTS_AT_SCALE:,} agents: {per_agent / 1024:.2f} KB (tracemalloc growth / agents)")
    print(f"scenarios evaluated in {evaluated:.1f} s with {args.jobs} processes; "
          f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
