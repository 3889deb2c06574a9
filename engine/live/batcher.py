"""Per-client batching and filtering for `/ws` (contract §5): a frame goes when 10 events are pending or
5 s have passed since the first pending one, whichever comes first, and never empty.

The clock is injected so that the rules can be tested without waiting. Events a client's filter hides
still count for timing: they may have changed the state document, so the client gets that change (a
state-only frame, if the state did change) at most `max_wait_s` later instead of only with its next
visible event.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.events import SEVERITIES, type_pattern
from engine.yaml_loader import pointer_join

Event = dict[str, Any]
Clock = Callable[[], float]

_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
# Event types are lower-case dotted words: a glob of them uses those characters, `*`, `?` and closed
# `[...]` classes. Anything else (upper case, a stray `[`) could never match and is refused as a typo.
_GLOB = re.compile(r"(?:[a-z0-9_.*?]|\[!?[a-z0-9_.-]+\])+")
MAX_GLOBS = 50
MAX_AGENTS = 200
MAX_NAME = 200


class FilterError(ValueError):
    """A client message that cannot be used; `pointer` is the JSON pointer of the bad value."""

    def __init__(self, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer

    def frame(self) -> dict[str, str]:
        """What the client is sent back."""
        return {"error": self.message, "pointer": self.pointer}


@dataclass(frozen=True, slots=True)
class Filter:
    """Which events a client sees: any of the type globs, at least the severity, one of the agents.
    An empty criterion lets everything through."""

    types: tuple[str, ...] = ()
    min_severity: str = "debug"
    agents: frozenset[str] = frozenset()
    _types: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    _rank: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_types", type_pattern(self.types) if self.types else None)
        object.__setattr__(self, "_rank", _RANK[self.min_severity])

    def matches(self, event: Event) -> bool:
        if self._types is not None and self._types.match(event.get("type", "")) is None:
            return False
        if _RANK.get(event.get("severity", "info"), 1) < self._rank:
            return False
        return not self.agents or event.get("agent") in self.agents

    def to_json(self) -> dict[str, Any]:
        return {"types": list(self.types), "min_severity": self.min_severity, "agents": sorted(self.agents)}

    @classmethod
    def parse(cls, value: Any, pointer: str = "/filter") -> Filter:
        """A filter from its JSON form (`null` or `{}` for everything); FilterError names the bad value."""
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise FilterError("a filter is an object with types, min_severity and agents", pointer)
        unknown = sorted(value.keys() - {"types", "min_severity", "agents"})
        if unknown:
            raise FilterError(f"unknown filter key {unknown[0]!r} (known: types, min_severity, agents)",
                              pointer_join(pointer, unknown[0]))
        types = _strings(value.get("types"), f"{pointer}/types", MAX_GLOBS)
        for index, glob in enumerate(types):
            if _GLOB.fullmatch(glob) is None:
                raise FilterError(f"bad type glob {glob!r}: use lower-case dotted types with *, ? or [...]",
                                  f"{pointer}/types/{index}")
        severity = value.get("min_severity", "debug")
        if not isinstance(severity, str) or severity not in _RANK:
            raise FilterError(f"unknown severity {severity!r:.60} (one of {', '.join(SEVERITIES)})",
                              f"{pointer}/min_severity")
        agents = _strings(value.get("agents"), f"{pointer}/agents", MAX_AGENTS)
        return cls(tuple(dict.fromkeys(types)), severity, frozenset(agents))


def _strings(value: Any, pointer: str, most: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise FilterError("expected a list of strings", pointer)
    if len(value) > most:
        raise FilterError(f"at most {most} entries", pointer)
    for index, item in enumerate(value):
        if not isinstance(item, str) or not 0 < len(item) <= MAX_NAME:
            raise FilterError(f"expected a non-empty string of at most {MAX_NAME} characters", f"{pointer}/{index}")
    return value


def parse_message(data: str | bytes) -> Filter:
    """The filter a client message `{"filter": {...}}` asks for (the only message there is)."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FilterError(f"invalid JSON: {exc}") from None
    if not isinstance(message, dict) or "filter" not in message:
        raise FilterError('a client message is {"filter": {...}}')
    unknown = sorted(message.keys() - {"filter"})
    if unknown:
        raise FilterError(f"unknown message key {unknown[0]!r}", pointer_join("", unknown[0]))
    return Filter.parse(message["filter"])


class Batcher:
    """The events pending for one client, and when they are due."""

    __slots__ = ("_clock", "max_events", "max_wait_s", "filter", "_pending", "_since")

    def __init__(self, clock: Clock, max_events: int = 10, max_wait_s: float = 5.0,
                 filter: Filter | None = None) -> None:
        if max_events < 1 or max_wait_s <= 0:
            raise ValueError("a batcher needs max_events >= 1 and max_wait_s > 0")
        self._clock = clock
        self.max_events = max_events
        self.max_wait_s = max_wait_s
        self.filter = filter or Filter()
        self._pending: list[Event] = []
        self._since: float | None = None  # when the first event since the last take arrived (shown or not)

    def add(self, event: Event) -> bool:
        """Take in one event; True when a frame is due now (the `max_events`-th pending event)."""
        if self._since is None:
            self._since = self._clock()
        if not self.filter.matches(event):
            return False
        self._pending.append(event)
        return len(self._pending) >= self.max_events

    def due(self, now: float) -> bool:
        """True when `max_wait_s` have passed since the first event that arrived after the last take."""
        return self._since is not None and now - self._since >= self.max_wait_s

    def take(self) -> list[Event]:
        """The pending events, oldest first (possibly none, when only hidden ones arrived); starts afresh."""
        events, self._pending, self._since = self._pending, [], None
        return events

    def refilter(self, new: Filter) -> None:
        """Use `new` from now on, and for the events still pending."""
        self.filter = new
        self._pending = [event for event in self._pending if new.matches(event)]

    def __len__(self) -> int:
        return len(self._pending)
