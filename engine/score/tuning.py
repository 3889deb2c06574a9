"""Weight tuning from labels: pure functions, no I/O (docs/score.md, "Labels and tuning").

A label says whether an agent was really degraded at a moment, with the four components the score had
then. Components do not depend on the weights, so a label stays valid whatever weights are tried: tuning
looks for the weights under which "weighted score < threshold" agrees best (F1) with the labels, without
moving any weight more than `max_step` from where it is, below `floor`, or off a sum of 1.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TEMPERATURE = 0.05  # width of the sigmoid around the threshold, in score units
_MIN_GAIN = 1e-9  # a move must raise the surrogate by more than this: ties stay with the current weights
_REFINES = 6  # step sizes tried: max_step, max_step/2, ... max_step/32


@dataclass(frozen=True, slots=True)
class Label:
    """One labelled moment: was the agent really degraded then?"""

    agent: str
    at: float
    label: bool
    components: Mapping[str, float]
    source: str = "operator"
    event: str | None = None


@dataclass(frozen=True, slots=True)
class AgentTuning:
    """One agent's outcome (or the fleet's, agent "*"): `scope` is own, fleet or unchanged."""

    agent: str
    before: dict[str, float]
    after: dict[str, float]
    reason: str
    scope: str
    labels: int
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]


@dataclass(frozen=True, slots=True)
class TuneResult:
    agents: dict[str, AgentTuning]
    fleet: AgentTuning


def score_of(weights: Mapping[str, float], components: Mapping[str, float]) -> float:
    """Σ weightᵢ × componentᵢ; a component the label lacks counts as healthy (1)."""
    return sum(w * components.get(name, 1.0) for name, w in weights.items())


def metrics(weights: Mapping[str, float], labels: Sequence[Label], threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of "score < threshold" against the labels, and their number `n`.
    An empty denominator gives 0 (no alarm raised has no precision to speak of)."""
    tp = fp = fn = 0
    for label in labels:
        alarm = score_of(weights, label.components) < threshold
        tp += alarm and label.label
        fp += alarm and not label.label
        fn += label.label and not alarm
    return {"precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0, "n": float(len(labels))}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class _Surrogate:
    """Soft F1 = 2·TP / (2·TP + FP + FN) where an alarm counts σ((threshold − score) / TEMPERATURE) instead of
    0 or 1, so that it changes smoothly with the weights. With no true label F1 means nothing: it is then the
    soft share of false labels left quiet (fewer false alarms is all there is to gain)."""

    def __init__(self, names: Sequence[str], labels: Sequence[Label], threshold: float) -> None:
        self.names = tuple(names)
        self.rows = [(tuple(label.components.get(n, 1.0) for n in self.names), label.label) for label in labels]
        self.threshold = threshold
        self.positives = sum(1 for _, truth in self.rows if truth)

    def __call__(self, weights: Sequence[float]) -> float:
        tp = fp = 0.0
        for row, truth in self.rows:
            alarm = _sigmoid((self.threshold - sum(w * c for w, c in zip(weights, row))) / TEMPERATURE)
            if truth:
                tp += alarm
            else:
                fp += alarm
        if not self.positives:
            return 1.0 - fp / len(self.rows) if self.rows else 0.0
        return 2 * tp / (tp + self.positives + fp)  # 2TP + FN = TP + positives


def project(weights: Mapping[str, float], lo: Mapping[str, float], hi: Mapping[str, float]) -> dict[str, float]:
    """The point of {lo ≤ w ≤ hi, Σw = 1} nearest `weights` (Euclidean): w = clip(weights − λ), λ by bisection.
    The caller makes sure Σlo ≤ 1 ≤ Σhi."""
    def at(shift: float) -> dict[str, float]:
        return {k: min(hi[k], max(lo[k], v - shift)) for k, v in weights.items()}

    # at `high` every weight sits at lo (Σlo ≤ 1), at `low` at hi (Σhi ≥ 1): whatever the input's scale
    low, high = min(weights.values()) - max(hi.values()), max(weights.values()) - min(lo.values())
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if sum(at(mid).values()) > 1 else (low, mid)
    out = at((low + high) / 2)
    top = max(out, key=lambda k: (hi[k] - out[k], k))  # absorb the float residue where there is room
    out[top] += 1.0 - sum(out.values())
    return out


def bounds(current: Mapping[str, float], *, max_step: float, floor: float) -> tuple[dict[str, float], dict[str, float]]:
    """The box a fit may search: each weight within `max_step` of its current value and ≥ floor."""
    return ({k: max(floor, v - max_step) for k, v in current.items()},
            {k: min(1.0, v + max_step) for k, v in current.items()})


def feasible(current: Mapping[str, float], floor: float) -> dict[str, float]:
    """`current` itself when it keeps the floor and sums to 1, else its projection onto those rules: the
    step bound counts from there (a hand-edited weights file cannot make the box empty)."""
    if not current:
        return {}
    floor = min(floor, 1.0 / len(current))
    ok = all(v >= floor for v in current.values()) and abs(sum(current.values()) - 1) < 1e-9
    return dict(current) if ok else project(current, {k: floor for k in current}, {k: 1.0 for k in current})


def fit(current: Mapping[str, float], labels: Sequence[Label], *, threshold: float, max_step: float,
        floor: float) -> dict[str, float]:
    """The weights within the box |w − current| ≤ max_step, w ≥ floor, Σw = 1 that best fit the labels.

    Method (deterministic): steepest ascent of the soft F1 (`_Surrogate`) by pair moves — weight i gains d,
    weight j loses d, which keeps the sum — starting from the current weights. At each step size d (max_step,
    then halved down to max_step/32) every ordered pair is tried, clipped to the box; the best move is taken
    while it gains more than 1e-9, so ties keep the current weights and pairs are tried in a fixed order.
    Last, the fitted weights are kept only when their exact F1 on the labels is not below the current one's.
    """
    start = feasible(current, floor)
    if not labels or not start:
        return start
    lo, hi = bounds(start, max_step=max_step, floor=floor)
    names = list(start)
    objective = _Surrogate(names, labels, threshold)
    w = [start[n] for n in names]
    lows, highs = [lo[n] for n in names], [hi[n] for n in names]
    best = objective(w)
    for level in range(_REFINES):
        step = max_step / 2 ** level
        while True:
            move = None
            for i in range(len(w)):
                for j in range(len(w)):
                    d = min(step, highs[i] - w[i], w[j] - lows[j]) if i != j else 0.0
                    if d <= 1e-12:
                        continue
                    trial = list(w)
                    trial[i] += d
                    trial[j] -= d
                    value = objective(trial)
                    if value > best + _MIN_GAIN and (move is None or value > move[0]):
                        move = (value, trial)
            if move is None:
                break
            best, w = move
    fitted = dict(zip(names, w))
    if metrics(fitted, labels, threshold)["f1"] < metrics(start, labels, threshold)["f1"]:
        return start
    return fitted


def tune(weights: Mapping[str, Mapping[str, float]], fleet: Mapping[str, float], labels: Sequence[Label], *,
         threshold: float, max_step: float, floor: float, min_labels: int) -> TuneResult:
    """One tuning run. `weights`: each agent's current weights (an agent with labels but no entry starts from
    `fleet`). An agent with ≥ min_labels labels gets its own fit; one with fewer takes the fleet fit (all
    labels, bounded from `fleet`, then brought within the agent's own box) when the pool has ≥ min_labels;
    otherwise it stays unchanged with the reason."""
    mine: dict[str, list[Label]] = {}
    for label in labels:
        mine.setdefault(label.agent, []).append(label)
    fleet_before = feasible(fleet, floor)
    pool = len(labels)
    if pool >= min_labels:
        fleet_after = fit(fleet_before, labels, threshold=threshold, max_step=max_step, floor=floor)
        fleet_reason, fleet_scope = f"fitted on {pool} labels", "own"
    else:
        fleet_after, fleet_reason, fleet_scope = dict(fleet_before), f"{pool} labels, {min_labels} needed", "unchanged"
    fleet_result = AgentTuning("*", fleet_before, fleet_after, fleet_reason, fleet_scope, pool,
                               metrics(fleet_before, labels, threshold), metrics(fleet_after, labels, threshold))
    out: dict[str, AgentTuning] = {}
    for agent in sorted(set(weights) | set(mine)):
        own = mine.get(agent, [])
        before = feasible(weights.get(agent, fleet), floor)
        if len(own) >= min_labels:
            after = fit(before, own, threshold=threshold, max_step=max_step, floor=floor)
            reason, scope = f"fitted on {len(own)} labels", "own"
        elif fleet_scope == "own":
            after = project(fleet_after, *bounds(before, max_step=max_step, floor=floor))
            reason, scope = f"{len(own)} labels, {min_labels} needed: fleet weights ({fleet_reason})", "fleet"
        else:
            after = dict(before)
            reason, scope = f"{len(own)} labels, {min_labels} needed (fleet: {fleet_reason})", "unchanged"
        out[agent] = AgentTuning(agent, before, after, reason, scope, len(own), metrics(before, own, threshold),
                                 metrics(after, own, threshold))
    return TuneResult(out, fleet_result)
