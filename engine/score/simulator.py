"""A seeded simulator of labelled agent histories, to check that weight tuning beats the seed's fixed weights.

Each history is a fleet of agents over some days: the engine events they would cause (`agent.task_done` with
`data.ok`/`duration_ms`, `agent.error`, `agent.down`/`agent.started`, `resource.agent_cpu`/`_memory` and their
`_cleared`, repeated each minute while high as the agent sensor does), with `ts`, and the ground truth: when
each agent really had a fault. The events go through the real Scorer (time from `ts`, no sleeping); a simulated
operator labels its degradations against the ground truth, as `aios-engine feedback` would.

Scenarios — what a real fault looks like, and the harmless noise beside it:

- latency: fault: tasks 3–8× slower, 10 % time out (fail). Noise: CPU alerts at 1.1–2.5× the limit (70 %),
  blips of slow tasks, 2–6 min at 2–4× (30 %); the odd failed task (each agent's base rate, 1–4 %).
- resource: fault: a CPU or RSS alert at 1.6–3× the limit; tasks 1.5–2.5× slower, 30 % fail with an error.
  Noise: bursts of slow tasks, 5–30 min at 3–6× (70 %); mild alerts at 1.1–1.6× (30 %).
- crash: fault: a crash loop, `agent.down` every 1–3 min, the task in flight failing, half the others too
  (with an error). Noise: slow bursts (40 %), CPU alerts (40 %), a single restart now and then (20 %).
- flapping: fault: sustained failures, every task fails (half with an error). Noise: short dips, 2–8 min
  where 50–80 % of tasks fail, 4× as often as the other scenarios' noise.

Faults and noise episodes arrive as Poisson processes per agent. A fault lasts a log-uniform time between
`fault_min_s` and `fault_max_s` (it heals by itself then). What an agent is like (its usual latency, its base
failure rate) comes from (scenario, agent index) and not from the seed, so that seeds are independent weeks of
the same fleet: weights tuned on some seeds can be tested on others.

The operator (`coverage`, `label_noise`, `notice_after_s`, `grace_s`) labels a share `coverage` of the
score's degradations, true when it began inside a
fault or up to `grace_s` after it ended, flipped with probability `label_noise`; and of the faults the score
missed that lasted `notice_after_s` or more, labels the same share as true at a moment drawn in their second
half, with the components the scorer had then (its vector after the agent's last event before that moment).

Detection (`evaluate`): a fault is detected when the agent is in the degraded state (score.degraded, not yet
recovered) at some moment inside it; a degradation that begins outside every fault (and its grace) is a false
alarm. Healing: with remediation off a fault heals when its drawn time is up; with the score-driven P0 on, a
detected fault is also healed `restart_s` after detection, by a restart that works with probability
`restart_heals` (the same draw for every weighting). The stream up to a detection is the same either way, so
the detection time is read from the stream without restarts.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.events import format_ts
from engine.score.scorer import Scorer
from engine.score.tuning import Label, tune

SCENARIOS = ("latency", "resource", "crash", "flapping")
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: every history starts here
HEALED_WITHIN_S = 300.0


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Every knob of the simulation, visible (the bench prints the ones that shape its figures)."""

    agents: int = 6
    days: float = 7.0
    task_every_s: float = 60.0  # mean gap between one agent's tasks (exponential)
    faults_per_day: float = 2.0  # real faults per agent-day
    noise_per_day: float = 3.0  # harmless episodes per agent-day (flapping: 4× this many dips)
    fault_min_s: float = 60.0
    fault_max_s: float = 7200.0
    coverage: float = 0.8
    label_noise: float = 0.05
    notice_after_s: float = 300.0
    grace_s: float = 600.0
    warmup_s: float = 3600.0  # faults and degradations in the first hour are not counted (empty windows)
    restart_s: float = 60.0  # detection → restarted and healthy again (the P0 playbook's restart + verify)
    restart_heals: float = 0.9
    cpu_high: float = 90.0
    rss_high: float = 2048.0


