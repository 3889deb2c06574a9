"""Exponentially decayed streaming windows: O(1) per update and a fixed number of floats, whatever the rate.

A sliding window would keep every event of the last half hour (unbounded under a flood); a decayed one keeps
a sum in which an event weighs `0.5 ** (age / half_life)`. The decay is applied lazily, only when the window
is touched, so an idle agent costs nothing. Times are epoch seconds from event timestamps: an event older than
the window's last update is added without decaying the rest (a count) or at its own decayed weight (a
histogram), never making time run backwards.
"""
from __future__ import annotations

import math
from array import array

LOW_MS = 1.0  # bucket 0 holds everything at or under this
HIGH_MS = 3_600_000.0  # the last bucket holds everything over this (an hour)
BUCKETS = 32  # 0: <= LOW_MS, 1..30: log-spaced up to HIGH_MS, 31: > HIGH_MS
RATIO = (HIGH_MS / LOW_MS) ** (1.0 / (BUCKETS - 2))  # each inner bucket's upper edge over its lower (~1.66)
_LOG_RATIO = math.log(RATIO)
EDGES = tuple(LOW_MS * RATIO ** i for i in range(BUCKETS - 1))  # EDGES[i]: upper edge of bucket i (i < 31)
_RESCALE_AFTER = 64.0  # half-lives past the landmark before the histogram's sums are brought back to scale
_EMPTY = 1e-9  # a decayed total under this is no data


class DecayedCount:
    """A sum whose every addition halves each `half_life_s` seconds."""

    __slots__ = ("half_life_s", "_value", "_at")

    def __init__(self, half_life_s: float) -> None:
        if not half_life_s > 0:
            raise ValueError("a decayed window needs a positive half-life")
        self.half_life_s = float(half_life_s)
        self._value = 0.0
        self._at = 0.0

    def add(self, value: float, now: float) -> None:
        self._value = self.value(now) + value
        if now > self._at:
            self._at = now

    def value(self, now: float) -> float:
        elapsed = now - self._at
        return self._value if elapsed <= 0 else self._value * 0.5 ** (elapsed / self.half_life_s)

    def rate(self, now: float) -> float:
        """Per second: the sum over the window's mean lifetime (half_life / ln 2), so a steady stream of
        one event per second reads 1 on average, whatever the half-life."""
        return self.value(now) * math.log(2) / self.half_life_s


def bucket_of(value_ms: float) -> int:
    if value_ms <= LOW_MS:
        return 0
    if value_ms > HIGH_MS:
        return BUCKETS - 1
    return min(max(math.ceil(math.log(value_ms / LOW_MS) / _LOG_RATIO), 1), BUCKETS - 2)


class DecayedHistogram:
    """Decayed counts of latencies (ms) in log-spaced buckets, 1 ms to an hour, for quantiles.

    Forward decay: an addition at time t weighs `2 ** ((t - landmark) / half_life)`, and a read divides by
    the same factor at its own time, so an update touches one bucket instead of all of them. The landmark
    moves forward (every bucket rescaled once) before those weights could overflow. Quantiles need no decay
    at all: every bucket shrinks by the same factor.
    """

    __slots__ = ("half_life_s", "_landmark", "_last", "_counts")

    def __init__(self, half_life_s: float) -> None:
        if not half_life_s > 0:
            raise ValueError("a decayed window needs a positive half-life")
        self.half_life_s = float(half_life_s)
        self._landmark: float | None = None
        self._last = -math.inf
        self._counts = array("d", bytes(8 * BUCKETS))

    def add(self, value_ms: float, now: float, weight: float = 1.0) -> None:
        if self._landmark is None:
            self._landmark = now
        exponent = (now - self._landmark) / self.half_life_s
        if exponent > _RESCALE_AFTER:
            scale = 0.5 ** exponent
            for i, count in enumerate(self._counts):
                self._counts[i] = count * scale
            self._landmark, exponent = now, 0.0
        self._counts[bucket_of(value_ms)] += weight * 2.0 ** exponent
        if now > self._last:
            self._last = now

    def total(self, now: float) -> float:
        """The decayed number of additions (a read before the last update reads as of that update)."""
        if self._landmark is None:
            return 0.0
        return sum(self._counts) * 0.5 ** ((max(now, self._last) - self._landmark) / self.half_life_s)

    def quantile(self, q: float, now: float) -> float | None:
        """The q-quantile in ms, interpolated geometrically inside its bucket (linearly in bucket 0); over
        an hour reads as HIGH_MS. None when the window holds nothing (or has decayed to nothing)."""
        if self.total(now) < _EMPTY:
            return None
        counts = self._counts
        wanted = min(max(q, 0.0), 1.0) * sum(counts)  # summed in the loop's order: q=1 ends inside
        seen = 0.0
        for i, count in enumerate(counts):
            if count > 0 and seen + count >= wanted:
                share = (wanted - seen) / count
                if i == 0:
                    return LOW_MS * share
                if i == BUCKETS - 1:
                    return HIGH_MS
                return EDGES[i - 1] * RATIO ** share
            seen += count
        return None  # not reached: the last bucket with a count ends at the whole sum
