"""What operators set by hand: silences, the global pause, runtime disables of playbooks.

Plain records, read from API/CLI bodies (validated by `schemas/control.schema.json`, errors with a JSON
pointer) and kept in `data/controls/state.json`. Times are epoch seconds; `None` for "until lifted".
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.durations import parse_duration
from engine.events import format_ts, parse_ts, type_pattern
from engine.schemas import schema_errors

MATCHERS = ("agent", "playbook", "type", "labels")


class ControlError(ValueError):
    """A bad control request: the message, and the JSON pointer into the body (the API's 400)."""

    def __init__(self, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.pointer = pointer


class NotFound(ControlError):
    """An unknown agent, playbook, event or silence (404)."""


def checked(control: str, body: Any) -> dict[str, Any]:
    """`body` when it is a valid `control` body, else ControlError naming the first bad place."""
    if body is None:
        body = {}
    if control == "silence" and isinstance(body, dict) and not any(k in body for k in MATCHERS):
        raise ControlError("a silence needs at least one of agent, playbook, type, labels", "")
    errors = schema_errors("control", {control: body})
    if errors:
        first = errors[0]
        raise ControlError(first.message, first.pointer[len(control) + 1:])
    return body


def _time(text: str, pointer: str) -> float:
    try:
        return parse_ts(text).timestamp()
    except ValueError:
        raise ControlError(f"invalid time {text[:64]!r}: use RFC 3339 (2026-12-03T22:00:00Z)", pointer) from None


def ends(body: Mapping[str, Any], start: float) -> float | None:
    """When a pause or disable given `for` ends (None: until lifted)."""
    return start + parse_duration(body["for"]) if "for" in body else None


@dataclass(frozen=True, slots=True)
class Silence:
    """Keeps the engine's hands off what it matches between `starts_at` and `ends_at`: decisions about it
    are set aside with `silenced:<id>` and decided again when it ends. Every matcher given must hold."""

    id: str
    starts_at: float
    ends_at: float
    reason: str
    by: str
    created_at: float
    agent: str | None = None
    playbook: str | None = None
    type: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Any, *, id_: str, by: str, now: float, default_s: float) -> Silence:
        body = checked("silence", body)
        start = _time(body["starts_at"], "/starts_at") if "starts_at" in body else now
        if "ends_at" in body and "for" in body:
            raise ControlError("give ends_at or for, not both", "/for")
        end = _time(body["ends_at"], "/ends_at") if "ends_at" in body else \
            start + (parse_duration(body["for"]) if "for" in body else default_s)
        if end <= start:
            raise ControlError("a silence must end after it starts", "/ends_at" if "ends_at" in body else "/for")
        if end <= now:
            raise ControlError("this silence would already be over", "/ends_at" if "ends_at" in body else "/for")
        return cls(id_, start, end, body["reason"], by, now, body.get("agent"), body.get("playbook"),
                   body.get("type"), dict(body.get("labels") or {}))

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def view(self, now: float) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v not in (None, {})}
        for name in ("starts_at", "ends_at", "created_at"):
            out[name] = format_ts(out[name])
        out["state"] = "active" if self.active(now) else ("pending" if now < self.starts_at else "expired")
        return out

    @classmethod
    def from_view(cls, raw: Mapping[str, Any]) -> Silence:
        return cls(raw["id"], _time(raw["starts_at"], ""), _time(raw["ends_at"], ""), raw["reason"], raw["by"],
                   _time(raw["created_at"], ""), raw.get("agent"), raw.get("playbook"), raw.get("type"),
                   dict(raw.get("labels") or {}))


class Selector:
    """The matchers of a silence or a maintenance window, compiled once: globs for agent, playbook and event
    type (linear-time: fnmatch's translation has no nested repetition), equal labels."""

    __slots__ = ("agent", "playbook", "type", "labels")

    def __init__(self, agent: str | None = None, playbook: str | None = None, type_: str | None = None,
                 labels: Mapping[str, str] | None = None) -> None:
        self.agent = type_pattern([agent]) if agent else None
        self.playbook = type_pattern([playbook]) if playbook else None
        self.type = type_pattern([type_]) if type_ else None
        self.labels = dict(labels or {})

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> Selector:
        return cls(spec.get("agent"), spec.get("playbook"), spec.get("type"), spec.get("labels"))

    def matches(self, playbook_id: str, labels: Mapping[str, Any], event_type: str, agents: Iterable[str]) -> bool:
        """Whether a run of `playbook_id` (with `labels`) for an event of `event_type` about `agents` is held."""
        if self.playbook is not None and not _full(self.playbook, playbook_id):
            return False
        if self.type is not None and not _full(self.type, event_type):
            return False
        if self.agent is not None and not any(_full(self.agent, agent) for agent in agents):
            return False
        return all(str(labels.get(k)) == v and k in labels for k, v in self.labels.items())


def _full(pattern: re.Pattern[str], text: str) -> bool:
    return pattern.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Hold:
    """A pause or a runtime disable: since when, until when (None: until lifted), why, by whom."""

    since: float
    until: float | None
    reason: str
    by: str

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def view(self) -> dict[str, Any]:
        return {"since": format_ts(self.since), "until": None if self.until is None else format_ts(self.until),
                "reason": self.reason, "by": self.by}

    @classmethod
    def from_view(cls, raw: Mapping[str, Any]) -> Hold:
        until = raw.get("until")
        return cls(_time(raw["since"], ""), None if until is None else _time(until, ""), raw["reason"], raw["by"])
