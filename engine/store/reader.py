"""Streaming reads of the event store: raw days and archives, filtered, in bounded memory.

Readers take no lock and never raise on what a live writer or a crash leaves behind: an incomplete
last line is skipped, and so is a line that does not parse (counted in `ReadStats.skipped`).
"""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from engine.events import format_ts, type_pattern
from engine.store.layout import DAY_RE, Layout, iter_lines


@dataclass(slots=True)
class ReadStats:
    events: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class EventFilter:
    """since/until (inclusive/exclusive, aware datetimes), type globs, agent: the `events` filters."""

    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()
    agent: str | None = None

    def compile(self) -> Callable[[dict[str, Any]], bool]:
        since = format_ts(self.since.timestamp()) if self.since else None
        until = format_ts(self.until.timestamp()) if self.until else None
        type_re = type_pattern(self.types) if self.types else None
        agent = self.agent

        def accept(event: dict[str, Any]) -> bool:
            ts = event.get("ts", "")
            if since is not None and ts < since:
                return False
            if until is not None and ts >= until:
                return False
            if type_re is not None and not type_re.match(str(event.get("type", ""))):
                return False
            return agent is None or event.get("agent") == agent

        return accept

    def day_range(self) -> tuple[str, str]:
        """The days that can hold matching events ('' and '~' bound nothing)."""
        first = format_ts(self.since.timestamp())[:10] if self.since else ""
        last = format_ts(self.until.timestamp())[:10] if self.until else "~"
        return first, last


def parse_lines(lines: Iterable[bytes], stats: ReadStats) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            stats.skipped += 1
            continue
        if isinstance(event, dict):
            stats.events += 1
            yield event
        else:
            stats.skipped += 1


def read_events(events_dir: str | Path, since: datetime | None = None, until: datetime | None = None,
                types: Iterable[str] | None = None, agent: str | None = None,
                stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Matching events of every stored day (raw or archived), day by day, in file order within a day."""
    selector = EventFilter(since, until, tuple(types or ()), agent)
    accept = selector.compile()
    first, last = selector.day_range()
    layout = Layout(Path(events_dir))
    stats = stats if stats is not None else ReadStats()
    for day in layout.days():
        if not first <= day <= last:
            continue
        source = layout.source(day)
        if source is not None:
            yield from filter(accept, parse_lines(iter_lines(source), stats))


def find_event(events_dir: str | Path, event_id: str, types: Iterable[str] | None = None) -> dict[str, Any] | None:
    """The stored event with `event_id` (of one of `types`, when given); None when there is none. It reads
    the store day by day: blocking, call it from a thread in async code."""
    return next((event for event in read_events(events_dir, types=types) if event.get("id") == event_id), None)


def read_last(events_dir: str | Path, count: int, selector: EventFilter | None = None) -> list[dict[str, Any]]:
    """The last `count` matching events (store order), reading days newest first: memory bounded by `count`."""
    selector = selector or EventFilter()
    accept = selector.compile()
    first, last = selector.day_range()
    layout = Layout(Path(events_dir))
    found: list[dict[str, Any]] = []
    for day in reversed(layout.days()):
        if len(found) >= count or day < first:
            break
        source = layout.source(day)
        if day > last or source is None:
            continue
        newest = deque(filter(accept, parse_lines(iter_lines(source), ReadStats())), maxlen=count - len(found))
        found = [*newest, *found]
    return found


def read_ndjson(path: str | Path, stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Events of an NDJSON file (or gzip of one), skipping lines that are not JSON objects."""
    return parse_lines(iter_lines(Path(path)), stats if stats is not None else ReadStats())


def follow(events_dir: str | Path, selector: EventFilter, stop: Callable[[], bool] = lambda: False,
           poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> Iterator[dict[str, Any]]:
    """Like `tail -f` over the store: what is there, then new events as the writer appends them.

    Archived days are read once; raw day files (including days that appear later) are read by byte
    offset from their first byte, the same way before and after the first pass, so nothing appended
    between "what is there" and "what comes" is missed or repeated.
    """
    layout = Layout(Path(events_dir))
    accept = selector.compile()
    first, last = selector.day_range()
    stats = ReadStats()
    offsets: dict[Path, int] = {}
    for day in layout.days():
        archive = layout.archive(day)
        if first <= day <= last and archive.exists():
            yield from filter(accept, parse_lines(iter_lines(archive), stats))
            offsets[layout.raw(day)] = -1  # a raw file beside its archive is a compaction's leftover
    while True:
        grew = False
        for path in _raw_files(layout):
            offset = offsets.get(path, 0)
            if offset < 0 or not first <= path.name[:10] <= last:
                continue
            for chunk, consumed in _complete_lines_from(path, offset):
                offsets[path] = consumed
                grew = True
                yield from filter(accept, parse_lines(filter(None, chunk.split(b"\n")), stats))
        if stop():
            return
        if not grew:
            sleep(poll_s)


def _complete_lines_from(path: Path, offset: int) -> Iterator[tuple[bytes, int]]:
    """Chunks of complete lines after `offset`, each with the offset just past it; an unfinished last line
    waits for the next poll."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(offset)
        rest = b""
        while chunk := handle.read(1 << 20):
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                offset += cut
                yield data[:cut], offset


def _raw_files(layout: Layout) -> list[Path]:
    folder = layout.events_dir
    if not folder.is_dir():
        return []
    return sorted(folder / name for name in os.listdir(folder)
                  if (m := DAY_RE.match(name)) and not m.group(2))
