"""The `notifications` section of aios.yaml (defaults from the config schema) as the notifier uses it:
which targets hear about which problems, the message templates, the window and the retry policy."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from engine.durations import parse_duration
from engine.events import SEVERITIES
from engine.notify import target_problems
from engine.notify.base import NotifyError
from engine.playbooks.templates import TemplateError, parse_template, render, resolve

WHATS = ("opened", "escalated", "resolved")  # the problem events a target may select (`events:`)


@dataclass(frozen=True, slots=True)
class Route:
    """One target's choice of problems (an absent selector selects all) and its templates."""

    events: frozenset[str]
    kinds: frozenset[str] | None
    agents: frozenset[str] | None
    min_severity: int
    title: str
    body: str

    def selects(self, what: str, kind: Any, agent: Any, severity: Any) -> bool:
        return (what in self.events and (self.kinds is None or kind in self.kinds)
                and (self.agents is None or agent in self.agents)
                and _rank(severity) >= self.min_severity)


@dataclass(frozen=True, slots=True)
class Settings:
    routes: dict[str, Route]
    group_window_s: float
    timeout_s: float
    attempts: int  # retries after the first try
    backoff_s: float
    max_delay_s: float
    queue_max: int

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Settings:
        """NotifyError for a malformed template (config check reports it first, at its place)."""
        problems = config_problems(section)
        if problems:
            raise NotifyError("; ".join(f"notifications{pointer.replace('/', '.')}: {message}"
                                        for pointer, message in problems))
        routes = {}
        for name, spec in section["targets"].items():
            routes[name] = Route(frozenset(spec["events"]), _set(spec.get("kinds")), _set(spec.get("agents")),
                                 _rank(spec.get("min_severity")), spec.get("title") or section["title"],
                                 spec.get("body") or section["body"])
        retry = section["retry"]
        return cls(routes, parse_duration(section["group_window"]), parse_duration(section["timeout"]),
                   retry["attempts"], parse_duration(retry["backoff"]), parse_duration(retry["max_delay"]),
                   section["queue_max"])

    def delay_s(self, attempt: int) -> float:
        """The wait after failed try number `attempt` (1-based): backoff doubled each time, capped."""
        return min(self.max_delay_s, self.backoff_s * 2 ** (attempt - 1))


MIN_TIMEOUT_S = 1.0  # a shorter one fails every delivery (0 would be taken as "no timeout")


def config_problems(section: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(JSON pointer, message) for what the schema cannot say: a template that does not parse, a target
    URL its kind cannot use, a timeout too short."""
    out = target_problems(section)
    try:
        if parse_duration(section["timeout"]) < MIN_TIMEOUT_S:
            out.append(("/timeout", f"must be at least {MIN_TIMEOUT_S:g}s"))
    except (KeyError, ValueError):
        pass  # the schema reports a malformed duration
    places = [("/title", section.get("title")), ("/body", section.get("body"))]
    for name, spec in (section.get("targets") or {}).items():
        places += [(f"/targets/{name}/title", spec.get("title")), (f"/targets/{name}/body", spec.get("body"))]
    for pointer, text in places:
        if isinstance(text, str):
            try:
                parse_template(text)
            except TemplateError as exc:
                out.append((pointer, str(exc)))
    return out


def fill(template: str, context: Mapping[str, Any]) -> str:
    """`template` rendered from `context`: an absent path is empty text (a message is still worth sending),
    a value that is not a string is its JSON."""
    def lookup(path: str) -> Any:
        try:
            return resolve(context, path)
        except KeyError:
            return ""

    value = render(template, lookup)
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _set(values: Any) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _rank(severity: Any) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0
