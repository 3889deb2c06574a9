"""The event envelope (contract §1): ids, timestamps, limits and validation on the intake hot path.

Validation runs on every event, so the common case uses a compiled validator (fastjsonschema, about
2 µs); only a failing event pays for jsonschema, which names the exact JSON pointer. Size and depth
limits are checked first, so a hostile payload never reaches the schema validators.
"""
from __future__ import annotations

import fnmatch
import functools
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import fastjsonschema
import orjson

from engine.schemas import fast_validator, schema_errors
from engine.yaml_loader import pointer_join

Clock = Callable[[], float]  # seconds since the epoch, like time.time

MAX_DATA_BYTES = 64 * 1024
MAX_DATA_DEPTH = 32
MAX_EVENT_BYTES = MAX_DATA_BYTES + 16 * 1024  # whole serialized event: data plus envelope fields
SEVERITIES = ("debug", "info", "warning", "error", "critical")
RESERVED_PREFIXES = ("scheduler.", "reactor.", "score.", "playbook.", "problem.", "control.", "notification.")
FIELD_ORDER = ("id", "ts", "type", "source", "agent", "host", "severity", "data", "chain")
_FIELDS = frozenset(FIELD_ORDER)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits → 2 characters


class EventError(ValueError):
    """A refused event: `pointer` is the JSON pointer of the offending value, `index` its place in a batch."""

    def __init__(self, message: str, pointer: str = "", index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer
        self.index = index

    def at(self, index: int) -> EventError:
        """The same error, placed at `index` of a batch."""
        return EventError(self.message, self.pointer, index)

    def __str__(self) -> str:
        where = f"event {self.index}" if self.index is not None else "event"
        return f"{where} {self.pointer or '/'}: {self.message}"


class IdGenerator:
    """ULIDs (48-bit ms time + 80 random bits, Crockford base32), strictly increasing within a process.

    The first id of a millisecond has fresh random bits; the next ones in that millisecond (or after the
    clock steps back) are the previous id plus one, ULID's monotonic mode: ids sort in the order they
    were made, and a batch's ids cost little more than their last four characters.
    """

    def __init__(self, clock: Clock = time.time, randbits: Callable[[], int] | None = None) -> None:
        self._clock = clock
        # Uniqueness needs unpredictable seeds, not a cryptographic stream: seed a fast PRNG from urandom.
        self._randbits = randbits or functools.partial(random.Random(os.urandom(16)).getrandbits, 80)
        self._last = 0
        self._head = ""  # the last id but its final four characters (its low 20 bits)
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:  # large batches are validated in worker threads, beside the loop's own events
            return self._next()

    def _next(self) -> str:
        millis = int(self._clock() * 1000)
        pairs = _PAIRS
        if millis <= self._last >> 80:
            value = self._last + 1
            self._last = value
            if value & 0xFFFFF:  # no carry out of the low 20 bits: only the last four characters change
                return self._head + pairs[(value >> 10) & 1023] + pairs[value & 1023]
        else:
            value = self._last = (millis << 80) | self._randbits()
        text = "".join([pairs[(value >> shift) & 1023] for shift in range(120, -10, -10)])  # 26 characters
        self._head = text[:22]
        return text


@functools.lru_cache(maxsize=4)
def _second_prefix(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def type_pattern(globs: Iterable[str]) -> re.Pattern[str]:
    """One regex for event-type globs (`resource.*`, `agent.down`), as subscriptions and filters use them."""
    return re.compile("|".join(fnmatch.translate(glob) for glob in globs))


def format_ts(epoch: float) -> str:
    """Canonical stored form: UTC, microseconds, `Z` (sorts as text in time order)."""
    micros = round(epoch * 1_000_000)
    second, fraction = divmod(micros, 1_000_000)
    return f"{_second_prefix(second)}.{fraction:06d}Z"


# RFC 3339 §5.6 `date-time`, nothing looser: `T` (or `t`, which §5.6 allows), seconds required, a `.`
# fraction, and `Z`/`z` or `±hh:mm`. Anchored with \Z: `$` would also match before a trailing newline.
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
                      r"(?:[Zz]|([+-])(\d{2}):(\d{2}))\Z", re.ASCII)


def parse_ts(text: str) -> datetime:
    """An RFC 3339 date-time as an aware datetime; ValueError (saying what is wrong) when it is not one.

    Fractions beyond microseconds are cut off; `-00:00` (UTC, offset unknown) reads as UTC. A leap second
    (`:60`) is refused: Python's datetime cannot hold it, and silently moving it would reorder events.
    """
    match = _RFC3339.match(text) if isinstance(text, str) else None
    if match is None:
        if isinstance(text, str) and len(text) >= 19 and text[10] in "Tt" and _RFC3339.match(text + "Z"):
            raise ValueError("timestamp needs a timezone (Z or +hh:mm)")
        raise ValueError("not an RFC 3339 timestamp (e.g. 2026-02-24T00:07:00Z or 2026-02-24T01:07:00+01:00)")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    if int(off_h or 0) > 23 or int(off_m or 0) > 59:
        raise ValueError(f"offset {sign}{off_h}:{off_m} is out of range")
    if second == "60":
        raise ValueError("leap seconds (:60) are not accepted")
    offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0)) * (-1 if sign == "-" else 1)
    try:
        value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         int((fraction or "").ljust(6, "0")[:6]), tzinfo=timezone(offset))
    except ValueError as exc:  # 2026-02-30, 25:00…
        raise ValueError(f"no such time: {exc}") from None
    if offset and year in ("0001", "9999"):  # in UTC it may be year 0 or 10000, which sort wrong as text
        try:
            value.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError(f"{text} is before the year 1 or after 9999 in UTC") from None
    return value