@dataclass(frozen=True, slots=True)
class Episode:
    """A stretch of one agent's time: a real fault (`real`) or harmless noise, of some `kind`."""

    agent: str
    start: float
    end: float
    kind: str
    real: bool
    level: float  # how hard it hits: a slow-down factor, a failure share, an alert's multiple of its limit

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class History:
    scenario: str
    seed: int
    config: SimConfig
    agents: list[str]
    events: list[dict[str, Any]]
    times: list[float]  # each event's ts as epoch seconds
    faults: list[Episode]
    noise: list[Episode]

    @property
    def start(self) -> float:
        return EPOCH

    @property
    def end(self) -> float:
        return EPOCH + self.config.days * 86400.0


# ----------------------------------------------------------------------------------------------- generating

@dataclass(slots=True)
class _Effects:
    """What the episodes active at a moment do to a task."""

    slow: float = 1.0
    fail: float = 0.0
    error: float = 0.3  # share of failures that also post agent.error


def _effects(active: Sequence[Episode], base_fail: float) -> _Effects:
    out = _Effects(fail=base_fail)
    for ep in active:
        if ep.kind == "slow":
            out.slow = max(out.slow, ep.level)
            out.fail = max(out.fail, 0.1 if ep.real else base_fail)
        elif ep.kind in ("cpu", "rss") and ep.real:
            out.slow = max(out.slow, 1.5 + (ep.level - 1.6) * 0.7)
            out.fail, out.error = max(out.fail, 0.3), 1.0
        elif ep.kind == "crashloop":
            out.fail, out.error = max(out.fail, 0.5), 1.0
        elif ep.kind == "failing":
            out.fail = max(out.fail, ep.level)
            out.error = 0.5
    return out


def _draws(scenario: str) -> tuple[Callable[[random.Random], tuple[str, float]],
                                   list[tuple[float, Callable[[random.Random], tuple[str, float, float]]]]]:
    """The scenario's fault draw (kind, level) and its noise draws: (share of noise episodes, draw of
    (kind, level, duration_s))."""
    slow_noise = (lambda r: ("slow", r.uniform(3, 6), r.uniform(300, 1800)))
    cpu_noise = (lambda r: ("cpu", r.uniform(1.1, 2.5), r.uniform(300, 2400)))
    blip = (lambda r: ("slow", r.uniform(2, 4), r.uniform(120, 360)))  # a few slow tasks: a big input
    if scenario == "latency":
        return (lambda r: ("slow", r.uniform(3, 8))), [(0.7, cpu_noise), (0.3, blip)]
    if scenario == "resource":
        mild = (lambda r: (r.choice(("cpu", "rss")), r.uniform(1.1, 1.6), r.uniform(300, 1800)))
        return (lambda r: (r.choice(("cpu", "rss")), r.uniform(1.6, 3.0))), [(0.7, slow_noise), (0.3, mild)]
    if scenario == "crash":
        return (lambda r: ("crashloop", r.uniform(60, 180))), [
            (0.4, slow_noise), (0.4, cpu_noise), (0.2, lambda r: ("restart", 1.0, 1.0))]
    if scenario == "flapping":
        return (lambda r: ("failing", 1.0)), [(1.0, lambda r: ("failing", r.uniform(0.5, 0.8), r.uniform(120, 480)))]
    raise ValueError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")


def _poisson(rng: random.Random, per_day: float, start: float, end: float) -> list[float]:
    out, t = [], start
    while per_day > 0:
        t += rng.expovariate(per_day / 86400.0)
        if t >= end:
            return out
        out.append(t)
    return out


def _episodes(scenario: str, agent: str, rng: random.Random, cfg: SimConfig, end: float) -> list[Episode]:
    fault, noises = _draws(scenario)
    out = []
    log_min, log_max = math.log(cfg.fault_min_s), math.log(cfg.fault_max_s)
    for start in _poisson(rng, cfg.faults_per_day, EPOCH, end):
        kind, level = fault(rng)
        out.append(Episode(agent, start, min(start + math.exp(rng.uniform(log_min, log_max)), end), kind, True, level))
    noise_rate = cfg.noise_per_day * (4 if scenario == "flapping" else 1)
    for start in _poisson(rng, noise_rate, EPOCH, end):
        pick, draw = rng.random(), noises[-1][1]
        for share, candidate in noises:
            if pick < share:
                draw = candidate
                break
            pick -= share
        kind, level, duration = draw(rng)
        out.append(Episode(agent, start, min(start + duration, end), kind, False, level))
    return sorted(out, key=lambda ep: ep.start)


