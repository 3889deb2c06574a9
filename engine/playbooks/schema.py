"""One playbook file → Playbook objects, checked against `schemas/playbook.schema.json`.

Every problem becomes a diagnostic placed at the offending node (`file:line:col`). A file with an error
still yields the playbooks that passed the schema, so lint can check their semantics too; only lint
decides what is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from engine.config import Diagnostic
from engine.playbooks.model import Playbook, playbook_from
from engine.schemas import iter_schema_errors
from engine.yaml_loader import Document, Loc, YamlError, load_file, pointer_join

SCHEMA = "playbook"
MAX_SCHEMA_ERRORS = 100

# YamlError messages → short codes for `--format json` (first matching prefix wins).
_YAML_CODES = (
    ("duplicate key", "duplicate-key"),
    ("file is not valid UTF-8", "encoding"),
    ("cannot read file", "file"),
    ("file is larger than", "too-large"),
    ("nesting deeper than", "too-deep"),
    ("document expands", "alias-bomb"),
    ("recursive alias", "alias-bomb"),
)


@dataclass(frozen=True, slots=True)
class LintDiagnostic(Diagnostic):
    """A Diagnostic with a short stable code (`duplicate-key`, `template`…) for machines."""

    code: str = "schema"


@dataclass(frozen=True, slots=True)
class Entry:
    """One schema-valid playbook mapping and its JSON pointer in the file ('' when the file is one playbook)."""

    raw: dict[str, Any]
    pointer: str
    playbook: Playbook


@dataclass(slots=True)
class PlaybookFile:
    """What one file holds: its document (None when unreadable), valid entries and every problem found."""

    path: str
    doc: Document | None
    entries: list[Entry] = field(default_factory=list)
    diagnostics: list[LintDiagnostic] = field(default_factory=list)


def _yaml_code(message: str) -> str:
    return next((code for prefix, code in _YAML_CODES if message.startswith(prefix)), "yaml")


def load_playbook_file(path: str | Path) -> PlaybookFile:
    """Load and schema-check one file; never raises for bad content."""
    try:
        doc = load_file(path)
    except YamlError as exc:
        problem = LintDiagnostic(exc.loc, exc.message, code=_yaml_code(exc.message))
        return PlaybookFile(str(path), None, diagnostics=[problem])
    return check_document(doc)


def check_document(doc: Document) -> PlaybookFile:
    """Schema diagnostics of a loaded document, and a Playbook for every item that passed."""
    out = PlaybookFile(doc.file, doc)
    value = doc.value
    if value is None or value == []:
        out.diagnostics.append(LintDiagnostic(Loc(doc.file, 1, 1), "the file holds no playbook", "warning",
                                              "empty-file"))
        return out
    items = [(pointer_join("", i), item) for i, item in enumerate(value)] if isinstance(value, list) \
        else [("", value)]
    found = list(islice(iter_schema_errors(SCHEMA, value), MAX_SCHEMA_ERRORS + 1))
    bad_items: set[str] = set()
    if len(found) > MAX_SCHEMA_ERRORS:  # stop early: the rest of a broken file is not worth the wait
        bad_items.add("")
        out.diagnostics.append(LintDiagnostic(doc.loc(""), f"more than {MAX_SCHEMA_ERRORS} schema errors in this "
                                              "file; the first are shown", code="too-many-errors"))
    errors = sorted(set(found[:MAX_SCHEMA_ERRORS]), key=lambda e: (e.pointer, e.message))
    for err in errors:
        loc = doc.key_loc(err.pointer) if err.at_key else doc.loc(err.pointer)
        out.diagnostics.append(LintDiagnostic(loc, err.message, code=err.code))
        bad_items.add("/" + err.pointer.split("/")[1] if isinstance(value, list) and err.pointer else "")
    for pointer, item in items:
        if pointer not in bad_items and "" not in bad_items:
            out.entries.append(Entry(item, pointer, playbook_from(item, doc.file, doc.loc(pointer))))
    return out
