"""The compiled matcher (durable-rules) agrees with the plain Python reference on every operator."""
from __future__ import annotations

import math
import random
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.playbooks import compiler
from engine.playbooks.compiler import SHARD_RULES, Index
from engine.playbooks.conditions import all_hold
from engine.playbooks.model import OPERATORS, Condition, Playbook

TYPE = "test.event"
PATHS = ("agent", "severity", "data.x", "data.y", "data.items.0", "data.deep.z")
REGEXES = ("^co", "er$", "[0-9]+", "a|b", "^$", "é", r"\d\.\d", "(unclosed")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, -1.5, 1e16, 1e300, 5e-324, math.inf, -math.inf, math.nan]),
    st.sampled_from([2**53, 2**53 + 1, -(2**63), 10**30]),
    st.text(alphabet="ab0-é\"\\\n😀", max_size=4),
    st.sampled_from(["coder", "analyst", "3", "", "true", "null", "x" * 200]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from("ab"), inner, max_size=2)),
                      max_leaves=4)
ordered_values = st.one_of(st.integers(-3, 3), st.sampled_from([2.5, -0.0, 1e16, 2**53 + 1, math.inf]),
                           st.text(alphabet="ab0é😀", max_size=3))


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    op = draw(st.sampled_from(OPERATORS))
    path = draw(st.sampled_from(PATHS))
    if op in ("eq", "ne"):
        value: Any = draw(values)
    elif op in ("in", "not_in"):
        value = draw(st.lists(values, max_size=4))
    elif op == "matches":
        value = draw(st.sampled_from(REGEXES))
    elif op == "exists":
        value = draw(st.booleans())
    else:
        value = draw(ordered_values)
    return Condition(path, op, value)


def playbook(index: int, when: tuple[Condition, ...], type_: str = TYPE) -> Playbook:
    return Playbook(id=f"p{index:05d}", on=(type_,), when=when)


@st.composite
def events(draw: st.DrawFn, pool: list[Any]) -> dict[str, Any]:
    """Events whose values often come from the playbooks' own (`pool`), so that many conditions hold."""

    def value() -> Any:
        return draw(st.sampled_from(pool)) if pool and draw(st.booleans()) else draw(values)

    data: dict[str, Any] = {}
    event: dict[str, Any] = {"id": "e", "type": TYPE, "data": data}
    for key, container in (("agent", event), ("severity", event), ("x", data), ("y", data)):
        if draw(st.booleans()):
            container[key] = value()
    if draw(st.booleans()):
        data["items"] = [value()] if draw(st.booleans()) else value()
    if draw(st.booleans()):
        data["deep"] = {"z": value()} if draw(st.booleans()) else value()
    return event


def reference(playbooks: list[Playbook], event: dict[str, Any]) -> set[str]:
    return {p.id for p in playbooks if TYPE in p.on and all_hold(p.when, event)}


def compiled(index: Index, event: dict[str, Any]) -> set[str]:
    return {p.id for p in index.candidates(event)}


def check_parity(data: st.DataObject, max_playbooks: int) -> None:
    whens = data.draw(st.lists(st.lists(conditions(), max_size=4).map(tuple), min_size=1, max_size=max_playbooks))
    playbooks = [playbook(i, when) for i, when in enumerate(whens)]
    index = Index(playbooks)
    pool = [c.value for when in whens for c in when if c.op in ("eq", "ne", "gt", "gte", "lt", "lte")]
    pool += [v for when in whens for c in when if c.op in ("in", "not_in") for v in c.value]
    for _ in range(8):
        event = data.draw(events(pool))
        assert compiled(index, event) == reference(playbooks, event), event


PARITY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.data_too_large])


@PARITY
@given(data=st.data())
def test_compiled_matches_reference(data: st.DataObject) -> None:
    """Random playbooks and events, every operator, absent paths, mixed kinds: same candidates."""
    check_parity(data, 12)


