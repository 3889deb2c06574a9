"""Playbooks compiled into durable-rules rulesets, found by event type with one dict lookup.

The cost of an event depends only on the playbooks of its own type. Each type is compiled on its own
(`TypeIndex`); a reload recompiles only the types whose playbooks changed. We drive durable-rules' C
extension (`durable_rules_engine`) directly: its Python host runs polling threads over every ruleset and
costs about 13 µs per fired action; a whole assert, drain, retract cycle here costs 3 to 4 µs.

What durable-rules does, measured (docs/matcher.md), and how this module copes:
- `post()` fires one rule per event: we `assert_fact` a projection of the event, drain every fired
  action (so every candidate is known, as `sustained` counting needs), then retract it.
- It coerces types (`"3" == 3`, `"" == 0`), cannot parse `1e+16`, and compares strings by a 16-bit
  length. So the fact holds encodings, not raw values: `k<i>` an equality key (JSON kind + value, hashed
  when long, `""` when the path is absent), `n<i>`/`s<i>` order-preserving hex of a number/string. Equal
  means equal keys; ordering only ever compares numbers with numbers and strings with strings.
- Its alpha network keeps at most 64 pending nodes while matching one fact and 511 children per node: a
  ruleset (`Shard`) holds at most `SHARD_RULES` rules, and a type with more is split.
- It compares a field rule after rule (≈ 50-100 ns each) but finds a field *name* by its hash. So the
  path most rules of a type test for equality (`agent: coder`) is the dispatch path: in Python its value
  picks the shards holding its rules, and in the engine each value is a field name (`d<n>`).
- That hash only picks one of 32 slots to start a linear probe from, and the probe reads every child up to
  the next empty slot, for every field of the fact. Field names are chosen by slot (`_slot`): dispatch
  fields on distinct even slots, at most SHARD_KEYS of them per shard, fact fields on odd ones.
- `matches` (RE2, `regex.py`: the engine's regex is a dialect of its own), very long `in` lists and
  numbers it cannot hold exactly are checked in Python after the engine matched the rest (`residual`).
  An event whose own values cannot be encoded exactly (an integer beyond 2**53 under an ordering test)
  is evaluated by the reference.
- `delete_ruleset` leaks the ruleset's state unless `delete_state` runs first, and `delete_state`
  crashes on a state that never ran an action: a shard primes its ruleset before the first fact and
  releases state and ruleset when it is garbage collected, so memory stays flat across reloads.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import struct
import weakref
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import Any

import durable_rules_engine as engine
import orjson

from engine.playbooks.conditions import MISSING, all_hold, is_number, lookup, split_path
from engine.playbooks.model import Condition, Playbook

SHARD_RULES = 60  # < 64: the engine's stack of pending alpha nodes (error 303 beyond it)
SHARD_BRANCHES = 240  # alternatives (`in` values) per ruleset; a node takes at most 511 children
RULE_BRANCHES = 32  # an `in` list that would take a rule past this is checked in Python
SHARD_FIELDS = 200  # a fact holds at most 255 properties
KEY_HASH_OVER = 128  # longer equality keys are hashed (the engine compares by a 16-bit length)
ORDER_MAX = 30_000  # longer order encodings are not exact in the engine
EXACT_INT = 2**53
_DOUBLE, _BITS = struct.Struct(">d"), struct.Struct(">Q")
ABSENT = ""  # the equality key of an absent path
NOTHING = "!"  # the equality key of a value equal to nothing (it holds a NaN)
_ORDER_OPS = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


class Inexact(Exception):
    """A value the engine cannot compare exactly: the reference evaluator decides instead."""


def _canon(value: Any, nested: bool = False) -> str | None:
    """Text equal for two values exactly when `conditions.same` says so; None for a value equal to nothing."""
    kind = type(value)
    if kind is str:
        return json.dumps(value) if nested else '"' + value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        try:
            return str(value)
        except ValueError:  # beyond Python's int-to-text limit: no float is that large
            return "x" + hex(value)
    if kind is float:
        if value != value:
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if value is None:
        return "null"
    if kind is list:
        items = [_canon(item, True) for item in value]
        return None if None in items else "[" + ",".join(items) + "]"  # type: ignore[arg-type]
    if kind is dict:
        pairs = [(json.dumps(key), _canon(value[key], True)) for key in sorted(value)]
        return None if any(v is None for _, v in pairs) else "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"
    return None


def equality_key(value: Any) -> str:
    """The `k<i>` field: ABSENT, NOTHING, or the canonical text (hashed when long)."""
    if value is MISSING:
        return ABSENT
    text = _canon(value)
    if text is None:
        return NOTHING
    if len(text) > KEY_HASH_OVER:
        return "#" + hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return text


def number_order(value: int | float) -> str:
    """Hex of the IEEE bits, flipped so text order is numeric order; Inexact beyond 2**53 or for NaN."""
    if (type(value) is int and abs(value) > EXACT_INT) or value != value:
        raise Inexact
    bits = _BITS.unpack(_DOUBLE.pack(value + 0.0))[0]  # + 0.0: -0.0 becomes 0.0, as -0.0 == 0.0
    return "%016x" % (bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | 1 << 63)


def string_order(value: str) -> str:
    """UTF-8 hex: its text order is code-point order; Inexact when too long for the engine."""
    encoded = value.encode("utf-8", "surrogatepass").hex()
    if len(encoded) > ORDER_MAX:
        raise Inexact
    return encoded


def _number_field(value: Any) -> str | None:
    return number_order(value) if is_number(value) and value == value else None


def _string_field(value: Any) -> str | None:
    return string_order(value) if type(value) is str else None


# Fact fields by their first letter; an encoder returning None leaves the field out of the fact.
ENCODERS: dict[str, Callable[[Any], str | None]] = {"k": equality_key, "n": _number_field, "s": _string_field}


def _slot(name: str) -> int:
    """Where durable-rules starts looking for a field `name` among a node's children: FNV-1a (32 bits) of the
    name, low 5 bits. It probes linearly from there to the next empty slot, reading every child on the way."""
    value = 0x811C9DC5
    for byte in name.encode():
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value & 31


def _named(prefix: str, slots: Container[int], taken: Container[str] = ()) -> str:
    """The first of `<prefix>0`, `<prefix>1`, ... that is not `taken` and whose probe slot is in `slots`."""
    names = (f"{prefix}{n}" for n in itertools.count())
    return next(name for name in names if name not in taken and _slot(name) in slots)


# Dispatch fields take the even probe slots, one each, so the root of a keyed ruleset (at most SHARD_KEYS
# values) has at most one child per slot besides the primer; fact fields take the odd slots but the
# primer's. A probe then reads at most the child it looks for (with d0..d49 in one ruleset, each fact read
# ≈ 100 children at the root).
_PRIMER_FIELD = "_prime"
FIELD_SLOTS = frozenset(range(1, 32, 2)) - {_slot(_PRIMER_FIELD)}
DISPATCH_NAMES = tuple(_named("d", {slot}) for slot in range(0, 32, 2))
SHARD_KEYS = len(DISPATCH_NAMES)
_FACT_START = {name: {name: 1} for name in DISPATCH_NAMES}  # a dispatched event's fact starts as a copy


class _Never(Exception):
    """A condition no event can satisfy: the playbook is left out of the index."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One playbook as a durable-rules rule: engine terms on fact fields, plus conditions left to Python."""

    playbook: Playbook
    terms: tuple[dict[str, Any], ...]
    residual: tuple[Condition, ...]
    fields: frozenset[str]
    branches: int
    keyed: dict[str, tuple[tuple[str, ...], dict[str, Any]]]  # path → (keys one of which it must have, term)

    def dispatched(self, path: str, names: dict[str, str]) -> Rule:
        """This rule with its equality test on `path` replaced by a test of the dispatch field that its
        ruleset gave each of its keys (`names`), which the engine finds by the name's hash instead of
        comparing every rule's value."""
        keys, term = self.keyed[path]
        tests = [{"$ex": {names[key]: 1}} for key in keys if key in names]
        first = tests[0] if len(tests) == 1 else {"$or": tests}  # first: the root finds it by name
        terms = (first, *(t for t in self.terms if t is not term))
        return Rule(self.playbook, terms, self.residual, _fields(terms), self.branches, self.keyed)


