"""The scorer as a fold over stored events, with an injected clock: components from events, hysteresis,
score.updated's rate limit, learned latency targets, rebuild equals live, eviction, odd events."""
from __future__ import annotations

import copy
import itertools
import math
import random
from typing import Any

import pytest

from engine.config import load_embedded
from engine.events import format_ts
from engine.score.scorer import COMPONENTS, READS, Scorer

T0 = 1_800_000_000.0
ONLY_RESOURCE = {"success_rate": 0.0, "latency": 0.0, "stability": 0.0, "resource": 1.0}
FRESH = 6 * math.log(2)  # restarts an hour that stability reads from one fresh restart (half-life 10 min)
_ids = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def config(**overrides: Any) -> dict[str, Any]:
    raw = copy.deepcopy(load_embedded().raw["score"])
    raw.update(overrides)
    return raw


def make(weights: dict[str, float] | None = None, **overrides: Any) -> tuple[Scorer, Clock]:
    clock = Clock()
    scorer = Scorer(config(**overrides), cpu_high=90, rss_high=2048, clock=clock,
                    weights_of=None if weights is None else lambda agent: weights)
    return scorer, clock


def ev(clock: Clock, type_: str, agent: str | None = "coder", **data: Any) -> dict[str, Any]:
    event = {"id": f"e{next(_ids)}", "type": type_, "ts": format_ts(clock.now), "source": "test", "data": data}
    if agent is not None:
        event["agent"] = agent
    return event


def cpu_for(score: float) -> float:
    """The agent CPU% at which the resource component (the whole score under ONLY_RESOURCE) is `score`."""
    return 90 * (2 - score)


def types(emitted: list[tuple[str, str, dict, str]]) -> list[str]:
    return [kind for kind, _, _, _ in emitted]


def test_success_rate_from_tasks_done():
    scorer, clock = make()
    for ok in [True] * 8 + [False] * 2:
        scorer.fold(ev(clock, "agent.task_done", ok=ok, duration_ms=20))
    vector = scorer.vector("coder")
    assert vector is not None and set(vector) == set(COMPONENTS)
    assert vector["success_rate"] == pytest.approx(9 / 11)
    assert vector["latency"] == vector["stability"] == vector["resource"] == 1.0
    [row] = scorer.view("coder")
    assert row["score"] == pytest.approx(0.4 * 9 / 11 + 0.6, abs=1e-4) and row["tasks"] == 10


def test_the_decayed_counts_halve_with_the_half_life():
    scorer, clock = make()
    scorer.fold(ev(clock, "agent.task_done", ok=False))
    clock.now += 300  # one half-life (score.half_life, 5 min): the failure weighs a half
    scorer.fold(ev(clock, "agent.task_done", ok=True))
    assert scorer.vector("coder")["success_rate"] == pytest.approx((1 + 1) / (1.5 + 1))


def test_stability_from_restarts_and_errors():
    scorer, clock = make()
    scorer.fold(ev(clock, "agent.down", exit_code=1))
    assert scorer.vector("coder")["stability"] == pytest.approx(math.exp(-FRESH / 3)) == pytest.approx(0.25)
    scorer.fold(ev(clock, "agent.error", message="boom"))
    assert scorer.vector("coder")["stability"] == pytest.approx(math.exp(-1.25 * FRESH / 3))
    clock.now += 600  # ten minutes later (score.stability_half_life) it has healed by half
    scorer.fold(ev(clock, "agent.heartbeat"))  # not a score event: nothing changes
    scorer.fold(ev(clock, "agent.error"))
    assert scorer.vector("coder")["stability"] == pytest.approx(math.exp(-(0.625 + 0.25) * FRESH / 3))


def test_stability_heals_with_its_own_configured_half_life():
    scorer, clock = make(stability_half_life="1h")
    scorer.fold(ev(clock, "agent.down", exit_code=1))
    clock.now += 3600  # one stability half-life: the restart weighs a half, whatever score.half_life is
    scorer.fold(ev(clock, "agent.error"))
    assert scorer.vector("coder")["stability"] == pytest.approx(math.exp(-(0.5 + 0.25) * math.log(2) / 3))


