"""The field table of docs/problems.md, generated from `schemas/problem.schema.json` by the playbook docs'
generator (same markers, same columns). `python -m engine.problems.docgen` rewrites the page; `--check`
exits 1 when it is stale (the test suite runs the same check).
"""
from __future__ import annotations

import sys
from typing import Any

from engine.playbooks.docgen import fields_table, fill_sections, regenerate
from engine.schemas import SCHEMAS_DIR, load_schema

DOC = SCHEMAS_DIR.parent / "docs" / "problems.md"


def render(text: str, schema: dict[str, Any]) -> str:
    """`text` with its `fields` section filled from `schema`."""
    return fill_sections(text, {"fields": fields_table(schema["$defs"]["kind"], schema)})


def main(argv: list[str] | None = None) -> int:
    return regenerate(DOC, lambda text: render(text, load_schema("problem")), "engine.problems.docgen", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