FactField = tuple[str, tuple[str, ...], Callable[[Any], str | None]]  # name, path split, encoder


class RuleBuilder:
    """Turns conditions into engine terms on fact fields, which it names and lists in `fields`."""

    def __init__(self) -> None:
        self.fields: dict[str, FactField] = {}
        self._names: dict[tuple[str, str], str] = {}
        self._slots: set[int] = set()
        self._layouts: dict[frozenset[str], tuple[FactField, ...]] = {}

    def field(self, kind: str, path: str) -> str:
        """The field of encoding `kind` (a key of ENCODERS) of `path`: `<kind><n>`, on a field slot that
        no other field takes while one is free (a node's children then differ in slot too)."""
        name = self._names.get((kind, path))
        if name is None:
            name = self._names[(kind, path)] = _named(kind, FIELD_SLOTS - self._slots or FIELD_SLOTS, self.fields)
            self._slots.add(_slot(name))
            self.fields[name] = (name, split_path(path), ENCODERS[kind])
        return name

    def layout(self, used: Iterable[str]) -> tuple[FactField, ...]:
        """The fields `used`, in the order they were named: one tuple for all shards that use the same."""
        key = frozenset(used)
        found = self._layouts.get(key)
        if found is None:
            found = self._layouts[key] = tuple(field for name, field in self.fields.items() if name in key)
        return found

    def build(self, playbook: Playbook) -> Rule | None:
        """The rule, or None when a condition can never hold."""
        terms: list[dict[str, Any]] = []
        residual: list[Condition] = []
        keyed: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}
        branches = 1
        try:
            # `in` lists last and shortest first, so the budget keeps as many in the engine as it can.
            for condition in sorted(playbook.when, key=lambda c: (c.op == "in", _list_len(c))):
                term = self.term(condition)
                if term is None:
                    continue
                width = len(term["$or"]) if "$or" in term else 1
                if term is _RESIDUAL or branches * width > RULE_BRANCHES:
                    residual.append(condition)
                    continue
                branches *= width
                if condition.op in ("eq", "in"):
                    found = tuple(alt[self.field("k", condition.path)] for alt in term.get("$or", (term,)))
                    keyed[condition.path] = (found, term)
                terms.append(term)
        except _Never:
            return None
        fields = _fields(terms)
        if len(fields) > SHARD_FIELDS:
            return Rule(playbook, (), playbook.when, frozenset(), 1, {})
        return Rule(playbook, tuple(terms), tuple(residual), fields, branches, keyed)

    def term(self, condition: Condition) -> dict[str, Any] | None:
        """The engine term for one condition; None when it always holds; _RESIDUAL for Python."""
        op, value = condition.op, condition.value
        if op == "matches":
            return _RESIDUAL
        if op == "exists":
            key = self.field("k", condition.path)
            return {"$neq": {key: ABSENT}} if value else {key: ABSENT}
        if op in _ORDER_OPS:
            return self._order(condition)
        key = self.field("k", condition.path)
        if op in ("eq", "ne"):
            found = _keys([value])
            if not found:
                if op == "eq":
                    raise _Never
                return None
            return {key: found[0]} if op == "eq" else {"$neq": {key: found[0]}}
        found = _keys(value)
        if op == "in":
            if not found:
                raise _Never
            return {key: found[0]} if len(found) == 1 else {"$or": [{key: k} for k in found]}
        if not found:  # not_in nothing
            return None
        tests = [{"$neq": {key: k}} for k in found]
        return tests[0] if len(tests) == 1 else {"$and": tests}

    def _order(self, condition: Condition) -> dict[str, Any]:
        op, bound = _ORDER_OPS[condition.op], condition.value
        try:
            if is_number(bound):
                if bound != bound:
                    raise _Never
                return {op: {self.field("n", condition.path): number_order(bound)}}
            if type(bound) is str:
                return {op: {self.field("s", condition.path): string_order(bound)}}
        except Inexact:
            return _RESIDUAL
        raise _Never


