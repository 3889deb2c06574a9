"""Feedback: an operator's label, checked and completed from the store (`feedback`, `POST /api/feedback`).

`{"event": ID, "label": bool}` labels a `score.degraded` event (its components are in it); `{"agent": A,
"at": T, "label": true}` labels a degradation the score missed, with the components of A's last score
event at or before T. Bad input is a FeedbackError naming the JSON pointer (the API's 400 body, the CLI's
one-line error). Blocking (reads the store): call it from a thread in async code.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.events import EventError, parse_ts
from engine.score.labels import label_record
from engine.store.reader import EventFilter, find_event, read_last


class FeedbackError(ValueError):
    def __init__(self, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.pointer = pointer


def feedback_label(events_dir: Path, body: Any, now: float) -> dict[str, Any]:
    """The label record for `body` (not yet stored)."""
    if not isinstance(body, dict):
        raise FeedbackError("feedback is a JSON object: {\"event\": ID, \"label\": true|false} or "
                            "{\"agent\": A, \"at\": T, \"label\": true}")
    unknown = sorted(set(body) - {"event", "agent", "at", "label"})
    if unknown:
        raise FeedbackError(f"unknown field {unknown[0]!r}", f"/{unknown[0]}")
    label = body.get("label")
    if not isinstance(label, bool):
        raise FeedbackError("label must be true or false", "/label")
    if body.get("event") is not None:
        if "agent" in body or "at" in body:
            raise FeedbackError("give either event, or agent and at", "/agent" if "agent" in body else "/at")
        return _of_event(events_dir, body["event"], label, now)
    return _of_moment(events_dir, body.get("agent"), body.get("at"), label, now)


def _of_event(events_dir: Path, event_id: Any, label: bool, now: float) -> dict[str, Any]:
    if not isinstance(event_id, str) or not event_id:
        raise FeedbackError("event must be the id of a score.degraded event", "/event")
    event = find_event(events_dir, event_id, types=("score.degraded",))
    if event is None:
        raise FeedbackError(f"no score.degraded event {event_id} in the store", "/event")
    return label_record(agent=str(event.get("agent")), at=parse_ts(event["ts"]).timestamp(), label=label,
                        source="operator", components=_components(event), event=event_id, now=now)


def _of_moment(events_dir: Path, agent: Any, at: Any, label: bool, now: float) -> dict[str, Any]:
    if not isinstance(agent, str) or not agent:
        raise FeedbackError("agent must name the agent whose degradation the score missed", "/agent")
    if not isinstance(at, str):
        raise FeedbackError("at must be an RFC 3339 time", "/at")
    try:
        when = parse_ts(at)
        moment, until = when.timestamp(), when + timedelta(microseconds=1)  # year 9999 overflows here
    except (EventError, ValueError, OverflowError) as exc:
        raise FeedbackError(f"at: {exc}", "/at") from None
    if not label:
        raise FeedbackError("a missed degradation is labelled true; label a false alarm by its event id", "/label")
    last = read_last(events_dir, 1, EventFilter(until=until, types=("score.*",), agent=agent))
    if not last:
        raise FeedbackError(f"no score of {agent} at or before {at} in the store", "/at")
    return label_record(agent=agent, at=moment, label=True, source="operator",
                        components=_components(last[0]), now=now)


def _components(event: dict[str, Any]) -> dict[str, float]:
    components = (event.get("data") or {}).get("components")
    return {k: float(v) for k, v in components.items() if isinstance(v, (int, float))} \
        if isinstance(components, dict) else {}
