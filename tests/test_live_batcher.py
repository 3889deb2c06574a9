"""`/ws` batching rules, filters and merge patches, with a fake clock (contract §5)."""
from __future__ import annotations

import asyncio
import copy

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.live.batcher import Batcher, Filter, FilterError, parse_message
from engine.live.hub import Hub
from engine.live.patch import apply, diff


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(n: int, type_: str = "agent.heartbeat", severity: str = "info", agent: str | None = "coder") -> dict:
    e = {"id": f"E{n:04d}", "type": type_, "severity": severity, "data": {"n": n}}
    if agent:
        e["agent"] = agent
    return e


def test_the_tenth_pending_event_makes_a_frame_due_at_once():
    batcher = Batcher(Clock())
    assert [batcher.add(event(n)) for n in range(10)] == [False] * 9 + [True]
    assert [e["id"] for e in batcher.take()] == [f"E{n:04d}" for n in range(10)]
    assert not batcher.add(event(10))  # counting starts again after a take


def test_one_event_is_due_five_seconds_after_it_arrived_and_not_before():
    clock = Clock(1000.0)
    batcher = Batcher(clock)
    assert not batcher.add(event(1))
    clock.now = 1003.0
    batcher.add(event(2))  # a later event does not push the deadline back: the first one sets it
    assert not batcher.due(1004.999)
    assert batcher.due(1005.0)
    assert [e["id"] for e in batcher.take()] == ["E0001", "E0002"]


def test_nothing_pending_is_never_due():
    clock = Clock()
    batcher = Batcher(clock)
    assert not batcher.due(clock.now + 3600)
    assert batcher.take() == []
    batcher.add(event(1))
    batcher.take()
    assert not batcher.due(clock.now + 3600)


def test_filters_by_type_glob_severity_and_agent():
    f = parse_message(b'{"filter": {"types": ["resource.*", "agent.down"], "min_severity": "warning",'
                      b' "agents": ["coder"]}}')
    assert f.matches(event(1, "resource.cpu_spike", "error"))
    assert f.matches(event(2, "agent.down", "critical"))
    assert not f.matches(event(3, "agent.heartbeat", "critical"))  # type
    assert not f.matches(event(4, "resource.cpu_spike", "info"))  # severity
    assert not f.matches(event(5, "resource.cpu_spike", "error", agent="analyst"))  # agent
    assert not f.matches(event(6, "resource.cpu_spike", "error", agent=None))
    assert Filter.parse({}).matches(event(7, "x.y", "debug", agent=None))
    assert parse_message('{"filter": null}') == Filter()


def test_hidden_events_are_not_sent_but_still_start_the_wait():
    clock = Clock()
    batcher = Batcher(clock, filter=Filter.parse({"types": ["resource.*"]}))
    assert not any(batcher.add(event(n)) for n in range(20))  # none shown: never 10 pending
    assert batcher.due(clock.now + 5)  # they may have changed the state: a state-only frame may go
    assert batcher.take() == []


def test_a_new_filter_applies_to_what_is_pending():
    batcher = Batcher(Clock())
    batcher.add(event(1, "agent.heartbeat"))
    batcher.add(event(2, "agent.error", "error"))
    batcher.refilter(Filter.parse({"min_severity": "warning"}))
    assert [e["id"] for e in batcher.take()] == ["E0002"]


@pytest.mark.parametrize("message, error, pointer", [
    ('{"filter": {"types": ["resource.["]}}', "bad type glob 'resource.['", "/filter/types/0"),
    ('{"filter": {"types": ["Resource.*"]}}', "bad type glob", "/filter/types/0"),
    ('{"filter": {"types": "resource.*"}}', "expected a list of strings", "/filter/types"),
    ('{"filter": {"min_severity": "loud"}}', "unknown severity 'loud' (one of debug, info,", "/filter/min_severity"),
    ('{"filter": {"min_severity": ["x"]}}', "unknown severity", "/filter/min_severity"),
    ('{"filter": {"agents": ["coder", 3]}}', "expected a non-empty string", "/filter/agents/1"),
    ('{"filter": {"agent": ["coder"]}}', "unknown filter key 'agent'", "/filter/agent"),
    ('{"filter": [], "x": 1}', "unknown message key 'x'", "/x"),
    ('{"hello": 1}', 'a client message is {"filter": {...}}', ""),
    ("{nope", "invalid JSON", ""),
])
def test_bad_messages_say_what_and_where(message, error, pointer):
    with pytest.raises(FilterError) as caught:
        parse_message(message)
    assert caught.value.message.startswith(error) and caught.value.pointer == pointer


NESTED = [
    ({}, {"a": 1}),
    ({"a": 1, "b": 2}, {"a": 1}),
    ({"a": {"b": {"c": 1, "d": 2}}}, {"a": {"b": {"c": 1, "d": 3, "e": [1]}}}),
    ({"a": [1, 2, {"x": 1}]}, {"a": [1, 2, {"x": 2}]}),
    ({"a": {"b": 1}}, {"a": [1]}),
    ({"a": [1]}, {"a": {"b": {"c": 1}}}),
    ({"a": 1}, {"a": True}),
    ({"a": {"b": 1}}, {"a": {}}),
    ({"agents": {"coder": {"state": "idle", "score": 0.9}, "monitor": {"state": "down"}}},
     {"agents": {"coder": {"state": "running", "score": 0.9}}, "queue": {"depth": 3}}),
]


@pytest.mark.parametrize("old, new", NESTED)
def test_a_merge_patch_turns_old_into_new(old, new):
    frozen = copy.deepcopy(old)
    assert apply(old, diff(old, new) or {}) == new  # None: nothing to patch
    assert old == frozen  # apply copies


