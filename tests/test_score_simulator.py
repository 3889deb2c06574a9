"""The score simulator (engine/score/simulator.py): seeded histories through the real Scorer; weights tuned on
some seeds beat the seed's fixed weights on others, in every scenario."""
from __future__ import annotations

import dataclasses
import random

import pytest

from engine import config
from engine.events import parse_ts
from engine.score.scorer import READS
from engine.score.simulator import (
    HEALED_WITHIN_S,
    SCENARIOS,
    Replay,
    SimConfig,
    evaluate,
    generate,
    label,
    train,
)

SCORE = config.load_embedded().raw["score"]
SMALL = SimConfig(agents=3, days=8, task_every_s=120, faults_per_day=4)  # 8 daily tuning rounds
TEST = dataclasses.replace(SMALL, days=3)
CAUSE = {"latency": {"latency"}, "resource": {"resource"}, "crash": {"stability"},
         "flapping": {"success_rate", "stability"}}


def test_same_seed_same_history_and_real_events() -> None:
    one, two = generate("crash", 7, TEST), generate("crash", 7, TEST)
    assert one.events == two.events and one.faults == two.faults and one.noise == two.noise
    other = generate("crash", 8, TEST)
    assert other.events != one.events
    assert one.faults and one.noise
    assert [parse_ts(e["ts"]).timestamp() for e in one.events] == pytest.approx(one.times, abs=1e-3)
    assert one.times == sorted(one.times)
    kinds = {e["type"] for e in one.events}
    assert {"agent.task_done", "agent.down", "agent.error", "resource.agent_cpu"} <= kinds
    assert kinds <= set(READS) | {"agent.started"}
    assert len({e["id"] for e in one.events}) == len(one.events)


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        generate("nope", 1, TEST)


def test_operator_labels_follow_the_ground_truth() -> None:
    exact = dataclasses.replace(TEST, coverage=1.0, label_noise=0.0)
    history = generate("latency", 3, exact)
    weights = {"success_rate": 0.05, "latency": 0.8, "stability": 0.05, "resource": 0.1}
    replay = Replay(history, SCORE, {agent: weights for agent in history.agents})
    replay.play(history.end)
    labels = label(replay, history.start, history.end, random.Random(1))
    assert any(x.label for x in labels) and any(not x.label for x in labels)
    for x in labels:
        inside = any(f.agent == x.agent and f.start <= x.at <= f.end + exact.grace_s for f in history.faults)
        assert x.label == inside, x
        assert set(x.components) == {"success_rate", "latency", "stability", "resource"}


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple]:
    out = {}
    for scenario in SCENARIOS:
        result = train([generate(scenario, 1, SMALL)], SCORE, round_days=1)
        test = generate(scenario, 2, TEST)  # another seed: weeks the tuning never saw
        out[scenario] = result, evaluate(test, {}, SCORE), evaluate(test, result.weights, SCORE)
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_tuned_weights_beat_the_fixed_ones_on_unseen_seeds(trained: dict[str, tuple], scenario: str) -> None:
    result, fixed, tuned = trained[scenario]
    assert result.rounds == 8 and result.labels >= 10
    assert tuned.f1 > fixed.f1, (fixed, tuned)
    assert tuned.recall > 0 and tuned.precision >= 0.8
    heaviest = max(result.fleet, key=result.fleet.get)
    assert heaviest in CAUSE[scenario], result.fleet  # it learned what the real faults show through
    for weights in result.weights.values():
        assert sum(weights.values()) == pytest.approx(1.0) and min(weights.values()) >= 0.05 - 1e-9


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_healing_with_p0_never_worse_than_without(trained: dict[str, tuple], scenario: str) -> None:
    _, fixed, tuned = trained[scenario]
    assert fixed.healed_off_share == tuned.healed_off_share  # the same faults, healing by themselves
    assert tuned.healed_on_share >= tuned.healed_off_share
    if tuned.recall == 0:
        assert tuned.healed_on_share == tuned.healed_off_share


def test_healed_off_is_the_share_of_short_faults() -> None:
    history = generate("resource", 4, TEST)
    result = evaluate(history, {}, SCORE)
    counted = [f for f in history.faults if f.start >= history.start + TEST.warmup_s]
    assert result.faults == len(counted)
    assert result.healed_off_share == sum(f.duration <= HEALED_WITHIN_S for f in counted) / len(counted)
    pooled = result + result  # figures from several seeds pool their counts
    assert pooled.faults == 2 * result.faults and pooled.f1 == pytest.approx(result.f1)