@PARITY
@given(data=st.data())
def test_sharded_and_dispatched_match_reference(data: st.DataObject) -> None:
    """The same with tiny shards, so that every type is split over several rulesets and dispatched."""
    with patch.object(compiler, "SHARD_RULES", 2), patch.object(compiler, "SHARD_BRANCHES", 6), \
            patch.object(compiler, "SHARD_KEYS", 2):
        check_parity(data, 16)


def test_equality_follows_json_kinds() -> None:
    """"3" is not 3, true is not 1, 1 is 1.0, absent is not null; ne/not_in hold on an absent path."""
    playbooks = [
        playbook(0, (Condition("data.v", "eq", 3),)),
        playbook(1, (Condition("data.v", "eq", "3"),)),
        playbook(2, (Condition("data.v", "eq", True),)),
        playbook(3, (Condition("data.v", "eq", None),)),
        playbook(4, (Condition("data.v", "ne", 3),)),
        playbook(5, (Condition("data.v", "not_in", [3, "x"]),)),
        playbook(6, (Condition("data.v", "exists", False),)),
        playbook(7, (Condition("data.v", "gt", 2),)),
        playbook(8, (Condition("data.v", "gt", "2"),)),
    ]
    index = Index(playbooks)
    cases = [(3, {"p00000", "p00007"}), (3.0, {"p00000", "p00007"}), ("3", {"p00001", "p00004", "p00005", "p00008"}),
             (True, {"p00002", "p00004", "p00005"}), (1, {"p00004", "p00005"}),
             (None, {"p00003", "p00004", "p00005"})]
    for value, expected in cases:
        assert compiled(index, {"type": TYPE, "data": {"v": value}}) == expected, value
    assert compiled(index, {"type": TYPE, "data": {}}) == {"p00004", "p00005", "p00006"}


def test_other_types_are_not_candidates() -> None:
    index = Index([playbook(0, ()), playbook(1, (), "other.event")])
    assert compiled(index, {"type": TYPE}) == {"p00000"}
    assert compiled(index, {"type": "third.event"}) == set()