def test_patches_hold_only_changes():
    old = {"agents": {"coder": {"state": "idle", "score": 0.9}, "monitor": {"state": "down"}}, "score": 0.8}
    new = {"agents": {"coder": {"state": "running", "score": 0.9}}, "score": 0.8, "queue": [1]}
    assert diff(old, new) == {"agents": {"coder": {"state": "running"}, "monitor": None}, "queue": [1]}
    assert diff(new, copy.deepcopy(new)) is None
    assert diff({"a": None}, {}) is None  # null and absent are one state in a merge patch


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=3),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=2), inner, max_size=3), max_leaves=12)
docs = st.dictionaries(st.text(max_size=2), json_values, max_size=4)


def _no_nulls(value):
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    return value


@settings(max_examples=300, deadline=None)
@given(docs, docs)
def test_merge_patch_round_trip_on_any_documents(old, new):
    assert _no_nulls(apply(old, diff(old, new) or {})) == _no_nulls(new)  # nulls in objects read as absent


def test_hub_frames_carry_only_what_changed_and_no_empty_ones():
    async def scenario():
        clock = Clock()
        doc = {"agents": {"coder": {"state": "idle"}, "monitor": {"state": "idle"}}, "queue": {"depth": 0}}
        reads = []
        hub = Hub(lambda: reads.append(clock.now) or doc, clock, "ep")
        conn = hub.attach()
        first = await conn.next()
        assert first["snapshot"] and first["seq"] == 1 and first["state"] == doc and first["events"] == []
        doc["agents"]["coder"]["state"] = "running"
        clock.now += 0.1  # a flood reads the state once every 0.1 s (state_every_s), not once per event
        for n in range(10):
            hub.publish(event(n))
        assert len(reads) == 2
        frame = await conn.next()
        assert (frame["seq"], frame["snapshot"]) == (2, False)
        assert frame["state"] == {"agents": {"coder": {"state": "running"}}}
        hub.set_filter(conn, Filter.parse({"types": ["resource.*"]}))
        assert (await conn.next()) == {"filter": {"types": ["resource.*"], "min_severity": "debug", "agents": []}}
        hub.publish(event(20))  # hidden, and the state did not change: nothing goes
        clock.now += 5
        hub.flush_due()
        doc["queue"]["depth"] = 2
        hub.publish(event(21))  # hidden, but the state changed: a state-only frame 5 s later
        hub.flush_due()
        clock.now += 5
        hub.flush_due()
        frame = await conn.next()
        assert (frame["seq"], frame["events"], frame["state"]) == (3, [], {"queue": {"depth": 2}})
        clock.now += 60
        hub.flush_due()
        conn.close()
        assert await conn.next() is None  # nothing else was queued

    asyncio.run(scenario())


def test_replies_to_a_client_that_never_reads_stop_at_its_buffer():
    async def scenario():
        hub = Hub(lambda: {}, Clock(), "ep", client_buffer=4)
        conn = hub.attach()
        for _ in range(1000):  # a client sending filters in a loop and reading nothing
            hub.set_filter(conn, Filter.parse({}))
        assert hub.counts["dropped_replies"] == 1000 - 3  # the snapshot and three replies fill its buffer
        frames = []
        conn.close()
        while (frame := await conn.next()) is not None:
            frames.append(frame)
        assert len(frames) == 4

    asyncio.run(scenario())


def test_a_resume_while_the_old_connection_lingers_takes_the_stream_over():
    async def scenario():
        clock = Clock()
        hub = Hub(lambda: {}, clock, "ep", state_every_s=0.0)
        old = hub.attach()
        first = await old.next()
        for n in range(10):
            hub.publish(event(n))  # seq 2, still in the old connection's buffer: its peer vanished
        new = hub.attach(f"{first['epoch']}:1")
        assert old.closed and old.reason == "resumed by another connection"
        replayed = await new.next()
        assert (replayed["seq"], [e["data"]["n"] for e in orjson.loads(orjson.dumps(replayed["events"]))]) == \
            (2, list(range(10)))
        hub.detach(old)  # the old handler ends later: the new connection stays attached
        assert hub.stats()["clients"] == 1 and hub.counts["resumed_attached"] == 1

    asyncio.run(scenario())


def test_events_lost_before_the_hub_make_every_streams_next_frame_a_snapshot():
    async def scenario():
        hub = Hub(lambda: {"queue": {"depth": 1}}, Clock(), "ep", state_every_s=0.0)
        conn = hub.attach()
        await conn.next()
        hub.lost(500)
        for n in range(10):
            hub.publish(event(n))
        frame = await conn.next()
        assert frame["snapshot"] is True and frame["state"] == {"queue": {"depth": 1}}
        assert hub.stats()["lost_events"] == 500

    asyncio.run(scenario())


def test_error_pointers_escape_keys_as_rfc_6901_says():
    with pytest.raises(FilterError) as bad:
        parse_message(b'{"filter": {"a/b~c": 1}}')
    assert bad.value.frame()["pointer"] == "/filter/a~1b~0c"


def test_at_shutdown_the_waiting_batch_goes_before_the_connection_closes():
    async def scenario():
        hub = Hub(lambda: {}, Clock(), "ep")
        conn = hub.attach()
        await conn.next()
        hub.publish(event(1))  # a lone event: due in 5 s, but the engine stops now
        hub.close()
        last = await conn.next()
        assert [e["data"]["n"] for e in orjson.loads(orjson.dumps(last["events"]))] == [1]
        assert await conn.next() is None and conn.reason == "engine stopping"

    asyncio.run(scenario())