def generate(scenario: str, seed: int, config: SimConfig = SimConfig()) -> History:
    """One seeded history of `config.agents` agents over `config.days` days (same arguments, same events)."""
    _draws(scenario)  # an unknown scenario fails here, before any work
    end = EPOCH + config.days * 86400.0
    agents = [f"agent-{i}" for i in range(config.agents)]
    timed: list[tuple[float, int, dict[str, Any]]] = []
    faults: list[Episode] = []
    noise: list[Episode] = []
    for index, agent in enumerate(agents):
        profile = random.Random(f"profile/{scenario}/{index}")
        median_ms, base_fail = profile.uniform(300, 3000), profile.uniform(0.01, 0.04)
        rng = random.Random(f"history/{scenario}/{seed}/{index}")
        episodes = _episodes(scenario, agent, rng, config, end)
        faults.extend(ep for ep in episodes if ep.real)
        noise.extend(ep for ep in episodes if not ep.real)
        for t, kind, data in _agent_events(agent, episodes, rng, config, median_ms, base_fail, end):
            timed.append((t, len(timed), {"type": kind, "agent": agent, "data": data}))
    timed.sort(key=lambda item: (item[0], item[1]))
    events, times = [], []
    for n, (t, _, body) in enumerate(timed):
        kind = body["type"]
        source = "sensor.agents" if kind.startswith("resource.") else "engine.supervisor" if kind in (
            "agent.down", "agent.started") else f"agent.{body['agent']}"
        severity = "warning" if kind in ("agent.error", "agent.down", "resource.agent_cpu",
                                         "resource.agent_memory") else "info"
        events.append({"id": f"sim-{seed}-{n:08d}", "type": kind, "ts": format_ts(t), "source": source,
                       "agent": body["agent"], "severity": severity, "data": body["data"]})
        times.append(t)
    return History(scenario, seed, config, agents, events, times, faults, noise)


def _agent_events(agent: str, episodes: list[Episode], rng: random.Random, cfg: SimConfig, median_ms: float,
                  base_fail: float, end: float) -> list[tuple[float, str, dict[str, Any]]]:
    out: list[tuple[float, str, dict[str, Any]]] = []
    for ep in episodes:  # alerts, crashes and restarts: tied to the episode, not to tasks
        if ep.kind in ("cpu", "rss"):
            kind, key, high = (("resource.agent_cpu", "cpu_pct", cfg.cpu_high) if ep.kind == "cpu"
                               else ("resource.agent_memory", "rss_mb", cfg.rss_high))
            t = ep.start
            while t < ep.end:
                out.append((t, kind, {key: round(high * ep.level * rng.uniform(0.95, 1.05), 1)}))
                t += 60.0
            out.append((ep.end, f"{kind}_cleared", {key: round(high * 0.6, 1)}))
        elif ep.kind in ("crashloop", "restart"):
            t = ep.start
            while t < ep.end or (ep.kind == "restart" and t == ep.start):
                out.append((t, "agent.down", {"exit_code": 1}))  # and the task in flight fails with it
                out.append((t, "agent.task_done", {"ok": False, "duration_ms": round(median_ms * rng.uniform(0.2, 1))}))
                out.append((t + 5.0, "agent.started", {}))
                if ep.kind == "restart":
                    break
                t += ep.level * rng.uniform(0.8, 1.2)
    active: list[tuple[float, int, Episode]] = []  # a heap by end
    pending = 0
    for t in _poisson(rng, 86400.0 / cfg.task_every_s, EPOCH, end):
        while pending < len(episodes) and episodes[pending].start <= t:
            heapq.heappush(active, (episodes[pending].end, pending, episodes[pending]))
            pending += 1
        while active and active[0][0] <= t:
            heapq.heappop(active)
        effects = _effects([item[2] for item in active], base_fail)
        duration = median_ms * effects.slow * math.exp(rng.gauss(0.0, 0.25))
        ok = rng.random() >= effects.fail
        out.append((t, "agent.task_done", {"ok": ok, "duration_ms": round(duration)}))
        if not ok and rng.random() < effects.error:
            out.append((t, "agent.error", {"message": "task failed"}))
    return out