def test_resource_while_an_alert_fires_and_after_it_clears():
    scorer, clock = make()
    scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=135.0, threshold=90))
    assert scorer.vector("coder")["resource"] == pytest.approx(0.5)
    scorer.fold(ev(clock, "resource.agent_memory", rss_mb=3584.0))
    assert scorer.vector("coder")["resource"] == pytest.approx(0.25)
    scorer.fold(ev(clock, "resource.agent_memory_cleared", rss_mb=1000.0))
    assert scorer.vector("coder")["resource"] == pytest.approx(0.5)
    scorer.fold(ev(clock, "resource.agent_cpu_cleared", reason="gone"))
    assert scorer.vector("coder")["resource"] == 1.0


def test_the_weighted_score_with_the_default_weights():
    scorer, clock = make()
    scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=135.0))
    scorer.fold(ev(clock, "agent.task_done", ok=False))
    emitted = scorer.fold(ev(clock, "agent.down"))
    expected = 0.4 * 0.5 + 0.2 * 1.0 + 0.2 * math.exp(-FRESH / 3) + 0.2 * 0.5
    assert scorer.view()[0]["score"] == pytest.approx(expected, abs=1e-4)
    assert scorer.view()[0]["weights"] == {"success_rate": 0.4, "latency": 0.2, "stability": 0.2, "resource": 0.2}
    assert emitted == []  # within update_every of the first announcement (the first event's)


def test_hysteresis_degraded_once_recovered_above_the_upper_bound():
    scorer, clock = make(ONLY_RESOURCE, update_delta=1.0)  # only the degraded state is under test
    assert types(scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.5)))) == ["score.updated"]
    clock.now += 1
    [degraded] = scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.29)))
    kind, agent, data, severity = degraded
    assert (kind, agent, severity) == ("score.degraded", "coder", "warning")
    assert data["score"] == pytest.approx(0.29) and data["previous"] == pytest.approx(0.5)
    assert set(data["components"]) == set(COMPONENTS) and data["weights"] == ONLY_RESOURCE
    for score in (0.2, 0.35, 0.31, 0.39, 0.25, 0.4):  # still low, or between the bounds: nothing more
        clock.now += 1
        assert scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(score))) == []
    assert scorer.view()[0]["degraded"] is True
    clock.now += 1
    [recovered] = scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.41)))
    assert recovered[0] == "score.recovered" and recovered[3] == "info"
    assert recovered[2]["score"] == pytest.approx(0.41) and recovered[2]["previous"] == pytest.approx(0.4)
    clock.now += 1
    assert scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.35))) == []  # above 0.3: fine
    assert scorer.view()[0]["degraded"] is False


def test_score_updated_needs_a_move_of_update_delta_at_most_every_update_every():
    scorer, clock = make(ONLY_RESOURCE)
    [first] = scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.9)))
    assert first[0] == "score.updated" and first[2]["score"] == pytest.approx(0.9) and "previous" not in first[2]
    clock.now += 30
    assert scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.86))) == []  # moved 0.04
    assert types(scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.85)))) == ["score.updated"]
    clock.now += 5
    assert scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.6))) == []  # 5 s after the last one
    clock.now += 5
    [later] = scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.6)))
    assert later[0] == "score.updated" and later[2]["score"] == pytest.approx(0.6)


def test_weights_are_asked_when_the_score_is_computed():
    tuned = {"success_rate": 0.4, "latency": 0.2, "stability": 0.2, "resource": 0.2}
    scorer, clock = make(tuned)
    scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=180.0))  # resource 0
    assert scorer.view()[0]["score"] == pytest.approx(0.8)
    tuned.update(resource=0.4, success_rate=0.2)  # a tuning
    assert scorer.view()[0]["score"] == pytest.approx(0.6) and scorer.view()[0]["weights"] == tuned
    clock.now += 60
    [updated] = scorer.fold(ev(clock, "agent.task_done", ok=True, duration_ms=5))
    assert updated[2]["weights"] == tuned