def big_type(count: int, seed: int) -> tuple[list[Playbook], list[dict[str, Any]]]:
    """`count` playbooks on one type: most keyed by agent, some not; mixed operators."""
    rng = random.Random(seed)
    agents = [f"agent{i}" for i in range(count // 8 + 1)]
    playbooks = []
    for i in range(count):
        when = [Condition("data.pct", "gt", rng.randrange(0, 100))]
        if i % 10:
            when.append(Condition("agent", "eq", rng.choice(agents)))
        else:
            when.append(Condition("severity", "in", ["warning", "error"]))
        if i % 7 == 0:
            when.append(Condition("data.host", "matches", "^web"))
        playbooks.append(playbook(i, tuple(when)))
    sample = [{"type": TYPE, "agent": rng.choice(agents), "severity": rng.choice(["info", "error"]),
               "data": {"pct": rng.randrange(0, 101), "host": rng.choice(["web1", "db1"])}} for _ in range(200)]
    return playbooks, sample


def test_600_playbooks_on_one_type() -> None:
    """More than one ruleset can hold (error 303 past 64 matches): sharded, still exact."""
    playbooks, sample = big_type(600, 1)
    index = Index(playbooks)
    assert len(index.types[TYPE].rest) + len(index.types[TYPE].by_key) > 1
    for event in sample:
        assert compiled(index, event) == reference(playbooks, event)
    assert index.types[TYPE].fallbacks == 0


def test_5000_playbooks_on_one_type() -> None:
    playbooks, sample = big_type(5000, 2)
    index = Index(playbooks)
    for event in sample[:60]:
        assert compiled(index, event) == reference(playbooks, event)
    assert index.types[TYPE].fallbacks == 0


def test_all_matching_beyond_one_ruleset() -> None:
    """200 playbooks that all match one event: every one is a candidate (post() would give one)."""
    playbooks = [playbook(i, (Condition("data.pct", "gt", i % 50),)) for i in range(200)]
    index = Index(playbooks)
    assert compiled(index, {"type": TYPE, "data": {"pct": 99}}) == {p.id for p in playbooks}
    assert len(index.types[TYPE].rest) >= 200 // SHARD_RULES


def test_in_lists_on_the_dispatch_path() -> None:
    """A playbook listed under several values is found once, whichever value the event has."""
    playbooks = [playbook(i, (Condition("agent", "eq", f"a{i % 40}"), Condition("data.n", "gte", i % 3)))
                 for i in range(150)]
    playbooks.append(playbook(999, (Condition("agent", "in", [f"a{i}" for i in range(40)]),)))
    index = Index(playbooks)
    assert index.types[TYPE].split == ("agent",)
    for i in range(40):
        event = {"type": TYPE, "agent": f"a{i}", "data": {"n": 1}}
        found = index.candidates(event)
        assert len(found) == len({p.id for p in found}) and {p.id for p in found} == reference(playbooks, event)


def test_values_spread_over_rulesets_of_few_keys() -> None:
    """50 agents with a playbook each: rulesets of at most SHARD_KEYS values; an event visits one of them.
    An `in` list over 20 of the agents sits in two of those rulesets and is still found once."""
    playbooks = [playbook(i, (Condition("agent", "eq", f"a{i}"), Condition("data.n", "gt", 0))) for i in range(50)]
    playbooks.append(playbook(99, (Condition("agent", "in", [f"a{i}" for i in range(20)]),)))
    index = Index(playbooks)
    compiled_type = index.types[TYPE]
    assert len(compiled_type.by_key) == 50 and compiled_type.repeats
    for i in range(50):
        route = compiled_type.by_key[f'"a{i}']
        assert len(route) == 1 and len(route[0][0].rules) <= compiler.SHARD_KEYS + 1
        event = {"type": TYPE, "agent": f"a{i}", "data": {"n": 1}}
        found = [p.id for p in index.candidates(event)]
        assert len(found) == len(set(found)) and set(found) == reference(playbooks, event)


def test_probe_slots() -> None:
    """durable-rules probes a node's children from FNV-1a(name) mod 32: dispatch fields take one even slot
    each, fact fields odd slots other than the primer's, distinct while there are free ones."""
    assert compiler._slot("a") == 0xE40C292C % 32 and compiler._slot("foobar") == 0xBF9CF968 % 32
    assert sorted(map(compiler._slot, compiler.DISPATCH_NAMES)) == list(range(0, 32, 2))
    builder = compiler.RuleBuilder()
    names = [builder.field(kind, f"data.p{i}") for i in range(10) for kind in "kns"]
    slots = [compiler._slot(name) for name in names]
    assert len(set(names)) == 30 and set(slots) <= compiler.FIELD_SLOTS
    assert len(set(slots[:len(compiler.FIELD_SLOTS)])) == len(compiler.FIELD_SLOTS)
    assert compiler._slot(compiler._PRIMER_FIELD) not in compiler.FIELD_SLOTS


def test_reload_reuses_unchanged_types() -> None:
    first = [playbook(0, ()), playbook(1, (), "other.event")]
    old = Index(first)
    new = Index([first[0], playbook(2, (), "other.event")], previous=old)
    assert new.types[TYPE] is old.types[TYPE]
    assert new.types["other.event"] is not old.types["other.event"]


def test_an_engine_error_falls_back_to_the_reference() -> None:
    """Past the engine's limits (here 70 rules matching one fact, error 303) the answer is still exact."""
    playbooks = [playbook(i, (Condition("data.pct", "gt", i),)) for i in range(70)]
    with patch.object(compiler, "SHARD_RULES", 100):
        index = Index(playbooks)
    for pct in (99, 5, 99):
        event = {"type": TYPE, "data": {"pct": pct}}
        assert compiled(index, event) == reference(playbooks, event)
    assert index.fallbacks == 2
