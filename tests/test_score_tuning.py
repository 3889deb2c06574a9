"""Weight tuning (engine/score/tuning.py): bounds, refusals, the fleet fallback, determinism."""
from __future__ import annotations

import random

import pytest

from engine.score.tuning import Label, fit, metrics, tune

SEED = {"success_rate": 0.4, "latency": 0.2, "stability": 0.2, "resource": 0.2}
BOUNDS = {"threshold": 0.3, "max_step": 0.1, "floor": 0.05}


def latency_labels(agent: str, count: int, seed: int = 1) -> list[Label]:
    """Real degradations show only in latency; resource dips are harmless noise."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        real = i % 2 == 0
        out.append(Label(agent, float(i), real, {
            "success_rate": rng.uniform(0.6, 1.0), "latency": rng.uniform(0.0, 0.1) if real else rng.uniform(0.8, 1.0),
            "stability": 1.0, "resource": rng.uniform(0.0, 0.3) if not real else 1.0}))
    return out


def assert_within(before: dict[str, float], after: dict[str, float], max_step: float, floor: float) -> None:
    assert set(after) == set(before)
    assert sum(after.values()) == pytest.approx(1.0, abs=1e-9)
    for name, weight in after.items():
        assert weight >= floor - 1e-9, (name, weight)
        assert abs(weight - before[name]) <= max_step + 1e-9, (name, weight, before[name])


def test_fit_moves_toward_the_real_cause_within_the_bounds() -> None:
    labels = latency_labels("a", 60)
    after = fit(SEED, labels, **BOUNDS)
    assert_within(SEED, after, 0.1, 0.05)
    assert after["latency"] == pytest.approx(0.3)  # the real cause gains the whole step
    assert after["resource"] < SEED["resource"]  # the noise loses weight
    assert metrics(after, labels, 0.3)["f1"] >= metrics(SEED, labels, 0.3)["f1"]


@pytest.mark.parametrize("max_step,floor", [(0.1, 0.05), (0.02, 0.05), (0.5, 0.1), (0.3, 0.2)])
def test_bounds_hold_for_any_labels(max_step: float, floor: float) -> None:
    rng = random.Random(max_step)
    for _ in range(20):
        labels = [Label("a", 0.0, rng.random() < 0.5, {k: rng.random() for k in SEED}) for _ in range(30)]
        raw = [rng.uniform(floor, 1) for _ in SEED]
        current = {k: floor + (1 - floor * 4) * v / sum(raw) for k, v in zip(SEED, raw)}
        assert_within(current, fit(current, labels, threshold=0.3, max_step=max_step, floor=floor), max_step, floor)


def test_repeated_runs_walk_one_step_a_week() -> None:
    labels = latency_labels("a", 60)
    weights = dict(SEED)
    for _ in range(8):
        after = fit(weights, labels, **BOUNDS)
        assert_within(weights, after, 0.1, 0.05)
        weights = after
    assert weights["latency"] > 0.7  # far past one step, and a latency-only fault now degrades the score
    assert metrics(weights, labels, 0.3)["f1"] > 0.9


def test_weights_off_the_rules_are_brought_back_first() -> None:
    broken = {"success_rate": 0.9, "latency": 0.3, "stability": 0.0, "resource": 0.0}
    after = fit(broken, latency_labels("a", 20), **BOUNDS)
    assert sum(after.values()) == pytest.approx(1.0) and min(after.values()) >= 0.05 - 1e-9


def test_deterministic() -> None:
    labels = latency_labels("a", 40)
    assert fit(SEED, labels, **BOUNDS) == fit(SEED, list(labels), **BOUNDS)
    one = tune({"a": SEED}, SEED, labels, min_labels=10, **BOUNDS)
    two = tune({"a": SEED}, SEED, labels, min_labels=10, **BOUNDS)
    assert one == two


def test_no_signal_keeps_the_current_weights() -> None:
    # every label alike: nothing to learn, ties go to the current weights
    labels = [Label("a", float(i), i % 2 == 0, {k: 1.0 for k in SEED}) for i in range(20)]
    assert fit(SEED, labels, **BOUNDS) == SEED


def test_too_few_labels_refused_with_the_reason() -> None:
    result = tune({"a": SEED}, SEED, latency_labels("a", 3), min_labels=10, **BOUNDS)
    tuned = result.agents["a"]
    assert tuned.after == tuned.before == SEED
    assert tuned.scope == "unchanged" and tuned.reason.startswith("3 labels, 10 needed")
    assert result.fleet.reason == "3 labels, 10 needed"


def test_agents_with_few_labels_take_the_fleet_fit() -> None:
    labels = latency_labels("busy", 30) + latency_labels("quiet", 3, seed=2)
    result = tune({"busy": SEED, "quiet": SEED, "idle": SEED}, SEED, labels, min_labels=10, **BOUNDS)
    assert result.agents["busy"].scope == "own" and result.agents["busy"].reason == "fitted on 30 labels"
    fleet_after = result.fleet.after
    assert result.fleet.labels == 33 and fleet_after["latency"] > SEED["latency"]
    for name in ("quiet", "idle"):
        tuned = result.agents[name]
        assert tuned.scope == "fleet" and tuned.reason.startswith(f"{tuned.labels} labels, 10 needed: fleet")
        assert tuned.after == pytest.approx(fleet_after)
    assert result.agents["quiet"].metrics_before["n"] == 3


def test_fleet_fit_is_brought_within_an_agents_own_box() -> None:
    own = {"success_rate": 0.7, "latency": 0.1, "stability": 0.1, "resource": 0.1}
    result = tune({"odd": own}, SEED, latency_labels("other", 30), min_labels=10, **BOUNDS)
    assert_within(own, result.agents["odd"].after, 0.1, 0.05)


def test_metrics_and_before_after() -> None:
    labels = latency_labels("a", 20)
    result = tune({"a": SEED}, SEED, labels, min_labels=10, **BOUNDS)
    tuned = result.agents["a"]
    assert tuned.metrics_before == metrics(SEED, labels, 0.3)
    assert tuned.metrics_after == metrics(tuned.after, labels, 0.3)
    assert set(tuned.metrics_after) == {"precision", "recall", "f1", "n"}
    assert metrics(SEED, [], 0.3) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 0.0}
    alarm = {"success_rate": 0.0, "latency": 0.0, "stability": 0.0, "resource": 1.0}
    quiet = {k: 1.0 for k in SEED}
    hand = [Label("a", 0, True, alarm), Label("a", 1, False, alarm), Label("a", 2, True, quiet)]
    assert metrics(SEED, hand, 0.3) == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "n": 3.0}


def test_empty_input_never_raises() -> None:
    assert fit({}, [], **BOUNDS) == {}
    assert fit(SEED, [], **BOUNDS) == SEED
    result = tune({}, SEED, [], min_labels=10, **BOUNDS)
    assert result.agents == {} and result.fleet.after == SEED and result.fleet.scope == "unchanged"
    assert tune({}, {}, [], min_labels=1, **BOUNDS).fleet.after == {}


def test_weights_of_any_scale_are_brought_back_within_the_rules():
    from engine.score.tuning import feasible

    for raw in ({"success_rate": 40, "latency": 20, "stability": 20, "resource": 20},
                {"success_rate": -3, "latency": 0, "stability": 0, "resource": 9}):
        fixed = feasible(raw, 0.05)
        assert all(v >= 0.05 - 1e-12 for v in fixed.values()) and abs(sum(fixed.values()) - 1) < 1e-9, fixed
