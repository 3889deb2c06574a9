"""The JSON Schemas (`schemas/`, shipped as engine/resources/schemas): the single source of truth that
validation, lint and docs read."""
from __future__ import annotations

import copy
import difflib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import fastjsonschema
import orjson

from engine.durations import PATTERN as DURATION_PATTERN
from engine.durations import parse_duration
from engine.resources import resource
from engine.yaml_loader import pointer_join

if TYPE_CHECKING:
    import jsonschema

# The checkout's `schemas/` (a symlink to the packaged folder), where docgen finds `docs/` next to it.
SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema `schemas/<name>.schema.json`."""
    return orjson.loads(resource("schemas", f"{name}.schema.json").read_bytes())


@functools.cache
def fast_validator(name: str) -> Callable[[Any], Any]:
    """A compiled validator (fastjsonschema) for the common, valid case; raises on any violation.

    It neither fills `default`s into what it checks nor builds detailed messages (`schema_errors`
    explains failures), which also keeps compiling it short.
    """
    # A copy: fastjsonschema rewrites every `$ref` it resolves in place, into an absolute URI.
    return fastjsonschema.compile(copy.deepcopy(load_schema(name)), use_default=False, detailed_exceptions=False)


def is_valid(name: str, instance: Any) -> bool:
    """Whether `instance` satisfies schema `name`: fast; `schema_errors` explains a False."""
    try:
        fast_validator(name)(instance)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


@functools.cache
def validator(name: str) -> jsonschema.protocols.Validator:
    """A precise (slow) validator, used to explain failures with a pointer."""
    import jsonschema  # imported on first failure only: it costs ~0.1 s of start-up

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@dataclass(frozen=True, slots=True)
class SchemaError:
    """One schema violation: where (JSON pointer), what, and whether it points at a key."""

    pointer: str
    message: str
    at_key: bool = False
    code: str = "schema"


def _pointer(path: Any) -> str:
    pointer = ""
    for token in path:
        pointer = pointer_join(pointer, token)
    return pointer


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For oneOf/anyOf, the errors of the branch that got furthest: what the user most likely meant."""
    from jsonschema.exceptions import best_match

    if not error.context:
        return [error]
    best = best_match(error.context)
    return _leaf_errors(best) if best is not None else [error]


# Failures of a value itself (not of an object's keys): where a schema's `x-expected` words apply.
_VALUE_KEYWORDS = frozenset({"type", "pattern", "enum", "const", "not", "minLength", "maxLength"})
_SHORT = 60


def short_repr(value: Any) -> str:
    """repr() cut to a readable length: a message never echoes a megabyte of input."""
    text = repr(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def closest_name(word: str, options: Any) -> str | None:
    """The option `word` is most likely a typo of, if any is close enough."""
    if len(word) > 100:  # difflib is quadratic; no name is that long
        return None
    close = difflib.get_close_matches(word, [str(option) for option in options], n=1)
    return close[0] if close else None


def _suggest(word: Any, options: Any, schema: dict[str, Any]) -> str | None:
    """The closest allowed name, for schemas marked `x-suggest` (where typos are likely)."""
    return closest_name(word, options) if schema.get("x-suggest") and isinstance(word, str) else None


def _with_hint(message: str, schema: dict[str, Any]) -> str:
    hint = schema.get("x-hint")
    return f"{message}; {hint}" if hint else message


def _message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message in words: durations explained, `x-expected` used, long values cut."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    expected = schema.get("x-expected")
    if error.validator == "pattern" and error.validator_value == DURATION_PATTERN:
        try:
            parse_duration(error.instance)
        except ValueError as exc:
            return str(exc)
    if expected and error.validator in _VALUE_KEYWORDS:
        message = f"{short_repr(error.instance)} is not {expected}"
        close = _suggest(error.instance, schema.get("enum", ()), schema)
        message += f": did you mean '{close}'?" if close else ""
    else:
        message = error.message
        long = repr(error.instance)
        if len(long) > _SHORT and message.startswith(long):
            message = short_repr(error.instance) + message[len(long):]
    return _with_hint(message, schema)


def _unknown_key(key: str, allowed: set[str], schema: dict[str, Any]) -> str:
    shown = key if len(key) <= _SHORT else key[: _SHORT - 3] + "..."
    names = f"expected one of: {', '.join(sorted(allowed))}" if allowed else "no keys are allowed here"
    close = _suggest(key, allowed, schema)
    message = f"unknown key '{shown}': did you mean '{close}'? ({names})" if close \
        else f"unknown key '{shown}' ({names})"
    return _with_hint(message, schema)


def _code(error: jsonschema.ValidationError) -> str:
    """The short diagnostic code: the schema's `x-code`, else what kind of rule failed."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    return schema.get("x-code") or ("required" if error.validator == "required" else "schema")


def schema_errors(name: str, instance: Any) -> list[SchemaError]:
    """Every violation of schema `name`, sorted by pointer, each with a one-line message."""
    return sorted(set(iter_schema_errors(name, instance)), key=lambda e: (e.pointer, e.message))


def iter_schema_errors(name: str, instance: Any) -> Iterator[SchemaError]:
    """The violations of schema `name` as they are found (unsorted, maybe repeated): stop early at will."""
    if is_valid(name, instance):  # the common case, without loading the precise validator
        return
    for error in validator(name).iter_errors(instance):
        for leaf in _leaf_errors(error):
            pointer = _pointer(leaf.absolute_path)
            if leaf.validator == "additionalProperties" and isinstance(leaf.instance, dict):
                allowed = set(leaf.schema.get("properties", {}))
                patterns = leaf.schema.get("patternProperties", {})
                for key in leaf.instance:
                    if key not in allowed and not patterns:
                        yield SchemaError(pointer_join(pointer, key), _unknown_key(key, allowed, leaf.schema), True,
                                          "unknown-key")
                continue
            if "propertyNames" in leaf.absolute_schema_path:
                expected = leaf.schema.get("x-expected") if isinstance(leaf.schema, dict) else None
                message = f"{short_repr(leaf.instance)} is not {expected}" if expected \
                    else f"invalid name {leaf.instance!r}: {leaf.message}"
                yield SchemaError(pointer_join(pointer, leaf.instance), message, True, _code(leaf))
                continue
            yield SchemaError(pointer, _message(leaf), False, _code(leaf))


def apply_defaults(schema: dict[str, Any], instance: Any) -> Any:
    """A copy of `instance` with every missing property that has a schema `default` filled in."""
    instance = copy.deepcopy(instance)
    _fill(schema, instance, load_root=schema)
    return instance


def resolve_ref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """The schema a local `$ref` (`#/...`) points at; `schema` itself when it has none."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for token in ref[2:].split("/"):
            target = target[token]
        return target
    return schema


def _fill(schema: dict[str, Any], instance: Any, load_root: dict[str, Any]) -> None:
    schema = resolve_ref(schema, load_root)
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill(sub, instance[key], load_root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in instance.items():
                if key not in schema.get("properties", {}):
                    _fill(extra, value, load_root)