_RESIDUAL: dict[str, Any] = {"residual": True}


def _keys(values: list[Any]) -> list[str]:
    """Distinct equality keys of `values`, leaving out those equal to nothing."""
    return list(dict.fromkeys(k for k in map(equality_key, values) if k != NOTHING))


def _list_len(condition: Condition) -> int:
    return len(condition.value) if isinstance(condition.value, list) else 0


def _fields(terms: Iterable[dict[str, Any]]) -> frozenset[str]:
    """Fact fields the terms read, computed from the event (dispatch fields `d<n>` are not)."""
    return frozenset(name for term in terms for name in _names(term) if name[0] in ENCODERS)


def _names(term: Any) -> Iterable[str]:
    """Fact fields a term reads."""
    if isinstance(term, dict):
        for key, inner in term.items():
            if key.startswith("$"):
                yield from _names(inner)
            else:
                yield key
    elif isinstance(term, list):
        for item in term:
            yield from _names(item)


_PRIMER = orjson.dumps({_PRIMER_FIELD: "1"}).decode()  # a fact only the primer rule matches


def _prime(handle: int) -> None:
    """Run one action through a ruleset before its first fact. The first fact creates the ruleset's
    state, which holds uninitialised pointers until an action has run: `delete_state` would free them."""
    result = engine.assert_fact(handle, _PRIMER)
    engine.start_action_for_state(handle, result[1])
    engine.complete_and_start_action(handle, result[1])
    engine.retract_fact(handle, _PRIMER)


