"""The score's windows and component formulas on hand-computed cases (docs/score.md)."""
from __future__ import annotations

import math
import random

import pytest

from engine.score.components import COMPONENTS, latency, pressure, resource, stability, success_rate, weighted
from engine.score.windows import BUCKETS, HIGH_MS, RATIO, DecayedCount, DecayedHistogram, bucket_of

T0 = 1_800_000_000.0


def test_success_rate_has_a_prior_of_one_success():
    assert success_rate(8, 10) == pytest.approx(9 / 11)
    assert success_rate(0, 1) == pytest.approx(0.5)  # one failure on a fresh agent halves it, no more
    assert success_rate(0, 0) == 1.0
    assert success_rate(-3, -1) == 1.0  # nonsense never leaves [0, 1]


def test_latency_is_full_at_the_target_and_zero_at_twice_it():
    assert latency(100, 100) == 1.0
    assert latency(50, 100) == 1.0
    assert latency(150, 100) == pytest.approx(0.5)
    assert latency(250, 100) == 0.0
    assert latency(None, 100) == latency(100, None) == latency(100, 0) == 1.0


def test_stability_for_one_and_three_restarts_an_hour():
    assert stability(0) == 1.0
    assert stability(1) == pytest.approx(math.exp(-1 / 3)) and round(stability(1), 2) == 0.72
    assert round(stability(3), 2) == 0.37


def test_resource_is_the_lower_pressure_of_a_firing_alert():
    assert pressure(None, 90) == 1.0
    assert pressure(135, 90) == pytest.approx(0.5)
    assert resource(135, None, cpu_high=90, rss_high=2048) == pytest.approx(0.5)
    assert resource(99, 3072, cpu_high=90, rss_high=2048) == pytest.approx(0.5)  # memory is the worse
    assert resource(None, None, cpu_high=90, rss_high=2048) == 1.0
    assert resource(500, None, cpu_high=90, rss_high=2048) == 0.0


def test_weighted_sum_of_the_components():
    weights = {"success_rate": 0.4, "latency": 0.2, "stability": 0.2, "resource": 0.2}
    components = {"success_rate": 0.5, "latency": 1.0, "stability": 0.25, "resource": 0.0}
    assert weighted(weights, components) == pytest.approx(0.2 + 0.2 + 0.05)
    assert weighted(weights, dict.fromkeys(COMPONENTS, 1.0)) == pytest.approx(1.0)
    assert weighted({"latency": 1.0}, components) == 1.0  # a missing weight counts 0


def test_a_decayed_count_halves_after_one_half_life():
    count = DecayedCount(1800)
    count.add(8, T0)
    assert count.value(T0) == 8
    assert count.value(T0 + 1800) == pytest.approx(4)
    assert count.value(T0 + 3600) == pytest.approx(2)
    count.add(1, T0 + 1800)
    assert count.value(T0 + 1800) == pytest.approx(5)
    count.add(1, T0)  # a late event is added without decaying the rest, and time does not run back
    assert count.value(T0 + 1800) == pytest.approx(6)


def test_a_decayed_rate_reads_a_steady_stream_per_unit_of_time():
    count = DecayedCount(3600)
    samples = []
    for hour in range(48):  # one event an hour for two days, then sample the last hour every minute
        count.add(1, T0 + hour * 3600)
    for minute in range(60):
        samples.append(count.rate(T0 + 47 * 3600 + minute * 60) * 3600)
    assert sum(samples) / len(samples) == pytest.approx(1.0, rel=0.02)
    assert round(stability(sum(samples) / len(samples)), 2) == 0.72


def test_buckets_span_a_millisecond_to_an_hour():
    assert bucket_of(0) == 0 and bucket_of(1) == 0
    assert bucket_of(1.01) == 1
    assert bucket_of(HIGH_MS) == BUCKETS - 2 and bucket_of(HIGH_MS * 2) == BUCKETS - 1
    assert 24 <= BUCKETS <= 32


def test_p95_of_a_known_distribution_is_within_a_bucket_width():
    histogram = DecayedHistogram(1800)
    values = list(range(1, 1001))
    random.Random(7).shuffle(values)
    for value in values:
        histogram.add(value, T0)
    p95 = histogram.quantile(0.95, T0)
    assert 950 / RATIO <= p95 <= 950 * RATIO
    assert histogram.total(T0) == pytest.approx(1000)
    assert histogram.total(T0 + 1800) == pytest.approx(500)
    assert histogram.quantile(0.95, T0 + 1800) == pytest.approx(p95)  # decay shrinks every bucket alike


def test_a_histogram_forgets_the_old_distribution():
    histogram = DecayedHistogram(60)
    for i in range(100):
        histogram.add(10, T0 + i)
    for i in range(100):  # ten half-lives later, slow tasks: the old fast ones weigh about 1/1000 each
        histogram.add(1000, T0 + 700 + i)
    assert 1000 / RATIO <= histogram.quantile(0.5, T0 + 800) <= 1000 * RATIO
    assert histogram.quantile(0.01, T0 + 800) >= 1000 / RATIO


def test_a_histogram_keeps_its_scale_over_a_long_run():
    histogram = DecayedHistogram(1)
    for second in range(0, 10_000, 10):  # thousands of half-lives: the landmark must move, never overflow
        histogram.add(100, T0 + second)
    assert math.isfinite(histogram.total(T0 + 10_000))
    assert 100 / RATIO <= histogram.quantile(0.95, T0 + 10_000) <= 100 * RATIO


def test_an_empty_histogram_has_no_quantile():
    histogram = DecayedHistogram(60)
    assert histogram.quantile(0.95, T0) is None and histogram.total(T0) == 0
    histogram.add(5, T0)
    assert histogram.quantile(0.95, T0 + 60 * 100) is None  # decayed to nothing
    assert DecayedHistogram(60).quantile(1.0, T0) is None
    histogram.add(HIGH_MS * 10, T0)
    assert histogram.quantile(1.0, T0) == HIGH_MS


def test_windows_need_a_positive_half_life():
    with pytest.raises(ValueError):
        DecayedCount(0)
    with pytest.raises(ValueError):
        DecayedHistogram(-1)
