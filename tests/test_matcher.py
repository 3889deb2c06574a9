"""The decision pipeline (contract §2, §4) with an injected clock: sustained, throttle, confidence."""
from __future__ import annotations

from typing import Any

from engine.playbooks.compiler import Index
from engine.playbooks.matcher import MAX_KEYS, MAX_MATCH_TIMES, Match, Matcher, key_text
from engine.playbooks.model import Playbook, playbook_from
from engine.admission.priorities import decision_priority, event_priority, rank


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pb(id_: str, on: str | list[str] = "agent.down", **fields: Any) -> Playbook:
    return playbook_from({"id": id_, "on": on, "steps": [{"id": "s", "action": "compact"}], **fields})


def down(agent: str = "coder", event_id: str = "e1", **data: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "agent.down", "agent": agent, "data": {"exit_code": 1, **data}}


def ran(match: Match) -> list[str]:
    return [d.playbook_id for d in match.decisions]


def reasons(match: Match) -> dict[str, str]:
    return {s.playbook_id: s.reason for s in match.set_aside}


def test_highest_confidence_wins_and_non_exclusive_runs_beside() -> None:
    matcher = Matcher(Index([pb("restart", confidence=0.9), pb("kill", confidence=0.6),
                             pb("notify", exclusive=False, confidence=0.1), pb("audit", exclusive=False)]), Clock())
    match = matcher.match(down())
    assert ran(match) == ["restart", "audit", "notify"]
    assert reasons(match) == {"kill": "lower confidence than restart"}
    assert [d.exclusive for d in match.decisions] == [True, False, False]


def test_confidence_tie_goes_to_the_smaller_id() -> None:
    matcher = Matcher(Index([pb("b-second", confidence=0.7), pb("a-first", confidence=0.7)]), Clock())
    assert ran(matcher.match(down())) == ["a-first"]


def test_conditions_select_candidates() -> None:
    matcher = Matcher(Index([pb("crashed", when={"data.exit_code": {"ne": 0}}),
                             pb("coder-only", when={"agent": "coder"}, exclusive=False)]), Clock())
    assert ran(matcher.match(down("analyst"))) == ["crashed"]
    assert ran(matcher.match(down("coder", exit_code=0))) == ["coder-only"]
    assert matcher.match({"id": "x", "type": "agent.heartbeat", "agent": "coder"}) == Match("x", "agent.heartbeat")


def test_disabled_is_set_aside_and_the_next_best_runs() -> None:
    matcher = Matcher(Index([pb("off", confidence=0.99, enabled=False), pb("on", confidence=0.5)]), Clock())
    match = matcher.match(down())
    assert ran(match) == ["on"] and reasons(match) == {"off": "disabled"}


def test_sustained_fires_on_the_nth_match_inside_the_window_then_resets() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("flappy", sustained={"count": 3, "within": "60s"})]), clock)
    assert matcher.match(down()).reason == "sustained 1/3"
    clock.now += 30
    assert matcher.match(down()).reason == "sustained 2/3"
    clock.now += 30  # the first match is exactly 60 s old: still inside
    assert ran(matcher.match(down())) == ["flappy"]
    clock.now += 1
    assert matcher.match(down()).reason == "sustained 1/3"  # the count reset when it fired


def test_sustained_window_slides() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("twice", sustained={"count": 2, "within": "10s"})]), clock)
    matcher.match(down())
    clock.now += 11
    assert matcher.match(down()).reason == "sustained 1/2"  # the first one fell out of the window
    clock.now += 10
    assert ran(matcher.match(down())) == ["twice"]


def test_sustained_counts_even_when_another_playbook_wins() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("strong", confidence=0.9, throttle={"within": "1m"}),
                             pb("patient", confidence=0.5, sustained={"count": 2, "within": "1m"})]), clock)
    first = matcher.match(down())
    assert ran(first) == ["strong"] and reasons(first) == {"patient": "sustained 1/2"}
    clock.now += 5
    second = matcher.match(down())  # strong is throttled now; patient has seen two matches
    assert ran(second) == ["patient"] and reasons(second) == {"strong": "throttled"}


def test_throttle_per_key_value_from_the_last_firing() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("restart", throttle={"within": "5m", "key": ["agent"]})]), clock)
    assert ran(matcher.match(down("coder"))) == ["restart"]
    clock.now += 60
    assert matcher.match(down("coder")).reason == "throttled"
    assert ran(matcher.match(down("analyst"))) == ["restart"]  # another key value
    clock.now += 240  # 5 min after coder's run: allowed again
    assert ran(matcher.match(down("coder"))) == ["restart"]
    clock.now += 299
    assert matcher.match(down("coder")).reason == "throttled"


def test_sustained_is_kept_per_throttle_key() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("twice", sustained={"count": 2, "within": "1m"},
                                throttle={"within": "1s", "key": "agent"})]), clock)
    assert matcher.match(down("coder")).reason == "sustained 1/2"
    assert matcher.match(down("analyst")).reason == "sustained 1/2"
    assert ran(matcher.match(down("coder"))) == ["twice"]


def test_no_key_means_one_global_key() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("once", throttle={"within": "1m"})]), clock)
    assert ran(matcher.match(down("coder"))) == ["once"]
    assert matcher.match(down("analyst")).reason == "throttled"