def _release(handle: int, primed: bool) -> None:
    """Free a ruleset: its state first (delete_ruleset alone leaks it), if a fact ever created one."""
    if primed:
        engine.delete_state(handle, None)
    engine.delete_ruleset(handle)


class Shard:
    """One durable-rules ruleset of at most SHARD_RULES rules, freed with the object."""

    __slots__ = ("__weakref__", "_finalizer", "fields", "handle", "primed", "rules")

    def __init__(self, name: str, rules: list[Rule], builder: RuleBuilder) -> None:
        self.rules = {f"r{i}": rule for i, rule in enumerate(rules)}
        definition = {key: {"all": [{"m": _conjunction(rule.terms)}]} for key, rule in self.rules.items()}
        definition["_prime"] = {"all": [{"m": {_PRIMER_FIELD: "1"}}]}
        self.fields = builder.layout(field for rule in rules for field in rule.fields)
        self.handle = engine.create_ruleset(name, orjson.dumps(definition).decode())
        # The state (≈ 140 KB + 15-20 KB per rule) is created by the first fact: a type no event ever
        # names costs only its rules' definitions.
        self.primed = False
        self._finalizer = weakref.finalize(self, _release, self.handle, False)

    def fire(self, event: Any, cache: dict[str, str | None], dispatch: dict[str, int]) -> list[Rule]:
        """The rules whose engine terms hold for `event`. `cache` shares field encodings across shards;
        `dispatch` is the start of the fact: the dispatch fields of the event's key, if any rule names it."""
        if not self.primed:
            _prime(self.handle)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _release, self.handle, True)
            self.primed = True
        fact: dict[str, Any] = dispatch.copy()
        for name, parts, encode in self.fields:
            value = cache[name] if name in cache else cache.setdefault(name, encode(lookup(event, parts)))
            if value is not None:
                fact[name] = value
        text = orjson.dumps(fact).decode()
        result = None
        try:
            result = engine.assert_fact(self.handle, text)
            if result[0] != 0:
                return []
            fired = []
            message = engine.start_action_for_state(self.handle, result[1])[1]
            while message:
                fired.append(self.rules[message[2:message.index('"', 2)]])
                message = engine.complete_and_start_action(self.handle, result[1])
        except Exception:
            _forget(self.handle, text, result)
            raise
        engine.retract_fact(self.handle, text)
        return fired


def _forget(handle: int, text: str, result: tuple[int, int] | None) -> None:
    """After an engine error, leave no action pending and no fact behind for the next event."""
    undo = [lambda: engine.retract_fact(handle, text)]
    if result is not None:
        undo.insert(0, lambda: engine.abandon_action(handle, result[1]))
    for step in undo:
        try:
            step()
        except Exception:  # nothing of that kind was left
            pass