# -------------------------------------------------------------------------------------------------- replaying

@dataclass(slots=True)
class Degradation:
    agent: str
    at: float
    components: dict[str, float]
    until: float = math.inf  # score.recovered, or never


@dataclass(slots=True)
class Replay:
    """The real Scorer over a history, its weights per agent changeable between rounds (`weights`)."""

    history: History
    score_config: Mapping[str, Any]
    weights: dict[str, dict[str, float]] = field(default_factory=dict)
    degradations: list[Degradation] = field(default_factory=list)
    probes: dict[int, dict[str, float] | None] = field(default_factory=dict)  # fault index → vector then
    position: int = 0
    scorer: Scorer = field(init=False)
    _open: dict[str, Degradation] = field(default_factory=dict)
    _probe_at: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        cfg = self.history.config
        self.scorer = Scorer(self.score_config, cpu_high=cfg.cpu_high, rss_high=cfg.rss_high,
                             clock=lambda: self.history.times[max(self.position - 1, 0)], weights_of=self.weights.get)
        rng = random.Random(f"probes/{self.history.scenario}/{self.history.seed}")
        self._probe_at = sorted((rng.uniform(f.start + f.duration / 2, f.end), i)
                                for i, f in enumerate(self.history.faults))

    def play(self, until: float) -> None:
        """Fold the events before `until`, noting degradations and the vectors at the probe moments."""
        events, times, faults = self.history.events, self.history.times, self.history.faults
        probes, fold = self._probe_at, self.scorer.fold
        while self.position < len(events) and times[self.position] < until:
            t = times[self.position]
            while probes and probes[0][0] < t:
                _, index = probes.pop(0)
                self.probes[index] = self.scorer.vector(faults[index].agent)
            for kind, agent, data, _ in fold(events[self.position]):
                if kind == "score.degraded":
                    self._open[agent] = Degradation(agent, t, dict(data["components"]))
                    self.degradations.append(self._open[agent])
                elif kind == "score.recovered" and agent in self._open:
                    self._open.pop(agent).until = t
            self.position += 1


def _in_fault(faults_by_agent: Mapping[str, list[Episode]], agent: str, at: float, grace: float) -> bool:
    return any(f.start <= at <= f.end + grace for f in faults_by_agent.get(agent, ()))


def _by_agent(faults: Sequence[Episode]) -> dict[str, list[Episode]]:
    out: dict[str, list[Episode]] = {}
    for f in faults:
        out.setdefault(f.agent, []).append(f)
    return out


def _detected_at(fault: Episode, degradations: Sequence[Degradation]) -> float | None:
    """The first moment inside the fault at which the agent was degraded, or None."""
    times = [max(d.at, fault.start) for d in degradations if d.at <= fault.end and d.until >= fault.start]
    return min(times) if times else None


def label(replay: Replay, since: float, until: float, rng: random.Random) -> list[Label]:
    """The operator's labels for what happened in [since, until): degradations that began then, and missed
    faults that ended then (see the module's docstring)."""
    cfg, history = replay.history.config, replay.history
    mine = _by_agent(history.faults)
    out = []
    for d in replay.degradations:
        if since <= d.at < until and d.at >= EPOCH + cfg.warmup_s and rng.random() < cfg.coverage:
            truth = _in_fault(mine, d.agent, d.at, cfg.grace_s)
            truth = truth != (rng.random() < cfg.label_noise)
            out.append(Label(d.agent, d.at, truth, d.components, "operator", f"degraded@{d.at:.0f}"))
    per_agent = _by_agent(replay.degradations)
    for index, f in enumerate(history.faults):
        if not since <= f.end < until or f.start < EPOCH + cfg.warmup_s or f.duration < cfg.notice_after_s:
            continue
        if _detected_at(f, per_agent.get(f.agent, ())) is None and rng.random() < cfg.coverage:
            vector = replay.probes.get(index)
            if vector:
                out.append(Label(f.agent, f.start + f.duration / 2, True, vector, "operator"))
    return out


# ------------------------------------------------------------------------------------------ training, testing

