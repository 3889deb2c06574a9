"""Recurring maintenance windows from `aios.yaml` (`maintenance:`): cron-like starts in a time zone.

A window opens at each time its `schedule` (five cron fields, croniter) names in its `timezone` (zoneinfo,
so a window at 23:00 Europe/Berlin follows daylight saving time) and lasts `duration`; a window that starts
before midnight runs on into the next day. While one is open, decisions it matches are set aside with
`maintenance:<name>` and decided again when it closes.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from engine.controls.model import Selector
from engine.durations import parse_duration
from engine.events import format_ts


class Window:
    """One configured window; `open_until(now)` answers in O(1) between occurrences (the current occurrence
    and the next start are kept, croniter is asked again only when `now` leaves them)."""

    def __init__(self, name: str, spec: Mapping[str, Any]) -> None:
        self.name = name
        self.schedule = str(spec["schedule"])
        self.duration_s = parse_duration(spec["duration"])
        self.zone = ZoneInfo(spec.get("timezone", "UTC"))
        self.reason = str(spec.get("reason") or f"maintenance window {name}")
        self.selector = Selector.of(spec.get("match") or {})
        self._start, self._end, self._next = 0.0, 0.0, float("-inf")

    def _refresh(self, now: float) -> None:
        # croniter leaves an occurrence exactly at its base out of both get_prev and get_next: a microsecond
        # later, `now` itself counts as an opening when it is one
        here = datetime.fromtimestamp(now, self.zone) + timedelta(microseconds=1)
        self._start = croniter(self.schedule, here).get_prev(datetime).timestamp()
        self._end = self._start + self.duration_s
        upcoming = croniter(self.schedule, here)
        self._next = upcoming.get_next(datetime).timestamp()
        for _ in range(4):  # in the hour repeated when clocks fall back, croniter may name a time already past
            if self._next > now:
                break
            self._next = upcoming.get_next(datetime).timestamp()
        else:
            self._next = now + 60.0  # ask again in a minute rather than on every call

    def open_until(self, now: float) -> float | None:
        """When the occurrence covering `now` closes; None when no occurrence covers it."""
        if not self._start <= now < self._next:
            self._refresh(now)
        if now < self._end:
            return self._end
        return None

    def next_start(self, now: float) -> float:
        self.open_until(now)
        return self._next

    def view(self, now: float) -> dict[str, Any]:
        until = self.open_until(now)
        return {"name": self.name, "schedule": self.schedule, "timezone": str(self.zone.key),
                "duration_s": self.duration_s, "reason": self.reason, "open": until is not None,
                "open_until": None if until is None else format_ts(until),
                "next_start": format_ts(self.next_start(now))}


def windows_from_config(specs: Mapping[str, Mapping[str, Any]]) -> list[Window]:
    return [Window(name, spec) for name, spec in specs.items()]


def maintenance_problems(specs: Any) -> Iterable[tuple[str, str]]:
    """(pointer, message) for what the schema cannot check: the cron expression and the zone name."""
    if not isinstance(specs, dict):
        return
    for name, spec in specs.items():
        if not isinstance(spec, dict):
            continue
        schedule = spec.get("schedule")
        if isinstance(schedule, str) and (len(schedule.split()) != 5 or not croniter.is_valid(schedule)):
            yield (f"/maintenance/{name}/schedule",
                   f"invalid schedule {schedule!r}: five cron fields, minute hour day month weekday (0 22 * * 5)")
        zone = spec.get("timezone")
        if isinstance(zone, str):
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                yield f"/maintenance/{name}/timezone", f"unknown time zone {zone!r} (an IANA name: Europe/Berlin)"
