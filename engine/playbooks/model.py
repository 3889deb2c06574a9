"""The in-memory form of a playbook, built from schema-valid YAML with every default applied.

Lint produces these, the matcher compiles them, the reactor runs their steps. Frozen, so a reload
swaps whole objects and nothing mutates a playbook another component is using.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.durations import parse_duration
from engine.playbooks.regex import Regex
from engine.yaml_loader import Loc

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "matches", "exists")
PRIORITIES = ("P0", "P1", "P2", "P3")
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Condition:
    """`path` (dotted, into the event) `op` `value`; a bare YAML value is `eq`. A `matches` string becomes
    a `Regex` here, so its pattern is compiled once, when the condition is made, never per event."""

    path: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op == "matches" and type(self.value) is str:
            object.__setattr__(self, "value", Regex(self.value))


@dataclass(frozen=True, slots=True)
class Inhibitor:
    """What holds a playbook off (`inhibited_by`): an open problem of kind `problem`, or an `event` of that
    type matching `where` stored within `within_s`; `same` fields must be equal in it and the decided event."""

    problem: str | None = None
    event: str | None = None
    where: tuple[Condition, ...] = ()
    within_s: float = 0.0
    same: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sustained:
    count: int
    within_s: float


@dataclass(frozen=True, slots=True)
class Throttle:
    within_s: float
    key: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Retry:
    """`attempts` retries after the first try; waits backoff, backoff*factor, ... capped at max_delay."""

    attempts: int = 0
    backoff_s: float = 2.0
    factor: float = 2.0
    max_delay_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    action: str
    with_: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    timeout_s: float | None = None  # None: the playbook's timeout
    retry: Retry | None = None  # None: the playbook's retry

    def __post_init__(self) -> None:
        if self.action == "wait_for" and isinstance(self.with_.get("where"), dict):
            object.__setattr__(self, "with_", {**self.with_, "where": _literal_patterns(self.with_["where"])})


@dataclass(frozen=True, slots=True)
class Playbook:
    id: str
    on: tuple[str, ...]
    when: tuple[Condition, ...] = ()
    description: str = ""
    sustained: Sustained | None = None
    priority: str | None = None
    confidence: float = 0.5
    exclusive: bool = True
    enabled: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    owner: str | None = None
    throttle: Throttle | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    retry: Retry = field(default_factory=Retry)
    snapshot: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    rollback: tuple[Step, ...] = ()
    inhibited_by: tuple[Inhibitor, ...] = ()
    file: str = "<memory>"
    loc: Loc | None = None


def _is_operators(spec: Any) -> bool:
    return isinstance(spec, dict) and bool(spec) and all(key in OPERATORS for key in spec)


def conditions_from(when: dict[str, Any] | None) -> tuple[Condition, ...]:
    """`{path: value | {op: value, ...}}` → conditions; a mapping whose keys are all operators is operators."""
    out: list[Condition] = []
    for path, spec in (when or {}).items():
        if _is_operators(spec):
            out.extend(Condition(path, op, value) for op, value in spec.items())
        else:
            out.append(Condition(path, "eq", spec))
    return tuple(out)


def _literal_patterns(where: Any) -> Any:
    """A wait_for `where` whose `matches` strings are `Regex`es: compiled now, and handed on unrendered
    by the reactor's templates, so no event ever supplies a pattern."""
    if not isinstance(where, dict):
        return where
    return {path: {op: Regex(value) if op == "matches" and type(value) is str else value
                   for op, value in spec.items()} if _is_operators(spec) else spec
            for path, spec in where.items()}


def _retry(raw: dict[str, Any] | None) -> Retry | None:
    if raw is None:
        return None
    return Retry(
        attempts=int(raw.get("attempts", 0)),
        backoff_s=parse_duration(raw.get("backoff", "2s")),
        factor=float(raw.get("factor", 2)),
        max_delay_s=parse_duration(raw.get("max_delay", "30s")),
    )


def _step(raw: dict[str, Any], index: int, prefix: str) -> Step:
    timeout = raw.get("timeout")
    return Step(
        id=raw.get("id") or f"{prefix}{index}",
        action=raw["action"],
        with_=dict(raw.get("with") or {}),
        needs=tuple(raw.get("needs") or ()),
        timeout_s=parse_duration(timeout) if timeout else None,
        retry=_retry(raw.get("retry")),
    )


def playbook_from(raw: dict[str, Any], file: str = "<memory>", loc: Loc | None = None) -> Playbook:
    """Build a Playbook from one schema-valid mapping (as the YAML loader returns it)."""
    on = raw["on"]
    sustained = raw.get("sustained")
    throttle = raw.get("throttle")
    key = (throttle or {}).get("key", ())
    return Playbook(
        id=raw["id"],
        on=(on,) if isinstance(on, str) else tuple(on),
        when=conditions_from(raw.get("when")),
        description=raw.get("description", ""),
        sustained=Sustained(int(sustained["count"]), parse_duration(sustained["within"])) if sustained else None,
        priority=raw.get("priority"),
        confidence=float(raw.get("confidence", 0.5)),
        exclusive=bool(raw.get("exclusive", True)),
        enabled=bool(raw.get("enabled", True)),
        labels=dict(raw.get("labels") or {}),
        owner=raw.get("owner"),
        throttle=Throttle(parse_duration(throttle["within"]), (key,) if isinstance(key, str) else tuple(key))
        if throttle else None,
        timeout_s=parse_duration(raw["timeout"]) if raw.get("timeout") else DEFAULT_TIMEOUT_S,
        retry=_retry(raw.get("retry")) or Retry(),
        snapshot=tuple(raw.get("snapshot") or ()),
        steps=tuple(_step(s, i, "step") for i, s in enumerate(raw.get("steps") or ())),
        rollback=tuple(_step(s, i, "rollback") for i, s in enumerate(raw.get("rollback") or ())),
        inhibited_by=tuple(Inhibitor(i.get("problem"), i.get("event"), conditions_from(i.get("where")),
                                     parse_duration(i["within"]) if "within" in i else 0.0, tuple(i.get("same") or ()))
                           for i in raw.get("inhibited_by") or ()),
        file=file,
        loc=loc,
    )
