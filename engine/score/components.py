"""The four score components of docs/score.md as pure functions of the windows' numbers, each in [0, 1].

Kept apart from the scorer so that tuning, tests and the docs' table can be checked against one formula.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

COMPONENTS = ("success_rate", "latency", "stability", "resource")
ERROR_WEIGHT = 0.25  # an agent.error counts as a quarter of a restart
STABILITY_SCALE = 3.0  # restarts an hour that bring stability to 1/e


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return low if value < low else high if value > high else value


def success_rate(ok: float, done: float) -> float:
    """`(ok + 1) / (done + 1)`: a prior of one success, so one failure on a fresh agent does not zero it."""
    return clamp((max(ok, 0.0) + 1.0) / (max(done, 0.0) + 1.0))


def latency(p95_ms: float | None, target_ms: float | None) -> float:
    """`clamp(2 − p95 / target)`: full marks at or under the target, 0 at twice it; 1 without data."""
    if p95_ms is None or target_ms is None or target_ms <= 0:
        return 1.0
    return clamp(2.0 - p95_ms / target_ms)


def stability(restarts_per_hour: float) -> float:
    """`exp(−r / 3)`: one restart an hour gives 0.72, three give 0.37."""
    return math.exp(-max(restarts_per_hour, 0.0) / STABILITY_SCALE)


def pressure(value: float | None, high: float) -> float:
    """`clamp(2 − value / high)` while an alert fires (`value` set); 1 when it does not."""
    if value is None or high <= 0:
        return 1.0
    return clamp(2.0 - value / high)


def resource(cpu_pct: float | None, rss_mb: float | None, *, cpu_high: float, rss_high: float) -> float:
    """The lower of the CPU and memory pressures (None: that alert is not firing)."""
    return min(pressure(cpu_pct, cpu_high), pressure(rss_mb, rss_high))


def weighted(weights: Mapping[str, float], components: Mapping[str, float]) -> float:
    """Σ weightᵢ × componentᵢ over COMPONENTS (a missing weight counts 0), clamped to [0, 1]."""
    return clamp(sum(float(weights.get(name, 0.0)) * components[name] for name in COMPONENTS))
