"""A per-key map with a hard cap: keys come from events, and events come from outside.

Guards, budgets and windows keep state per agent, per playbook key, per event value. Any of those keys
can be chosen by whoever posts events, so every such map is capped: past `cap` keys the least recently
used one is evicted and counted (`/metrics`: `aios_state_evictions_total{map=…}`), and memory stays
flat whatever the key space. Callers expire what has lapsed first, so eviction only bites under a flood.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class CappedMap(Generic[K, V]):
    """An LRU map of at most `cap` entries; `evicted` counts entries pushed out by the cap."""

    __slots__ = ("name", "cap", "evicted", "_data")

    def __init__(self, name: str, cap: int) -> None:
        if cap < 1:
            raise ValueError("a capped map needs cap >= 1")
        self.name = name
        self.cap = cap
        self.evicted = 0
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value, marked as recently used; None when absent."""
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The value without touching its recency (views and health)."""
        return self._data.get(key)

    def setdefault(self, key: K, make: Callable[[], V]) -> V:
        """The value for `key`, created with `make()` (evicting the oldest entry past the cap)."""
        value = self.get(key)
        if value is None:
            value = self[key] = make()
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.cap:
            self._data.popitem(last=False)
            self.evicted += 1

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))
