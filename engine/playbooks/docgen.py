"""The reference tables of `docs/playbooks.md`, generated from `schemas/playbook.schema.json`.

The prose of the page is written by hand; every field, operator and action (type, default, description,
example) comes from the schema, between `<!-- generated:NAME -->` and `<!-- end:NAME -->` markers, so
the docs and the schema cannot drift. `python -m engine.playbooks.docgen` rewrites the page;
`--check` exits 1 when it is stale (the test suite runs the same check).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.schemas import SCHEMAS_DIR, load_schema, resolve_ref
from engine.yaml_loader import load_text

DOC = SCHEMAS_DIR.parent / "docs" / "playbooks.md"
_SECTION = re.compile(r"(<!-- generated:(\w+) -->\n).*?(<!-- end:\2 -->)", re.S)
_PLAIN = re.compile(r"^[A-Za-z0-9_/.][A-Za-z0-9_./-]*$")


def _reads_back(text: str) -> bool:
    """Whether `text` written plain loads as that same string (not a number, boolean or null)."""
    return load_text(f"v: {text}").value == {"v": text}


def inline(value: Any) -> str:
    """`value` as YAML flow text, quoting only what the loader would misread."""
    if isinstance(value, str):
        return value if _PLAIN.match(value) and _reads_back(value) else json.dumps(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(inline(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{inline(key)}: {inline(item)}" for key, item in value.items()) + "}"
    return repr(value)


def type_name(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """A reader's name for what `schema` accepts: its title, or one built from type, items, enum."""
    if "title" in schema:
        return schema["title"]
    if "$ref" in schema:
        return type_name(resolve_ref(schema, root), root)
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    kinds = schema.get("type")
    if isinstance(kinds, list):
        return " or ".join(kinds)
    if kinds == "array":
        item = type_name(schema["items"], root) if "items" in schema else ""
        return "list" if not item else f"list of ({item})" if " or " in item else f"list of {item}s"
    if kinds == "object":
        extra = schema.get("additionalProperties")
        return f"map of {type_name(extra, root)}s" if isinstance(extra, dict) else "mapping"
    return kinds or "any"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def fields_table(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """One row per property: name, type, required or default, description, example."""
    rows = ["| field | type | required / default | description | example |", "|---|---|---|---|---|"]
    required = schema.get("required", [])
    for name, spec in schema.get("properties", {}).items():
        need = "required" if name in required else f"`{inline(spec['default'])}`" if "default" in spec else "optional"
        example = f"`{inline(spec['examples'][0])}`" if spec.get("examples") else ""
        cells = [f"`{name}`", type_name(spec, root), need, spec.get("description", ""), example]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def step_yaml(action: str, with_: dict[str, Any]) -> str:
    """A step of `action` as it sits in a playbook, its fields as one flow mapping."""
    fields = f"\n    with: {inline(with_)}" if with_ else ""
    return f"steps:\n  - id: {action.replace('_', '-')}\n    action: {action}{fields}\n"


def operators_table(schema: dict[str, Any]) -> str:
    rows = ["| operator | operand | meaning | example |", "|---|---|---|---|"]
    for name, spec in schema["$defs"]["operators"]["properties"].items():
        operand = type_name(spec, schema) if spec else "any value"
        rows.append(f"| `{name}` | {_cell(operand)} | {_cell(spec['description'])} | "
                    f"`{_cell(inline(spec['examples'][0]))}` |")
    return "\n".join(rows) + "\n"


def actions_section(schema: dict[str, Any]) -> str:
    parts = []
    for name, spec in schema["$defs"]["actions"].items():
        table = fields_table(spec, schema) if spec.get("properties") else "No fields.\n"
        example = step_yaml(name, spec["examples"][0])
        parts.append(f"### `{name}`\n\n{spec['description']}\n\n{table}\n```yaml\n{example}```\n")
    return "\n".join(parts)


def sections(schema: dict[str, Any]) -> dict[str, str]:
    """The generated text of each marked section, by name."""
    defs = schema["$defs"]
    return {
        "fields": fields_table(defs["playbook"], schema),
        "conditions": operators_table(schema),
        "steps": fields_table(defs["step"], schema),
        "rollback": fields_table(defs["rollback_step"], schema),
        "retry": fields_table(defs["retry"], schema),
        "actions": actions_section(schema),
    }


def fill_sections(text: str, generated: dict[str, str]) -> str:
    """`text` with every marked section replaced by its `generated` content; unknown names are an error."""

    def fill(match: re.Match[str]) -> str:
        if match.group(2) not in generated:
            raise KeyError(f"unknown generated section {match.group(2)!r}")
        return f"{match.group(1)}\n{generated[match.group(2)]}\n{match.group(3)}"

    return _SECTION.sub(fill, text)


def render(text: str, schema: dict[str, Any]) -> str:
    """`text` with every marked section replaced by its generated content; unknown names are an error."""
    return fill_sections(text, sections(schema))


def regenerate(doc: Path, fresh_text: Callable[[str], str], module: str, argv: list[str] | None = None) -> int:
    """The command line of a docgen: rewrite `doc` as `fresh_text` makes it, or with `--check` exit 1 when
    it is stale."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}",
                                     description=f"Regenerate the schema tables of docs/{doc.name}.")
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is out of date")
    args = parser.parse_args(argv)
    current = doc.read_text(encoding="utf-8")
    fresh = fresh_text(current)
    if args.check:
        if fresh != current:
            print(f"{doc} is out of date: run python -m {module}", file=sys.stderr)
            return 1
        return 0
    doc.write_text(fresh, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    return regenerate(DOC, lambda text: render(text, load_schema("playbook")), "engine.playbooks.docgen", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
