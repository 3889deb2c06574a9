"""docs/playbooks.md and the schema agree: the tables are generated, every example lints clean."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.playbooks import docgen
from engine.playbooks.lint import lint_file
from engine.schemas import load_schema

SCHEMA = load_schema("playbook")
TEXT = docgen.DOC.read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", TEXT, re.S)


def test_the_generated_tables_are_up_to_date():
    assert docgen.render(TEXT, SCHEMA) == TEXT, "run: python -m engine.playbooks.docgen"
    assert docgen.main(["--check"]) == 0


def test_a_changed_schema_makes_the_check_fail():
    changed = {**SCHEMA, "$defs": {**SCHEMA["$defs"], "actions": {**SCHEMA["$defs"]["actions"]}}}
    changed["$defs"]["actions"]["compact"] = {**changed["$defs"]["actions"]["compact"], "description": "Changed."}
    assert docgen.render(TEXT, changed) != TEXT


def test_every_field_operator_and_action_is_documented():
    defs = SCHEMA["$defs"]
    for group in ("playbook", "step", "rollback_step", "retry", "operators"):
        for name in defs[group]["properties"]:
            assert f"| `{name}` |" in TEXT, (group, name)
    for action, spec in defs["actions"].items():
        assert f"### `{action}`" in TEXT
        for name in spec.get("properties", {}):
            assert f"| `{name}` |" in TEXT


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[f"block{i}" for i in range(len(YAML_BLOCKS))])
def test_every_yaml_example_in_the_docs_lints_clean(tmp_path: Path, block: str):
    text = block if not block.startswith("steps:") else "id: example\non: agent.down\n" + block
    path = tmp_path / "example.yaml"
    path.write_text(text)
    result = lint_file(path)
    assert result.diagnostics == [], [str(d) for d in result.diagnostics]
    assert len(result.playbooks) == 1


def test_the_docs_hold_an_example_of_every_action():
    actions = {m for block in YAML_BLOCKS for m in re.findall(r"action: (\w+)", block)}
    assert actions == set(SCHEMA["$defs"]["actions"])


def test_inline_yaml_quotes_only_what_the_loader_would_misread():
    assert docgen.inline({"a": ["30s", "0644", "true", "{agent}", "x: y", 3, None]}) == \
        '{a: [30s, "0644", "true", "{agent}", "x: y", 3, null]}'
