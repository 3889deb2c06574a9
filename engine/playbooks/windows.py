"""One playbook's state per throttle-key value (sustained match times, last fire), capped.

Key values come from events, and events from outside: 50,000 unique `data.k` values grew the matcher
from 53 to 889 MB. So each playbook keeps at most `cap` keys per kind of state, least recently updated
first. An update moves its key to the end, and updates happen at the time they record, so with a clock
that moves forward the front holds the oldest windows: the expired ones (which lose nothing) go first,
and a live one is evicted, and counted, only when the cap is full of live windows: under a flood.

`engine.capped.CappedMap` (the guards') counts every entry it pushes out and moves a key on every read;
here a read (is this key throttled?) must not refresh it, and an expired entry is no loss.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class Windows(Generic[V]):
    """At most `cap` keys; `expired(value)` tells a lapsed window from a live one."""

    __slots__ = ("_items", "cap")

    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self._items: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V | None:
        """The value, leaving its place as it is."""
        return self._items.get(key)

    def put(self, key: str, value: V, expired: Callable[[V], bool]) -> int:
        """Set `key` as the most recent update; returns how many live windows were evicted to make room."""
        items = self._items
        if key in items:
            items[key] = value
            items.move_to_end(key)
            return 0
        evicted = self._trim(self.cap - 1, expired)
        items[key] = value
        return evicted

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def expire(self, expired: Callable[[V], bool]) -> None:
        """Drop the lapsed windows at the front (all of them, with a clock that moves forward)."""
        items = self._items
        while items and expired(next(iter(items.values()))):
            items.popitem(last=False)

    def resize(self, cap: int, expired: Callable[[V], bool]) -> int:
        """A new cap (the playbook changed on reload); returns the live windows evicted."""
        self.cap = max(1, cap)
        return self._trim(self.cap, expired)

    def _trim(self, size: int, expired: Callable[[V], bool]) -> int:
        evicted = 0
        items = self._items
        while len(items) > size:
            evicted += not expired(items.popitem(last=False)[1])
        return evicted

    def __len__(self) -> int:
        return len(self._items)