def test_an_undeclared_agent_is_scored_from_its_events_alone():
    scorer, clock = make()
    for i in range(1000):  # ten hours of fast tasks: its own baseline
        clock.now = T0 + i * 36
        scorer.fold(ev(clock, "agent.task_done", agent="stranger", ok=True, duration_ms=100))
    assert scorer.vector("stranger")["latency"] == 1.0
    for i in range(30):  # then half an hour of slow ones: the recent p95 is four times the learned one
        clock.now += 60
        scorer.fold(ev(clock, "agent.task_done", agent="stranger", ok=True, duration_ms=400))
    [row] = scorer.view("stranger")
    assert row["components"]["latency"] == 0.0 and row["tasks"] == 1030
    assert row["updated_at"] == format_ts(clock.now)
    assert scorer.view("nobody") == [] and scorer.vector("nobody") is None


def test_latency_is_full_until_five_tasks_then_against_the_configured_target():
    scorer, clock = make(agents={"coder": {"latency_target_ms": 200}})
    for _ in range(4):
        scorer.fold(ev(clock, "agent.task_done", ok=True, duration_ms=5000))
    assert scorer.vector("coder")["latency"] == 1.0
    scorer.fold(ev(clock, "agent.task_done", ok=True, duration_ms=5000))
    assert scorer.vector("coder")["latency"] == 0.0
    scorer.fold(ev(clock, "agent.task_done", ok=True, duration_ms=5, agent="analyst"))
    for _ in range(200):  # fast again: the p95 is back under the target
        clock.now += 10
        scorer.fold(ev(clock, "agent.task_done", ok=True, duration_ms=50))
    assert scorer.vector("coder")["latency"] == 1.0


def test_the_learned_target_does_not_learn_while_degraded():
    def run(degrade: bool) -> float:
        scorer, clock = make(ONLY_RESOURCE)  # the latency component is computed whatever its weight
        for _ in range(100):
            clock.now += 1
            scorer.fold(ev(clock, "agent.task_done", ok=True, duration_ms=100))
        if degrade:
            scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=500.0))
            assert scorer.view()[0]["degraded"]
        for _ in range(200):
            clock.now += 1
            scorer.fold(ev(clock, "agent.task_done", duration_ms=1000))
        return scorer.vector("coder")["latency"]

    assert run(degrade=False) > 0.99  # slow became its normal
    assert run(degrade=True) == 0.0  # still measured against what it was before the degradation


def test_rebuild_then_live_gives_the_same_as_live_all_along():
    rng = random.Random(3)
    clock = Clock()
    history = []
    for _ in range(3000):  # three hours over three agents, of every type the scorer reads, and others
        clock.now += rng.uniform(0, 7)
        kind = rng.choice([*READS, "agent.heartbeat", "agent.task_done", "agent.task_done"])
        history.append(ev(clock, kind, agent=rng.choice(["a", "b", "c"]), ok=rng.random() < 0.7,
                          duration_ms=rng.lognormvariate(5, 1), cpu_pct=rng.uniform(90, 200),
                          rss_mb=rng.uniform(2048, 5000)))
    live, _ = make()
    later, _ = make()
    live_emitted = [live.fold(event) for event in history]  # the clocks stand still: ts decides
    later.rebuild(history[:2000])
    assert later.view() != live.view()
    later_emitted = [later.fold(event) for event in history[2000:]]
    assert later_emitted == live_emitted[2000:]
    assert any(later_emitted) and later.view() == live.view()
    assert {row["agent"] for row in live.view()} == {"a", "b", "c"}


def test_rebuild_restores_the_degraded_state_without_emitting():
    clock = Clock()
    history = [ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.2))]
    scorer, clock = make(ONLY_RESOURCE)
    scorer.rebuild(history)
    assert scorer.view()[0]["degraded"] is True
    clock.now += 60
    assert scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.22))) == []  # no second degraded
    clock.now += 60
    assert "score.recovered" in types(scorer.fold(ev(clock, "resource.agent_cpu_cleared")))


def test_the_trend_is_one_point_a_minute_over_the_last_hour():
    scorer, clock = make(ONLY_RESOURCE)
    for i in range(360):  # two hours, an event every 20 s
        clock.now = T0 + i * 20
        scorer.fold(ev(clock, "resource.agent_cpu", cpu_pct=cpu_for(0.5 + (i % 3) / 10)))
    trend = scorer.view()[0]["trend"]
    assert 59 <= len(trend) <= 60
    assert trend[-1] == [format_ts(T0 + 119 * 60), pytest.approx(0.7)]  # the minute's last score
    minutes = [point[0] for point in trend]
    assert minutes == sorted(set(minutes))
    clock.now = T0 + 120 * 60 + 1800
    assert len(scorer.view()[0]["trend"]) == 30  # the older half has left the last hour
    clock.now += 3600
    assert scorer.view()[0]["trend"] == []