def event_time(event: dict[str, Any], default: float) -> float:
    """The event's `ts` in epoch seconds, or `default` when it has none that parses."""
    try:
        return parse_ts(event["ts"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return default


def _check_limits(data: dict[str, Any] | list[Any]) -> None:
    """EventError unless `data` is JSON-serializable, at most MAX_DATA_DEPTH deep and MAX_DATA_BYTES long.

    Depth is walked only when the serialized form has more opening brackets than the limit: fewer
    brackets (strings may hold some, which only overcounts) cannot nest deeper, and that is the common case.
    """
    try:
        serialized = orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError) as exc:  # orjson refuses nesting past 254: name the place
        deep = _depth_error(data)
        if deep is not None:
            raise EventError(f"data is nested deeper than {MAX_DATA_DEPTH} levels", deep) from None
        raise EventError(f"data is not JSON-serializable: {exc}", "/data") from None
    if serialized.count(b"{") + serialized.count(b"[") > MAX_DATA_DEPTH:
        deep = _depth_error(data)
        if deep is not None:
            raise EventError(f"data is nested deeper than {MAX_DATA_DEPTH} levels", deep)
    if len(serialized) > MAX_DATA_BYTES:
        raise EventError(f"data is {len(serialized)} bytes serialized; the limit is {MAX_DATA_BYTES}", "/data")


def _depth_error(data: Any) -> str | None:
    """Pointer of the first container nested deeper than MAX_DATA_DEPTH, level by level (no recursion)."""
    level: list[tuple[str, Any]] = [("/data", data)]
    depth = 1
    while level:
        if depth > MAX_DATA_DEPTH:
            return level[0][0]
        deeper = []
        for pointer, value in level:
            for key, child in value.items() if isinstance(value, dict) else enumerate(value):
                if isinstance(child, (dict, list)):
                    deeper.append((pointer_join(pointer, key), child))
        level = deeper
        depth += 1
    return None


class EventValidator:
    """Completes and validates raw events into stored form.

    `normalize` fills `id`, `ts`, `severity`, `host` and `source` when absent, checks limits, the
    schema, the time window, reserved types and `chain`, and returns a new dict; it raises EventError.
    `delete_days` is retention's deletion age (contract §6): see `oldest_day` for the days it accepts.
    """

    def __init__(
        self,
        clock: Clock = time.time,
        host: str | None = None,
        max_future_s: float = 300.0,
        ids: IdGenerator | None = None,
        *,
        delete_days: int = 30,
    ) -> None:
        self._clock = clock
        self._host = host or socket.gethostname()
        self._max_future_s = max_future_s
        self._delete_days = delete_days
        self.new_id = ids or IdGenerator(clock)
        self._fast = fast_validator("event")

    def normalize(self, raw: Any, source: str = "api", external: bool = True,
                  now: float | None = None) -> dict[str, Any]:
        """The stored form of `raw`. `external` events may neither use the engine's reserved types nor
        carry `chain` (the engine sets it on the events it emits). `now`: the batch's arrival time."""
        if not isinstance(raw, dict):
            raise EventError(f"an event must be a JSON object, not {type(raw).__name__}")
        data = raw.get("data", {})
        if isinstance(data, (dict, list)):
            _check_limits(data)
        if now is None:
            now = self._clock()
        stamped = "ts" not in raw
        if raw.keys() <= _FIELDS:  # built in stored order at once (stored lines read alike)
            event = {"id": raw["id"] if "id" in raw else self.new_id(),
                     "ts": format_ts(now) if stamped else raw["ts"]}
            if "type" in raw:
                event["type"] = raw["type"]
            event["source"] = raw.get("source", source)
            if "agent" in raw:
                event["agent"] = raw["agent"]
            event["host"] = raw.get("host", self._host)
            event["severity"] = raw.get("severity", "info")
            event["data"] = raw.get("data", {})
            if "chain" in raw:
                event["chain"] = raw["chain"]
        else:  # an unknown field: the schema refuses it below, naming it
            event = {"id": self.new_id(), "ts": format_ts(now), "severity": "info", "source": source,
                     "host": self._host, "data": {}, **raw}
        try:
            self._fast(event)
        except fastjsonschema.JsonSchemaException:
            errors = schema_errors("event", event)
            first = errors[0] if errors else None
            raise EventError(first.message if first else "invalid event", first.pointer if first else "") from None
        if not stamped:
            event["ts"] = self._checked_ts(event["ts"], now)
        if external and event["type"].startswith(RESERVED_PREFIXES):
            raise EventError(f"type {event['type']!r} is reserved for the engine", "/type")
        if external and "chain" in event:
            raise EventError("chain is set by the engine (the causes of the events it emits); leave it out",
                             "/chain")
        return event

    def oldest_day(self, now: float) -> date:
        """The oldest UTC day intake accepts at `now`.

        Retention deletes a day once its age (whole UTC days before now's day) reaches `delete_days`,
        and the next compaction may run after the next UTC midnight (the daily job runs at 00:10), when
        every age has grown by one: a day is accepted only while age + 1 < delete_days, so whatever is
        acknowledged survives the next compaction.
        """
        return datetime.fromtimestamp(now, timezone.utc).date() - timedelta(days=self._delete_days - 2)

    def _checked_ts(self, text: str, now: float) -> str:
        """`text` in stored form, refused when more than max_future ahead or before `oldest_day`."""
        try:
            when = parse_ts(text).timestamp()
        except ValueError as exc:
            raise EventError(f"invalid ts {text!r}: {exc}", "/ts") from None
        if when > now + self._max_future_s:
            raise EventError(f"ts is more than {int(self._max_future_s)} s in the future", "/ts")
        oldest = self.oldest_day(now)
        if datetime.fromtimestamp(when, timezone.utc).date() < oldest:
            raise EventError(f"ts is on a day retention deletes at the next compaction (store.delete_days is "
                             f"{self._delete_days}); the oldest day accepted now is {oldest.isoformat()}", "/ts")
        return format_ts(when)

    def normalize_batch(self, raws: Iterable[Any], source: str = "api", external: bool = True) -> list[dict[str, Any]]:
        """All events of a batch, or EventError (with `index`) for the first bad one: all or nothing."""
        out = []
        now = self._clock()  # one arrival time: a batch's stamped events share their ts
        normalize = self.normalize
        for index, raw in enumerate(raws):
            try:
                out.append(normalize(raw, source, external, now))
            except EventError as exc:
                raise exc.at(index) from None
        return out


def parse_json_body(body: bytes, ndjson: bool = False) -> list[Any]:
    """Raw events from a request body: one object, an array, or NDJSON. EventError names the bad item."""
    if ndjson:
        items = []
        for index, line in enumerate(body.splitlines()):
            if not line.strip():
                continue
            if len(line) > MAX_EVENT_BYTES:
                raise EventError(f"line is {len(line)} bytes; an event is at most {MAX_EVENT_BYTES}", "", index)
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise EventError(f"invalid JSON: {exc}", "", index) from None
        return items
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"invalid JSON: {exc}") from None
    return parsed if isinstance(parsed, list) else [parsed]
