"""`schemas/playbook.schema.json` agrees with the contract, the model, the reactor's templates and itself."""
from __future__ import annotations

import dataclasses
import re

import pytest

from engine.actions import ACTIONS
from engine.events import RESERVED_PREFIXES
from engine.playbooks.model import (
    DEFAULT_TIMEOUT_S,
    OPERATORS,
    PRIORITIES,
    Playbook,
    Retry,
)
from engine.playbooks.templates import PATH_PATTERN
from engine.schemas import apply_defaults, load_schema, schema_errors

SCHEMA = load_schema("playbook")
DEFS = SCHEMA["$defs"]
MINIMAL = {"id": "p", "on": "agent.down", "steps": [{"id": "a", "action": "compact"}]}
CONTRACT_ACTIONS = ["shell", "http", "emit", "restart_agent", "signal", "wait_for", "write_file", "compact", "python"]
OUR_ACTIONS = ["approve", "notify"]  # beyond the contract's list: operator controls (docs/actions.md)


def test_actions_are_the_contract_s_and_each_has_its_fields_branch():
    assert DEFS["action"]["enum"] == CONTRACT_ACTIONS + OUR_ACTIONS == list(DEFS["actions"]) == list(ACTIONS)
    branches = {b["if"]["properties"]["action"]["enum"][0]: b["then"]["properties"]["with"]["$ref"]
                for b in DEFS["action_fields"]["allOf"]}
    assert branches == {name: f"#/$defs/actions/{name}" for name in CONTRACT_ACTIONS + OUR_ACTIONS}


def test_operators_priorities_and_reserved_types_match_the_engine():
    assert tuple(DEFS["operators"]["properties"]) == OPERATORS
    assert tuple(DEFS["playbook"]["properties"]["priority"]["enum"]) == PRIORITIES
    reserved = DEFS["emitted_type"]["allOf"][1]["not"]["pattern"]
    assert all(re.match(reserved, prefix + "x") for prefix in RESERVED_PREFIXES)
    assert not re.match(reserved, "ops.x")
    assert DEFS["path"]["pattern"] == f"^{PATH_PATTERN}$".replace("(?:", "(")


def test_schema_defaults_are_the_model_s_defaults():
    filled = apply_defaults(SCHEMA["else"] | {"$defs": DEFS}, dict(MINIMAL))
    fields = {f.name: f for f in dataclasses.fields(Playbook)}
    assert filled["confidence"] == fields["confidence"].default
    assert filled["exclusive"] is fields["exclusive"].default and filled["enabled"] is fields["enabled"].default
    assert filled["timeout"] == f"{DEFAULT_TIMEOUT_S:g}s"
    retry = apply_defaults(DEFS["retry"] | {"$defs": DEFS}, {})
    assert (retry["attempts"], retry["backoff"], retry["factor"], retry["max_delay"]) == \
        (Retry().attempts, f"{Retry().backoff_s:g}s", Retry().factor, f"{Retry().max_delay_s:g}s")


def _examples():
    """(where, playbook) for every example in the schema, each set into a minimal playbook."""
    for name, spec in DEFS["playbook"]["properties"].items():
        yield f"playbook.{name}", {**MINIMAL, name: spec["examples"][0]}
    for group in ("step", "rollback_step"):
        for name, spec in DEFS[group]["properties"].items():
            if name not in ("action", "with", "needs"):
                key = "steps" if group == "step" else "rollback"
                yield f"{group}.{name}", {**MINIMAL, key: [{"id": "a", "action": "compact", name: spec["examples"][0]}]}
    for action, spec in DEFS["actions"].items():
        yield f"actions.{action}", {**MINIMAL, "steps": [{"id": "a", "action": action, "with": spec["examples"][0]}]}
        for name, field in spec.get("properties", {}).items():
            with_ = {**spec["examples"][0], name: field["examples"][0]}
            yield f"actions.{action}.{name}", {**MINIMAL, "steps": [{"id": "a", "action": action, "with": with_}]}
    for name, spec in DEFS["operators"]["properties"].items():
        yield f"operators.{name}", {**MINIMAL, "when": spec["examples"][0]}


@pytest.mark.parametrize("where, playbook", list(_examples()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_example_in_the_schema_is_valid(where, playbook):
    assert schema_errors("playbook", playbook) == []


def test_every_documented_field_has_a_description_and_an_example():
    groups = [DEFS["playbook"], DEFS["step"], DEFS["rollback_step"], DEFS["retry"], *DEFS["actions"].values()]
    for group in groups:
        for name, spec in group.get("properties", {}).items():
            assert spec.get("description") and spec.get("examples"), name
    assert all(spec.get("description") and spec.get("examples") for spec in DEFS["actions"].values())


def test_a_list_file_is_checked_item_by_item():
    errors = schema_errors("playbook", [MINIMAL, {**MINIMAL, "id": "Bad"}])
    assert [e.pointer for e in errors] == ["/1/id"]