def _conjunction(terms: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return terms[0] if len(terms) == 1 else {"$and": list(terms)}


class _Packer:
    """Fills shards in order, each within the engine's limits. With a dispatch `path`, a shard also takes
    at most SHARD_KEYS keys, which get their dispatch fields when it closes (`names`)."""

    def __init__(self, name: str, builder: RuleBuilder, path: str | None = None) -> None:
        self.name, self.builder, self.path = name, builder, path
        self.shards: list[Shard] = []
        self.names: list[dict[str, str]] = []  # per shard: key → its dispatch field there
        self.pending: list[Rule] = []
        self.keys: dict[str, None] = {}
        self.used: set[str] = set()

    def add(self, rule: Rule, keys: Iterable[str] = ()) -> int:
        """Queue `rule` (once per shard) for events of `keys`; returns the number of the shard it lands in."""
        new = dict.fromkeys(keys)
        queued = any(other is rule for other in self.pending)
        used = self.used | rule.fields
        fits = len(self.keys | new) <= SHARD_KEYS and (queued or (
            len(self.pending) < SHARD_RULES and len(used) <= SHARD_FIELDS
            and sum(r.branches for r in self.pending) + rule.branches <= SHARD_BRANCHES))
        if self.pending and not fits:
            self.flush()
            queued, used = False, set(rule.fields)
        if not queued:
            self.pending.append(rule)
        self.keys |= new
        self.used = used
        return len(self.shards)

    def flush(self) -> list[Shard]:
        """Close the shard being filled; returns every shard."""
        if self.pending:
            names = dict(zip(self.keys, DISPATCH_NAMES))
            rules = self.pending if self.path is None else [r.dispatched(self.path, names) for r in self.pending]
            self.shards.append(Shard(f"{self.name}#{len(self.shards)}", rules, self.builder))
            self.names.append(names)
            self.pending, self.keys, self.used = [], {}, set()
        return self.shards


# The shards an event visits, each with the start of the fact (its dispatch fields; copied, never changed).
Route = tuple[tuple[Shard, dict[str, int]], ...]


class TypeIndex:
    """The compiled playbooks of one event type.

    Dispatch: the path most rules test for equality (often `agent`) picks the shards an event visits
    with one dict lookup in Python; inside a shard its rules find their key by a field name (hashed by
    the engine) rather than by comparing values rule after rule. Rules without that test sit in the
    `rest` shards, which every event of the type visits.
    """

    __slots__ = ("always", "by_key", "event_type", "fallbacks", "playbooks", "problem", "repeats", "rest",
                 "rest_route", "split")

    def __init__(self, event_type: str, playbooks: tuple[Playbook, ...]) -> None:
        self.event_type = event_type
        self.playbooks = playbooks
        self.fallbacks = 0  # events the reference evaluator decided (inexact values, engine errors)
        self.problem: str | None = None  # why the engine could not take this type (the reference decides)
        self.rest: tuple[Shard, ...] = ()
        self.rest_route: Route = ()  # the rest shards, which events of values no rule names visit
        self.by_key: dict[str, Route] = {}  # value at the dispatch path → the shards its events visit
        self.split: tuple[str, ...] | None = None
        self.repeats = False  # a rule sits in two shards one event may visit: drop the repeat
        builder = RuleBuilder()
        rules = [rule for rule in map(builder.build, playbooks) if rule is not None]
        self.always = tuple(rule for rule in rules if not rule.terms)
        try:
            self._build([rule for rule in rules if rule.terms], builder)
        except Exception as exc:  # an engine limit this module does not know: slower, never wrong
            self.problem = f"{type(exc).__name__}: {exc}"
            self.always, self.rest, self.rest_route, self.by_key, self.split = (), (), (), {}, None

    def _build(self, in_engine: list[Rule], builder: RuleBuilder) -> None:
        event_type = self.event_type
        path = _discriminator(in_engine)
        self.split = split_path(path) if path else None
        by_key = _by_key(in_engine, path)
        rest = _Packer(f"aios:{event_type}", builder)
        for rule in in_engine:
            if path not in rule.keyed:
                rest.add(rule)
        self.rest = tuple(rest.flush())
        self.rest_route = tuple((shard, {}) for shard in self.rest)
        keyed = _Packer(f"aios:{event_type}/{path}", builder, path)
        homes: dict[int, set[int]] = {}
        groups: dict[tuple[int, ...], list[str]] = {}  # keys that require the very same rules share shards
        for key in sorted(by_key):
            groups.setdefault(tuple(map(id, by_key[key])), []).append(key)
        for keys in groups.values():
            for first in range(0, len(keys), SHARD_KEYS):
                chunk = keys[first:first + SHARD_KEYS]
                for rule in by_key[chunk[0]]:
                    homes.setdefault(id(rule), set()).add(keyed.add(rule, chunk))
        routes: dict[str, list[tuple[Shard, dict[str, int]]]] = {}
        for shard, names in zip(keyed.flush(), keyed.names):
            for key, name in names.items():
                routes.setdefault(key, []).append((shard, _FACT_START[name]))
        self.by_key = {key: (*route, *self.rest_route) for key, route in routes.items()}
        self.repeats = any(len(found) > 1 for found in homes.values())

    def candidates(self, event: dict[str, Any]) -> list[Playbook]:
        """The playbooks whose `when` holds for `event` (its type is this one)."""
        if self.problem is not None:
            return self.reference(event)
        route = self.rest_route
        if self.split is not None:
            route = self.by_key.get(equality_key(lookup(event, self.split)), route)
        cache: dict[str, str | None] = {}
        try:
            found = [rule for shard, dispatch in route for rule in shard.fire(event, cache, dispatch)]
        except Exception:  # Inexact, or an engine error: the reference decides, never a wrong answer
            self.fallbacks += 1
            return self.reference(event)
        found.extend(self.always)
        out = [rule.playbook for rule in found if not rule.residual or all_hold(rule.residual, event)]
        if self.repeats:
            out = list({playbook.id: playbook for playbook in out}.values())
        return out

    def reference(self, event: dict[str, Any]) -> list[Playbook]:
        """The plain Python answer, for what the engine cannot take (slower, same result)."""
        return [p for p in self.playbooks if all_hold(p.when, event)]


def _by_key(rules: list[Rule], path: str | None) -> dict[str, list[Rule]]:
    """Rules by each equality key they require at `path`."""
    out: dict[str, list[Rule]] = {}
    for rule in rules:
        for key in rule.keyed[path][0] if path in rule.keyed else ():
            out.setdefault(key, []).append(rule)
    return out


def _discriminator(rules: list[Rule]) -> str | None:
    """The path most rules test for equality (ties: the one with more distinct values, then by name)."""
    counts: dict[str, int] = {}
    values: dict[str, set[str]] = {}
    for rule in rules:
        for path, (keys, _) in rule.keyed.items():
            counts[path] = counts.get(path, 0) + 1
            values.setdefault(path, set()).update(keys)
    return min(counts, key=lambda p: (-counts[p], -len(values[p]), p)) if counts else None


class Index:
    """All compiled playbooks: `types[event_type]` → TypeIndex. Rebuilding reuses unchanged types."""

    def __init__(self, playbooks: Iterable[Playbook], previous: Index | None = None) -> None:
        by_type: dict[str, list[Playbook]] = {}
        self.playbooks: dict[str, Playbook] = {}
        for playbook in sorted(playbooks, key=lambda p: p.id):
            self.playbooks[playbook.id] = playbook
            for event_type in playbook.on:
                by_type.setdefault(event_type, []).append(playbook)
        old = previous.types if previous is not None else {}
        self.types: dict[str, TypeIndex] = {}
        for event_type, members in by_type.items():
            group = tuple(members)
            kept = old.get(event_type)
            self.types[event_type] = kept if kept is not None and _same_objects(kept.playbooks, group) \
                else TypeIndex(event_type, group)

    @property
    def problems(self) -> dict[str, str]:
        """Event types the engine could not compile (evaluated in Python instead), with the error."""
        return {name: t.problem for name, t in self.types.items() if t.problem is not None}

    @property
    def fallbacks(self) -> int:
        """Events decided by the Python reference so far (values the engine cannot compare exactly)."""
        return sum(t.fallbacks for t in self.types.values())

    def candidates(self, event: dict[str, Any]) -> list[Playbook]:
        """Playbooks whose `on` and `when` hold for `event`; [] for a type no playbook names."""
        compiled = self.types.get(event.get("type"))  # type: ignore[arg-type]
        return compiled.candidates(event) if compiled is not None else []


def _same_objects(a: tuple[Playbook, ...], b: tuple[Playbook, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))
