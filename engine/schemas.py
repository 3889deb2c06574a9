"""The JSON Schemas in `schemas/`: the single source of truth that validation, lint and docs read."""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from engine.durations import PATTERN as DURATION_PATTERN
from engine.durations import parse_duration
from engine.yaml_loader import pointer_join

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema `schemas/<name>.schema.json`."""
    return orjson.loads((SCHEMAS_DIR / f"{name}.schema.json").read_bytes())


@functools.cache
def validator(name: str) -> jsonschema.protocols.Validator:
    """A precise (slow) validator, used to explain failures with a pointer."""
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@dataclass(frozen=True, slots=True)
class SchemaError:
    """One schema violation: where (JSON pointer), what, and whether it points at a key."""

    pointer: str
    message: str
    at_key: bool = False


def _pointer(path: Any) -> str:
    pointer = ""
    for token in path:
        pointer = pointer_join(pointer, token)
    return pointer


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For oneOf/anyOf, the errors of the branch that got furthest: what the user most likely meant."""
    if not error.context:
        return [error]
    best = jsonschema.exceptions.best_match(error.context)
    return _leaf_errors(best) if best is not None else [error]


def _message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, with the duration pattern explained in words."""
    if error.validator == "pattern" and error.validator_value == DURATION_PATTERN:
        try:
            parse_duration(error.instance)
        except ValueError as exc:
            return str(exc)
    return error.message


def schema_errors(name: str, instance: Any) -> list[SchemaError]:
    """Every violation of schema `name`, sorted by pointer, each with a one-line message."""
    out: list[SchemaError] = []
    for error in validator(name).iter_errors(instance):
        for leaf in _leaf_errors(error):
            pointer = _pointer(leaf.absolute_path)
            if leaf.validator == "additionalProperties" and isinstance(leaf.instance, dict):
                allowed = set(leaf.schema.get("properties", {}))
                patterns = leaf.schema.get("patternProperties", {})
                for key in leaf.instance:
                    if key not in allowed and not patterns:
                        hint = ", ".join(sorted(allowed))
                        out.append(SchemaError(pointer_join(pointer, key),
                                               f"unknown key '{key}' (expected one of: {hint})", True))
                continue
            if "propertyNames" in leaf.absolute_schema_path:
                out.append(SchemaError(pointer_join(pointer, leaf.instance),
                                       f"invalid name {leaf.instance!r}: {leaf.message}", True))
                continue
            out.append(SchemaError(pointer, _message(leaf)))
    return sorted(set(out), key=lambda e: (e.pointer, e.message))


def apply_defaults(schema: dict[str, Any], instance: Any) -> Any:
    """A copy of `instance` with every missing property that has a schema `default` filled in."""
    instance = copy.deepcopy(instance)
    _fill(schema, instance, load_root=schema)
    return instance


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for token in ref[2:].split("/"):
            target = target[token]
        return target
    return schema


def _fill(schema: dict[str, Any], instance: Any, load_root: dict[str, Any]) -> None:
    schema = _resolve(schema, load_root)
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