def test_max_agents_forgets_the_least_recently_heard():
    scorer, clock = make(max_agents=3)
    for agent in ("a", "b", "c", "a", "d", "e"):
        clock.now += 1
        scorer.fold(ev(clock, "agent.error", agent=agent))
    assert [row["agent"] for row in scorer.view()] == ["a", "d", "e"]
    assert scorer.evicted == 2 and scorer.vector("b") is None


@pytest.mark.parametrize("event", [
    {"type": "agent.task_done", "agent": "coder"},
    {"type": "agent.task_done", "agent": "coder", "data": None},
    {"type": "agent.task_done", "agent": "coder", "data": ["ok"]},
    {"type": "agent.task_done", "agent": "coder", "data": {"ok": "yes", "duration_ms": "12"}},
    {"type": "agent.task_done", "agent": "coder", "data": {"ok": 1, "duration_ms": -5}},
    {"type": "agent.task_done", "agent": "coder", "data": {"duration_ms": float("nan")}},
    {"type": "agent.task_done", "agent": "coder", "data": {"duration_ms": float("inf")}},
    {"type": "agent.task_done", "agent": "coder", "data": {"duration_ms": True}},
    {"type": "agent.task_done", "agent": "coder", "data": {"duration_ms": 10 ** 400}},
    {"type": "resource.agent_cpu", "agent": "coder", "data": {"cpu_pct": "a lot"}},
    {"type": "resource.agent_memory", "agent": "coder", "data": {}},
    {"type": "agent.down", "agent": "coder", "ts": "yesterday"},
    {"type": "agent.down", "agent": "coder", "ts": 12},
    {"type": "agent.down", "agent": 7},
    {"type": "agent.down", "agent": ""},
    {"type": "agent.down"},
    {"type": None, "agent": "coder"},
    {"agent": "coder"},
    {"type": "score.degraded", "agent": "coder", "data": {"score": 0.1}},
    {"type": "agent.heartbeat", "agent": "coder"},
    "not an event",
    None,
])
def test_odd_events_never_raise_and_never_hurt(event):
    scorer, _ = make()
    emitted = scorer.fold(event)
    assert set(types(emitted)) <= {"score.updated"}
    for row in scorer.view():
        assert row["components"]["latency"] == row["components"]["success_rate"] == 1.0
        assert row["components"]["resource"] == 1.0
        assert row["score"] == 1.0 or event["type"] == "agent.down"


def test_an_event_without_ts_takes_the_clock():
    scorer, clock = make()
    clock.now = T0 + 12.5
    scorer.fold({"type": "agent.task_done", "agent": "coder", "data": {"ok": True}})
    assert scorer.view()[0]["updated_at"] == format_ts(T0 + 12.5)


def test_a_crash_degraded_agent_that_comes_back_recovers_on_its_heartbeats_without_new_scored_events():
    only_stability = {"success_rate": 0.0, "latency": 0.0, "stability": 1.0, "resource": 0.0}
    scorer, clock = make(only_stability, update_delta=1.0)
    assert scorer.fold(ev(clock, "agent.heartbeat", "ghost")) == []  # heartbeats alone never create an agent
    emitted = []
    for _ in range(3):  # a crash loop
        clock.now += 20
        emitted += scorer.fold(ev(clock, "agent.down", signal="SIGKILL"))
    assert scorer.view()[0]["degraded"] is True and "score.degraded" in types(emitted)
    clock.now += 5
    assert scorer.fold(ev(clock, "agent.started")) == []  # restarted: still far below, as time has not passed
    recovered = []
    while not recovered and clock.now < T0 + 3600:
        clock.now += 30
        recovered = [e for e in scorer.fold(ev(clock, "agent.heartbeat")) if e[0] == "score.recovered"]
    assert recovered and recovered[0][2]["score"] > 0.4
    assert clock.now - T0 < 40 * 60  # within a few stability half-lives (10 min)
    assert scorer.view()[0]["degraded"] is False and "ghost" not in scorer.names()
