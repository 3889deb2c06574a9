from datetime import datetime, timezone

import pytest

from engine.events import EventError, EventValidator, IdGenerator, format_ts, parse_json_body

def nested(levels: int) -> list:
    value: list = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


NOW = datetime(2026, 2, 24, 12, 0, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def validator() -> EventValidator:
    return EventValidator(clock=lambda: NOW, host="host-a")


def test_missing_fields_are_assigned_and_ts_is_stored_in_utc(validator):
    event = validator.normalize({"type": "agent.heartbeat", "agent": "coder", "ts": "2026-02-24T13:30:00+02:00"})
    assert event["ts"] == "2026-02-24T11:30:00.000000Z"
    assert (event["severity"], event["source"], event["host"], event["data"]) == ("info", "api", "host-a", {})
    assert len(event["id"]) == 26
    stamped = validator.normalize({"type": "agent.heartbeat"}, source="cli")
    assert stamped["ts"] == format_ts(NOW) and stamped["source"] == "cli"


def test_ids_sort_in_creation_order_even_within_one_millisecond_and_when_the_clock_steps_back():
    times = iter([1.0, 1.0, 1.0, 0.5, 2.0])
    ids = IdGenerator(clock=lambda: next(times))
    made = [ids() for _ in range(5)]
    assert made == sorted(made) and len(set(made)) == 5


@pytest.mark.parametrize("raw, pointer, words", [
    ({"type": "Agent.Down"}, "/type", "is not a dotted lower-case type"),
    ({"type": "agentdown"}, "/type", "is not a dotted lower-case type"),
    ({"type": "a.b\n"}, "/type", "is not a dotted lower-case type"),
    ({"type": 5}, "/type", "is not a dotted lower-case type"),
    ({"type": "a.b", "id": "x1\n"}, "/id", "is not an id of letters"),
    ({}, "", "'type' is a required property"),
    ([1, 2], "", "must be a JSON object"),
    ("agent.down", "", "must be a JSON object"),
    ({"type": "a.b", "data": {"blob": "x" * 70_000}}, "/data", "limit is 65536"),
    ({"type": "a.b", "data": {"k": nested(40)}}, "/data/k" + "/0" * 31, "nested deeper than 32"),
    ({"type": "a.b", "data": []}, "/data", "is not of type 'object'"),
    ({"type": "a.b", "ts": "2026-02-24T12:06:00Z"}, "/ts", "in the future"),
    ({"type": "a.b", "ts": "2026-01-20T12:00:00Z"}, "/ts", "oldest day accepted now is 2026-01-27"),
    ({"type": "a.b", "chain": ["01ABC"]}, "/chain", "chain is set by the engine"),
    ({"type": "problem.opened"}, "/type", "reserved for the engine"),
    ({"type": "a.b", "ts": "2026-02-24 12:00"}, "/ts", "not an RFC 3339"),
    ({"type": "a.b", "ts": "2026-02-24T12:00:00"}, "/ts", "needs a timezone"),
    ({"type": "a.b", "severity": "loud"}, "/severity", "is not one of"),
    ({"type": "a.b", "colour": "red"}, "/colour", "unknown key 'colour'"),
    ({"type": "reactor.succeeded"}, "/type", "reserved for the engine"),
    ({"type": "score.updated"}, "/type", "reserved for the engine"),
])
def test_bad_events_are_refused_with_the_pointer(validator, raw, pointer, words):
    with pytest.raises(EventError) as info:
        validator.normalize(raw)
    assert info.value.pointer == pointer
    assert words in info.value.message


def test_engine_may_emit_its_reserved_types(validator):
    assert validator.normalize({"type": "reactor.succeeded"}, source="engine.reactor", external=False)["type"] \
        == "reactor.succeeded"


def test_a_batch_is_refused_as_a_whole_naming_the_bad_index(validator):
    with pytest.raises(EventError) as info:
        validator.normalize_batch([{"type": "a.b"}, {"type": "a.b", "data": {"x": 1}}, {"type": "BAD"}])
    assert info.value.index == 2 and info.value.pointer == "/type"
    assert str(info.value).startswith("event 2 /type:")


def test_bodies_parse_as_object_array_or_ndjson_and_bad_lines_are_located():
    assert parse_json_body(b'{"type": "a.b"}') == [{"type": "a.b"}]
    assert parse_json_body(b'[{"type": "a.b"}, {"type": "c.d"}]') == [{"type": "a.b"}, {"type": "c.d"}]
    assert parse_json_body(b'{"type": "a.b"}\n\n{"type": "c.d"}\n', ndjson=True) == [{"type": "a.b"}, {"type": "c.d"}]
    with pytest.raises(EventError) as info:
        parse_json_body(b'{"type": "a.b"}\n{oops\n', ndjson=True)
    assert info.value.index == 1 and "invalid JSON" in info.value.message
    with pytest.raises(EventError, match="at most"):
        parse_json_body(b'{"type": "a.b", "data": {"x": "' + b"y" * 90_000 + b'"}}\n', ndjson=True)
    deep = b"[" * 5000 + b"]" * 5000
    with pytest.raises(EventError, match="invalid JSON"):
        parse_json_body(deep)


@pytest.mark.parametrize("text, stored", [
    ("2026-02-24T11:18:18.123Z", "2026-02-24T11:18:18.123000Z"),
    ("2026-02-24T11:18:18Z", "2026-02-24T11:18:18.000000Z"),
    ("2026-02-24T13:18:18+02:00", "2026-02-24T11:18:18.000000Z"),
    ("2026-02-24T06:48:18.5-04:30", "2026-02-24T11:18:18.500000Z"),
    ("2026-02-24t11:18:18z", "2026-02-24T11:18:18.000000Z"),  # RFC 3339 §5.6 allows lower case
    ("2026-02-24T11:18:18.123456789Z", "2026-02-24T11:18:18.123456Z"),  # cut to microseconds
])
def test_rfc3339_timestamps_are_accepted_and_stored_in_utc(validator, text, stored):
    assert validator.normalize({"type": "a.b", "ts": text})["ts"] == stored


@pytest.mark.parametrize("text, words", [
    ("2026-W09-2T12:00:00Z", "not an RFC 3339"),
    ("2026-02-24 12:00:00Z", "not an RFC 3339"),
    ("2026-02-24T12:00:00,123Z", "not an RFC 3339"),
    ("2026-02-24T12:00:00+00:00:30", "not an RFC 3339"),
    ("2026-02-24T12:00:00+0000", "not an RFC 3339"),
    ("2026-02-24T12:00Z", "not an RFC 3339"),
    ("2026-02-24T12:00:00Z\n", "not an RFC 3339"),
    ("2026-02-24T12:00:00", "needs a timezone"),
    ("2026-02-30T12:00:00Z", "no such time"),
    ("2026-02-24T24:00:00Z", "no such time"),
    ("2026-02-24T12:00:00+24:00", "out of range"),
    ("2026-02-24T11:59:60Z", "leap seconds"),
])
def test_timestamps_that_are_not_strict_rfc3339_are_refused_at_ts(validator, text, words):
    with pytest.raises(EventError) as info:
        validator.normalize({"type": "a.b", "ts": text})
    assert info.value.pointer == "/ts" and words in info.value.message


def test_the_oldest_accepted_day_is_the_one_the_next_compaction_still_keeps():
    # 2026-02-24 23:59: age counts whole UTC days; the next compaction may run after midnight
    late = datetime(2026, 2, 24, 23, 59, tzinfo=timezone.utc).timestamp()
    validator = EventValidator(clock=lambda: late, host="h", delete_days=30)
    assert validator.normalize({"type": "a.b", "ts": "2026-01-27T00:00:00Z"})["ts"].startswith("2026-01-27")
    with pytest.raises(EventError, match="oldest day accepted now is 2026-01-27") as info:
        validator.normalize({"type": "a.b", "ts": "2026-01-26T23:59:59.999Z"})  # 29 days 0 h old
    assert info.value.pointer == "/ts"


def test_the_engine_keeps_chain_on_its_own_events(validator):
    event = validator.normalize({"type": "reactor.started", "chain": ["01CAUSE"]}, "engine.reactor", external=False)
    assert event["chain"] == ["01CAUSE"]