def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True, slots=True)
class Detection:
    """Counts from one or more evaluated histories (`+` pools them); the ratios are properties."""

    faults: int = 0
    detected: int = 0
    degradations: int = 0
    true_alarms: int = 0  # degradations that began inside a fault (or its grace)
    agent_days: float = 0.0
    healed_off: int = 0  # faults healed within 5 min with remediation off
    healed_on: int = 0  # the same with score-driven P0 remediation on

    def __add__(self, other: Detection) -> Detection:
        return Detection(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    @property
    def precision(self) -> float:
        return _share(self.true_alarms, self.degradations)

    @property
    def recall(self) -> float:
        return _share(self.detected, self.faults)

    @property
    def f1(self) -> float:
        return _share(2 * self.precision * self.recall, self.precision + self.recall)

    @property
    def false_alarms_per_agent_day(self) -> float:
        return _share(self.degradations - self.true_alarms, self.agent_days)

    @property
    def healed_off_share(self) -> float:
        return _share(self.healed_off, self.faults)

    @property
    def healed_on_share(self) -> float:
        return _share(self.healed_on, self.faults)


def evaluate(history: History, weights: Mapping[str, Mapping[str, float]],
             score_config: Mapping[str, Any]) -> Detection:
    """Detection and healing counts of the Scorer with these weights (agent → weights; {} = configured)."""
    cfg = history.config
    replay = Replay(history, score_config, {k: dict(v) for k, v in weights.items()})
    replay.play(math.inf)
    counted = EPOCH + cfg.warmup_s
    faults = [f for f in history.faults if f.start >= counted]
    degradations = [d for d in replay.degradations if d.at >= counted]
    mine, per_agent = _by_agent(history.faults), _by_agent(replay.degradations)
    heal = random.Random(f"heal/{history.scenario}/{history.seed}")
    detected = healed_off = healed_on = 0
    for f in faults:
        works = heal.random() < cfg.restart_heals
        at = _detected_at(f, per_agent.get(f.agent, ()))
        detected += at is not None
        healed_off += f.duration <= HEALED_WITHIN_S
        healed = f.duration if at is None or not works else min(f.duration, at - f.start + cfg.restart_s)
        healed_on += healed <= HEALED_WITHIN_S
    return Detection(len(faults), detected, len(degradations),
                     sum(_in_fault(mine, d.agent, d.at, cfg.grace_s) for d in degradations),
                     len(history.agents) * (cfg.days - cfg.warmup_s / 86400.0), healed_off, healed_on)


@dataclass(frozen=True, slots=True)
class Training:
    weights: dict[str, dict[str, float]]  # per agent, after the last round
    fleet: dict[str, float]
    labels: int
    rounds: int


def train(histories: Sequence[History], score_config: Mapping[str, Any], *, round_days: float = 7.0) -> Training:
    """Tune as the weekly job would: each history is played in rounds of `round_days`, the operator's labels
    of each round join the pool, and one tuning run (bounded step) sets the weights for the next round. The
    weights carry over from one history to the next (the same fleet, later weeks)."""
    tuning = score_config["tuning"]
    fleet = {k: float(v) for k, v in score_config["weights"].items()}
    weights: dict[str, dict[str, float]] = {}
    pool: list[Label] = []
    rounds = 0
    for history in histories:
        replay = Replay(history, score_config, weights)
        rng = random.Random(f"labels/{history.scenario}/{history.seed}")
        since = history.start
        while since < history.end:
            until = min(since + round_days * 86400.0, history.end)
            replay.play(until)
            pool.extend(label(replay, since, until, rng))
            result = tune(weights, fleet, pool, threshold=float(score_config["degraded_below"]),
                          max_step=float(tuning["max_step"]), floor=float(tuning["floor"]),
                          min_labels=int(tuning["min_labels"]))
            fleet = result.fleet.after
            for agent in history.agents:
                tuned = result.agents.get(agent)
                if tuned is not None:
                    weights[agent] = tuned.after  # the dict the replay's scorer reads: effective at once
            since, rounds = until, rounds + 1
    return Training({k: dict(v) for k, v in weights.items()}, dict(fleet), len(pool), rounds)
