"""The scorer: every agent's health score, folded from stored events (docs/score.md).

It runs inside the decision loop, as the problem book does: `fold` is synchronous, costs a few dict
lookups and float operations per event, and returns what to emit instead of calling up the chain. All time
comes from the events' `ts`, so a rebuild from the store at start decays exactly as the live fold did, and
`rebuild` keeps the degraded state and the last announcement that the live fold would have reached.
"""
from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.capped import CappedMap
from engine.durations import parse_duration
from engine.events import event_time, format_ts
from engine.score.components import COMPONENTS, ERROR_WEIGHT, latency, resource, stability, success_rate, weighted
from engine.score.windows import DecayedCount, DecayedHistogram

__all__ = ["COMPONENTS", "READS", "Scorer"]

TASK_DONE, DOWN, ERROR = "agent.task_done", "agent.down", "agent.error"
CPU, MEMORY = "resource.agent_cpu", "resource.agent_memory"
MIN_TASKS = 5  # latency is full marks until this many tasks were seen
TREND_POINTS = 60  # one a minute: the last hour
_NO_POINT = float("nan")
_EPSILON = 1e-9  # a move of exactly update_delta counts despite float rounding
Emitted = tuple[str, str, dict[str, Any], str]


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else parse_duration(value)


def _number(value: Any) -> float | None:
    """A finite number from an event's data, or None (strings, booleans, NaN and the like are no numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer past float's range
        return None
    return value if math.isfinite(value) else None


class _Agent:
    """One agent's windows and announcement state: a fixed number of floats (benchmarked at 10,000 agents)."""

    __slots__ = ("ok", "done", "recent", "baseline", "latency", "trouble", "cpu", "rss", "tasks", "degraded",
                 "score", "announced", "announced_at", "at", "trend", "trend_minute")

    def __init__(self, half_life_s: float, stability_half_life_s: float, baseline_half_life_s: float | None) -> None:
        self.ok = DecayedCount(half_life_s)
        self.done = DecayedCount(half_life_s)
        self.recent = DecayedHistogram(half_life_s)
        self.baseline = None if baseline_half_life_s is None else DecayedHistogram(baseline_half_life_s)
        self.latency = 1.0  # quantiles do not decay, so this changes only when a task is done
        self.trouble = DecayedCount(stability_half_life_s)  # restarts plus a quarter of errors
        self.cpu: float | None = None  # the firing alert's latest number; None once it clears
        self.rss: float | None = None
        self.tasks = 0
        self.degraded = False
        self.score = 1.0
        self.announced: float | None = None  # the score of the last score.updated
        self.announced_at = -math.inf
        self.at = -math.inf  # the latest event's time
        self.trend = array("f", [_NO_POINT] * TREND_POINTS)  # slot minute % 60: the last score in that minute
        self.trend_minute = -1

    def note_trend(self, now: float, score: float) -> None:
        minute = int(now // 60)
        if minute < self.trend_minute:
            return  # a late event: the minute it belongs to is already drawn
        for skipped in range(max(self.trend_minute + 1, minute - TREND_POINTS + 1), minute):
            self.trend[skipped % TREND_POINTS] = _NO_POINT
        self.trend[minute % TREND_POINTS] = score
        self.trend_minute = minute

    def points(self, since: float) -> list[list[Any]]:
        out = []
        for minute in range(self.trend_minute - TREND_POINTS + 1, self.trend_minute + 1):
            value = self.trend[minute % TREND_POINTS]
            if minute >= 0 and (minute + 1) * 60 > since and not math.isnan(value):
                out.append([format_ts(minute * 60.0), round(value, 4)])
        return out


class Scorer:
    """Health scores by agent, at most `max_agents` of them (the least recently heard is forgotten)."""

    def __init__(self, config: Mapping[str, Any], *, cpu_high: float, rss_high: float,
                 clock: Callable[[], float], weights_of: Callable[[str], Mapping[str, float]] | None = None) -> None:
        self._half_life_s = _seconds(config["half_life"])
        self._stability_half_life_s = _seconds(config["stability_half_life"])
        self._baseline_half_life_s = _seconds(config["baseline_half_life"])
        self._every_s = _seconds(config["update_every"])
        self._degraded_below = float(config["degraded_below"])
        self._recovered_above = float(config["recovered_above"])
        self._delta = float(config["update_delta"])
        self._weights = {name: float(config["weights"][name]) for name in COMPONENTS}
        self._targets = {name: float(agent["latency_target_ms"]) for name, agent in (config.get("agents") or {}).items()
                         if isinstance(agent, Mapping) and (_number(agent.get("latency_target_ms")) or 0) > 0}
        self._cpu_high = float(cpu_high)
        self._rss_high = float(rss_high)
        self._clock = clock
        self._weights_of = weights_of
        self._agents: CappedMap[str, _Agent] = CappedMap("score_agents", int(config["max_agents"]))

    @property
    def evicted(self) -> int:
        return self._agents.evicted

    def fold(self, event: dict[str, Any]) -> list[Emitted]:
        """Fold one stored event; the score events it causes, as (type, agent, data, severity)."""
        return self._fold(event, announce=True)

    def rebuild(self, events: Iterable[dict[str, Any]]) -> None:
        """Fold stored history without emitting: the degraded state and the last announcement are restored
        as the live fold left them (their events are in the store already)."""
        for event in events:
            self._fold(event, announce=False)

    def vector(self, agent: str) -> dict[str, float] | None:
        """The agent's components as of its latest event; None for an agent not (or no longer) held."""
        state = self._agents.peek(agent)
        return None if state is None else self._components(state, state.at)

    def names(self) -> list[str]:
        """The agents held, sorted."""
        return sorted(self._agents)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per agent: score, components and degraded, without the trend (the live state, built often)."""
        out = {}
        for name in self._agents:
            state = self._agents.peek(name)
            if state is not None:
                components = self._components(state, state.at)
                out[name] = {"score": round(weighted(self._weights_for(name), components), 4),
                             "components": _rounded(components), "degraded": state.degraded}
        return out

    def view(self, agent: str | None = None) -> list[dict[str, Any]]:
        """Each agent's score (with the current weights), components, trend over the last hour and state,
        sorted by agent; only `agent` when given ([] when it is not held)."""
        names = sorted(self._agents) if agent is None else [agent] if agent in self._agents else []
        since = self._clock() - 3600.0
        rows = []
        for name in names:
            state = self._agents.peek(name)
            assert state is not None
            components = self._components(state, state.at)
            weights = self._weights_for(name)
            rows.append({"agent": name, "score": round(weighted(weights, components), 4),
                         "components": _rounded(components), "weights": weights, "degraded": state.degraded,
                         "trend": state.points(since), "tasks": state.tasks, "updated_at": format_ts(state.at)})
        return rows

    def _fold(self, event: Any, announce: bool) -> list[Emitted]:
        if not isinstance(event, dict):
            return []
        kind, agent = event.get("type"), event.get("agent")
        if isinstance(kind, str) and kind in REJUDGE and isinstance(agent, str):  # time passed: judge again
            state = self._agents.peek(agent)
            if state is None:
                return []
            now = max(state.at, event_time(event, self._clock()))
            state.at = now
            return self._judge(agent, state, now, announce)
        apply = _APPLY.get(kind) if isinstance(kind, str) else None
        if apply is None or not isinstance(agent, str) or not agent:
            return []
        now = event_time(event, self._clock())
        data = event.get("data")
        state = self._agents.setdefault(agent, lambda: _Agent(
            self._half_life_s, self._stability_half_life_s,
            None if agent in self._targets else self._baseline_half_life_s))
        apply(self, agent, state, data if isinstance(data, dict) else {}, now)
        if now > state.at:
            state.at = now
        return self._judge(agent, state, now, announce)

    def _task_done(self, agent: str, state: _Agent, data: dict[str, Any], now: float) -> None:
        state.tasks += 1
        ok = data.get("ok")
        if isinstance(ok, bool):
            state.done.add(1.0, now)
            if ok:
                state.ok.add(1.0, now)
        duration = _number(data.get("duration_ms"))
        if duration is not None and duration >= 0:
            state.recent.add(duration, now)
            if state.baseline is not None and not state.degraded:
                state.baseline.add(duration, now)
        if state.tasks < MIN_TASKS:
            return
        target = self._targets.get(agent)
        if target is None and state.baseline is not None:
            target = state.baseline.quantile(0.95, now)
        state.latency = latency(state.recent.quantile(0.95, now), target)

    def _components(self, state: _Agent, now: float) -> dict[str, float]:
        return {"success_rate": success_rate(state.ok.value(now), state.done.value(now)),
                "latency": state.latency,
                "stability": stability(state.trouble.rate(now) * 3600.0),
                "resource": resource(state.cpu, state.rss, cpu_high=self._cpu_high, rss_high=self._rss_high)}

    def _weights_for(self, agent: str) -> dict[str, float]:
        """The configured weights, overridden by the agent's tuned ones (asked each time: a tuning changes them)."""
        if self._weights_of is None:
            return dict(self._weights)
        tuned = self._weights_of(agent) or {}
        return {name: float(tuned.get(name, default)) for name, default in self._weights.items()}

    def _judge(self, agent: str, state: _Agent, now: float, announce: bool) -> list[Emitted]:
        """Score the agent after an event: degraded/recovered with hysteresis, score.updated when it moved."""
        components = self._components(state, now)
        weights = self._weights_for(agent)
        score = weighted(weights, components)
        previous, state.score = state.score, score
        state.note_trend(now, score)
        out: list[Emitted] = []
        if not state.degraded and score < self._degraded_below:
            state.degraded = True
            if announce:
                out.append(_event("score.degraded", agent, "warning", score, components, weights, previous))
        elif state.degraded and score > self._recovered_above:
            state.degraded = False
            if announce:
                out.append(_event("score.recovered", agent, "info", score, components, weights, previous))
        moved = state.announced is None or abs(score - state.announced) >= self._delta - _EPSILON
        if moved and now - state.announced_at >= self._every_s:
            state.announced, state.announced_at = score, now
            if announce:
                out.append(_event("score.updated", agent, "info", score, components, weights))
        return out


def _set_metric(field: str, key: str, firing: bool) -> Callable[[Scorer, str, _Agent, dict[str, Any], float], None]:
    """A resource alert sets its metric to the event's number (ignored when it has none); its clear unsets it."""
    def apply(self: Scorer, agent: str, state: _Agent, data: dict[str, Any], now: float) -> None:
        if not firing:
            setattr(state, field, None)
        elif (value := _number(data.get(key))) is not None:
            setattr(state, field, value)
    return apply


def _add_trouble(weight: float) -> Callable[[Scorer, str, _Agent, dict[str, Any], float], None]:
    def apply(self: Scorer, agent: str, state: _Agent, data: dict[str, Any], now: float) -> None:
        state.trouble.add(weight, now)
    return apply


_APPLY: dict[str, Callable[[Scorer, str, _Agent, dict[str, Any], float], None]] = {
    TASK_DONE: Scorer._task_done,
    DOWN: _add_trouble(1.0),
    ERROR: _add_trouble(ERROR_WEIGHT),
    CPU: _set_metric("cpu", "cpu_pct", True),
    f"{CPU}_cleared": _set_metric("cpu", "cpu_pct", False),
    MEMORY: _set_metric("rss", "rss_mb", True),
    f"{MEMORY}_cleared": _set_metric("rss", "rss_mb", False),
}
READS: tuple[str, ...] = tuple(_APPLY)  # what the start-up rebuild reads from the store
REJUDGE = frozenset({"agent.heartbeat", "agent.started"})  # live only: re-score a held agent as time passes


def _rounded(components: Mapping[str, float]) -> dict[str, float]:
    return {name: round(value, 4) for name, value in components.items()}


def _event(kind: str, agent: str, severity: str, score: float, components: dict[str, float],
           weights: dict[str, float], previous: float | None = None) -> Emitted:
    data: dict[str, Any] = {"score": round(score, 4), "components": _rounded(components), "weights": weights}
    if previous is not None:
        data["previous"] = round(previous, 4)
    return (kind, agent, data, severity)