def test_coalesce_key_is_playbook_and_throttle_key_value() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("keyed", throttle={"within": "1s", "key": ["agent", "data.missing"]}),
                             pb("global", exclusive=False)]), clock)
    match = matcher.match(down("coder", event_id="ev-9"))
    assert [(d.coalesce_key, d.cause) for d in match.decisions] == [
        (("keyed", '["coder",null]'), "ev-9"), (("global", "[]"), "ev-9")]


def test_best_reason_when_nothing_runs() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("low", confidence=0.2, enabled=False),
                             pb("high", confidence=0.8, sustained={"count": 2, "within": "1m"})]), clock)
    match = matcher.match(down())
    assert match.decisions == () and match.reason == "sustained 1/2"
    assert [s.kind for s in match.set_aside] == ["sustained", "disabled"]


def test_priority_from_event_type_unless_the_playbook_says() -> None:
    matcher = Matcher(Index([pb("cpu", on="resource.cpu_spike"), pb("pinned", on="resource.cpu_spike",
                                                                      priority="P0", exclusive=False)]), Clock())
    match = matcher.match({"id": "c", "type": "resource.cpu_spike", "data": {}})
    assert [(d.playbook_id, d.priority) for d in match.decisions] == [("cpu", "P1"), ("pinned", "P0")]
    assert [event_priority(t) for t in ("score.degraded", "resource.disk_full", "agent.error", "agent.down",
                                        "agent.heartbeat")] == ["P0", "P1", "P2", "P2", "P3"]
    assert decision_priority("P3", {"type": "score.degraded"}) == "P3"
    assert sorted(["P3", "P0", "P2"], key=rank) == ["P0", "P2", "P3"]


def test_reload_keeps_state_of_playbooks_that_remain() -> None:
    clock = Clock()
    kept = pb("kept", throttle={"within": "1m"})
    matcher = Matcher(Index([kept, pb("gone", exclusive=False, throttle={"within": "1m"})]), clock)
    assert ran(matcher.match(down())) == ["kept", "gone"]
    matcher.index = Index([kept, pb("gone", exclusive=False, throttle={"within": "1m"}, on="agent.error")],
                          previous=matcher.index)
    assert matcher.match(down()).reason == "throttled"


def test_state_of_passed_windows_is_dropped() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("t", throttle={"within": "1s", "key": "data.n"})]), clock)
    for n in range(1000):
        matcher.match(down(n=n))
    clock.now += 120
    matcher.match(down(n=-1))
    assert matcher.tracked == 1


def keyed(i: int | str) -> dict[str, Any]:
    return down(event_id=f"e{i}", k=i)


def test_per_key_state_is_capped_under_50000_unique_keys() -> None:
    """A flood of unique throttle-key values once grew the matcher from 53 to 889 MB; now each playbook
    holds at most MAX_KEYS per map, counts what the cap pushed out, and the keys that remain behave."""
    clock = Clock()
    key = {"key": ["data.k"]}
    matcher = Matcher(Index([pb("patient", sustained={"count": 2, "within": "1h"}, throttle={"within": "1h", **key}),
                             pb("once", exclusive=False, throttle={"within": "1h", **key})]), clock)
    for i in range(50_000):
        clock.now += 0.001
        assert ran(matcher.match(keyed(i))) == ["once"]
    assert MAX_KEYS == 10_000 and matcher.tracked == 2 * MAX_KEYS
    assert matcher.evictions == {"sustained": 40_000, "throttle": 40_000}

    kept = matcher.match(keyed(49_999))  # its second match: sustained reached; `once` is still throttled
    assert ran(kept) == ["patient"] and reasons(kept) == {"once": "throttled"}
    assert ran(matcher.match(keyed(49_999))) == []  # patient's throttle window started now
    evicted = matcher.match(keyed(0))  # its first match was evicted: it counts from one again, and the
    assert reasons(evicted) == {"patient": "sustained 1/2"}  # evicted throttle lets it fire once more
    assert ran(evicted) == ["once"]


def test_windows_that_have_passed_make_room_before_any_live_one_is_evicted() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("once", throttle={"within": "10s", "key": ["data.k"]})]), clock)
    for i in range(MAX_KEYS):
        assert ran(matcher.match(keyed(i))) == ["once"]
    clock.now += 20  # every window has passed, and the minute's sweep is not due: the cap makes room
    for i in range(MAX_KEYS, 2 * MAX_KEYS):
        assert ran(matcher.match(keyed(i))) == ["once"]
    assert matcher.evictions["throttle"] == 0 and matcher.tracked == MAX_KEYS
    assert reasons(matcher.match(keyed(2 * MAX_KEYS - 1))) == {"once": "throttled"}


def test_a_large_count_holds_fewer_keys_and_long_key_values_are_hashed() -> None:
    clock = Clock()
    matcher = Matcher(Index([pb("many", sustained={"count": 1000, "within": "1h"}, throttle={
        "within": "1h", "key": ["data.k"]})]), clock)
    big = "x" * 60_000
    for i in range(500):
        matcher.match(keyed(f"{big}{i}"))
    assert matcher.tracked == MAX_MATCH_TIMES // 1000 and matcher.evictions["sustained"] == 400
    assert len(key_text(matcher.index.playbooks["many"], keyed(big))) == 33  # "#" + 128-bit hash
