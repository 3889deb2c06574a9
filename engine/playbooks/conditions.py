"""Condition semantics (contract §2) in plain Python: the reference the compiled matcher must agree with.

Decisions where the contract leaves room, shared by both evaluators and documented in docs/matcher.md:
- a path is dotted; each step is a mapping key, or a list index when the step is a whole number;
- equality is by JSON kind: `true` is not `1`, `"3"` is not `3`, but `1` equals `1.0` (both numbers);
  lists and mappings are equal item by item with the same rule; NaN equals nothing;
- ordering (gt, gte, lt, lte) compares two numbers or two strings (by code point); any other pair is false;
- `matches` is an RE2 search (`regex.Regex`, compiled with its Condition) on a string value; a non-string
  value or a pattern RE2 cannot compile never matches;
- on an absent path `ne` and `not_in` hold, `exists: false` holds, every other operator fails.
"""
from __future__ import annotations

import functools
from typing import Any

from engine.playbooks.model import Condition
from engine.playbooks.regex import Regex


class _Missing:
    """The value of an absent path (distinct from JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@functools.lru_cache(maxsize=4096)
def split_path(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def lookup(event: Any, parts: tuple[str, ...]) -> Any:
    """The value at the pre-split path `parts` in `event`, or MISSING."""
    value = event
    for part in parts:
        if type(value) is dict:
            value = value.get(part, MISSING)
            if value is MISSING:
                return MISSING
        elif type(value) is list and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def is_number(value: Any) -> bool:
    """int or float, but not bool (JSON keeps them apart; Python does not)."""
    return type(value) in (int, float)


def same(a: Any, b: Any) -> bool:
    """Equality by JSON kind (see the module docstring)."""
    if is_number(a):
        return is_number(b) and a == b
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    return a == b


def ordered(value: Any, op: str, bound: Any) -> bool:
    """`value op bound` for two numbers or two strings; false for any other pair."""
    if not ((is_number(value) and is_number(bound)) or (type(value) is str and type(bound) is str)):
        return False
    if op == "gt":
        return value > bound
    if op == "gte":
        return value >= bound
    if op == "lt":
        return value < bound
    return value <= bound


def holds(condition: Condition, event: Any) -> bool:
    """Whether one condition holds for `event`."""
    value = lookup(event, split_path(condition.path))
    op, expected = condition.op, condition.value
    if op == "exists":
        return (value is not MISSING) == bool(expected)
    if value is MISSING:
        return op in ("ne", "not_in")
    if op == "eq":
        return same(value, expected)
    if op == "ne":
        return not same(value, expected)
    if op == "in":
        return any(same(value, item) for item in expected)
    if op == "not_in":
        return not any(same(value, item) for item in expected)
    if op == "matches":
        return isinstance(expected, Regex) and expected.search(value)
    return ordered(value, op, expected)


def all_hold(conditions: tuple[Condition, ...], event: Any) -> bool:
    return all(holds(condition, event) for condition in conditions)
