"""Problem kinds (`rules/*.problems.yaml`, docs/problems.md): which event opens a problem, what names its
subject, which event sequence resolves it.

Kinds are loaded and linted with the playbooks' machinery (the position-keeping YAML loader, the schema's
messages, the condition checks of playbook lint), so a mistake reads the same `file:line:col` line in both.
A file with any error contributes no kind; `KindRegistry` keeps such a file's last good kinds while the
engine runs. A kind defined in two files belongs to the first in path order; the later file is in error.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from engine.durations import parse_duration
from engine.playbooks.conditions import MISSING, all_hold, lookup, split_path
from engine.playbooks.lint import _EntryChecker, rule_files
from engine.playbooks.matcher import paths_text
from engine.playbooks.model import Condition, conditions_from
from engine.playbooks.registry import _digest, _reason
from engine.playbooks.schema import MAX_SCHEMA_ERRORS, LintDiagnostic, _yaml_code
from engine.schemas import iter_schema_errors, load_schema
from engine.yaml_loader import Document, Loc, YamlError, load_file, pointer_join

SCHEMA = "problem"
DEFAULT_ESCALATE_AFTER = "5m"
log = logging.getLogger("aios.problems")

# What one file yields: its kinds (none when it has an error) and every diagnostic about it.
Loaded = tuple[tuple["Kind", ...], list[LintDiagnostic]]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a `resolved_by` sequence: an event of `type` for which every `where` condition holds."""

    type: str
    where: tuple[Condition, ...] = ()

    def matches(self, event: dict[str, Any]) -> bool:
        return event.get("type") == self.type and all_hold(self.where, event)


@dataclass(frozen=True, slots=True, kw_only=True)
class Kind:
    """One kind, built from schema-valid YAML with its defaults; `file:line:col` is where its name is."""

    kind: str
    description: str = ""
    opened_by: tuple[str, ...]
    when: tuple[Condition, ...] = ()
    key: tuple[str, ...]
    resolved_by: tuple[tuple[Step, ...], ...]
    escalate_after_s: float = parse_duration(DEFAULT_ESCALATE_AFTER)
    file: str = "<memory>"
    line: int = 1
    col: int = 1
    owner: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def loc(self) -> Loc:
        return Loc(self.file, self.line, self.col)

    def opens(self, event: dict[str, Any]) -> bool:
        return event.get("type") in self.opened_by and all_hold(self.when, event)

    def key_of(self, event: dict[str, Any]) -> str:
        """The key value of `event` as JSON text (absent paths: null), the form throttle keys take."""
        return paths_text(self.key, event)

    def subject(self, event: dict[str, Any]) -> dict[str, Any]:
        """What the problem is about, for people: {path: value} of the key paths present in `event`."""
        found = ((path, lookup(event, split_path(path))) for path in self.key)
        return {path: value for path, value in found if value is not MISSING}


def _step(raw: str | dict[str, Any]) -> Step:
    return Step(raw) if isinstance(raw, str) else Step(raw["type"], conditions_from(raw.get("where")))


def _sequences(raw: list[Any] | dict[str, Any]) -> list[list[Any]]:
    """`resolved_by` as a list of sequences, whichever of its two forms it is written in."""
    return [raw] if isinstance(raw, list) else raw["any"]


def kind_from(raw: dict[str, Any], loc: Loc | None = None) -> Kind:
    """A Kind from one schema-valid mapping (as the YAML loader returns it)."""
    opened_by = raw["opened_by"]
    loc = loc or Loc("<memory>", 1, 1)
    return Kind(
        kind=raw["kind"], description=raw.get("description", ""),
        opened_by=(opened_by,) if isinstance(opened_by, str) else tuple(opened_by),
        when=conditions_from(raw.get("when")), key=tuple(raw["key"]),
        resolved_by=tuple(tuple(_step(step) for step in sequence) for sequence in _sequences(raw["resolved_by"])),
        escalate_after_s=parse_duration(raw.get("escalate_after", DEFAULT_ESCALATE_AFTER)),
        file=loc.file, line=loc.line, col=loc.col, owner=raw.get("owner"), labels=dict(raw.get("labels") or {}),
    )


class KindSet:
    """The kinds in force, by name, indexed by opening event type so each event costs one dict lookup."""

    __slots__ = ("kinds", "_by_type")

    def __init__(self, kinds: Iterable[Kind] = ()) -> None:
        self.kinds: dict[str, Kind] = {}
        for kind in kinds:
            self.kinds.setdefault(kind.kind, kind)
        by_type: dict[str, list[Kind]] = {}
        for kind in self.kinds.values():
            for type_ in kind.opened_by:
                by_type.setdefault(type_, []).append(kind)
        self._by_type = {type_: tuple(found) for type_, found in by_type.items()}

    def opening(self, event: dict[str, Any]) -> list[Kind]:
        """The kinds `event` opens (or joins a problem of)."""
        type_ = event.get("type")
        candidates = self._by_type.get(type_) if type(type_) is str else None
        return [kind for kind in candidates if all_hold(kind.when, event)] if candidates else []

    def __len__(self) -> int:
        return len(self.kinds)


# -- loading and lint ----------------------------------------------------------------------------------
def kind_files(root: str | Path) -> list[str]:
    """The `*.problems.yaml` files under `root`, sorted (OSError when a directory cannot be listed)."""
    return rule_files(root, of="kinds")


class _KindChecker(_EntryChecker):
    """The condition and event-path checks of playbook lint, applied to one schema-valid kind."""

    def __init__(self, doc: Document, pointer: str, raw: dict[str, Any]) -> None:
        """Only what the condition checks read: a kind has none of the steps the playbook checker sets up."""
        self.doc, self.base, self.raw, self.out = doc, pointer, raw, []
        self.event_fields = load_schema("event")["properties"]

    def run(self) -> list[LintDiagnostic]:
        raw = self.raw
        self._conditions(raw.get("when", {}), "/when", rendered=False)
        for i, path in enumerate(raw["key"]):
            self._event_path(path, f"/key/{i}")
        opened_by = {raw["opened_by"]} if isinstance(raw["opened_by"], str) else set(raw["opened_by"])
        resolved = raw["resolved_by"]
        base = "/resolved_by" if isinstance(resolved, list) else "/resolved_by/any"
        for i, sequence in enumerate(_sequences(resolved)):
            for j, step in enumerate(sequence):
                at = base + (f"/{j}" if isinstance(resolved, list) else f"/{i}/{j}")
                type_ = step if isinstance(step, str) else step["type"]
                if type_ in opened_by:
                    self._error(at if isinstance(step, str) else f"{at}/type", f"'{type_}' opens this kind: as a "
                                "resolving step it would count the opening event itself (resolve with another "
                                "event type)", "self-resolving")
                if isinstance(step, dict):
                    self._conditions(step.get("where", {}), f"{at}/where", rendered=False)
        return self.out


def load_kinds_file(path: str | Path) -> Loaded:
    """Load, schema-check and lint one file: its kinds (none when any error is found) and its diagnostics,
    sorted by place. Never raises for bad content."""
    try:
        doc = load_file(path)
    except YamlError as exc:
        return (), [LintDiagnostic(exc.loc, exc.message, code=_yaml_code(exc.message))]
    value = doc.value
    if value is None or value == []:
        return (), [LintDiagnostic(Loc(doc.file, 1, 1), "the file holds no problem kind", "warning", "empty-file")]
    found = list(islice(iter_schema_errors(SCHEMA, value), MAX_SCHEMA_ERRORS + 1))
    out = [LintDiagnostic(doc.key_loc(e.pointer) if e.at_key else doc.loc(e.pointer), e.message, code=e.code)
           for e in sorted(set(found[:MAX_SCHEMA_ERRORS]), key=lambda e: (e.pointer, e.message))]
    if len(found) > MAX_SCHEMA_ERRORS:
        out.append(LintDiagnostic(doc.loc(""), f"more than {MAX_SCHEMA_ERRORS} schema errors in this file; the "
                                  "first are shown", code="too-many-errors"))
        return (), out
    listed = isinstance(value, list)
    bad = {"/" + e.pointer.split("/")[1] if listed and e.pointer else "" for e in found}
    kinds: list[Kind] = []
    for pointer, raw in [(pointer_join("", i), item) for i, item in enumerate(value)] if listed else [("", value)]:
        if pointer in bad or "" in bad:
            continue
        kind = kind_from(raw, doc.loc(pointer_join(pointer, "kind")))
        out.extend(_KindChecker(doc, pointer, raw).run())
        out.extend(_duplicate(kind, first) for first in kinds if first.kind == kind.kind)
        kinds.append(kind)
    out.sort(key=lambda d: (d.loc.line, d.loc.col, d.message))
    return (() if any(d.severity == "error" for d in out) else tuple(kinds)), out


def _duplicate(kind: Kind, first: Kind) -> LintDiagnostic:
    return LintDiagnostic(kind.loc, f"duplicate problem kind '{kind.kind}' (first defined at {first.loc})",
                          code="duplicate-kind")


def _merge(loaded: dict[str, Loaded], kept: dict[str, tuple[Kind, ...]]) -> tuple[dict[str, tuple[Kind, ...]],
                                                                                  dict[str, list[LintDiagnostic]]]:
    """Each file's kinds in force and its diagnostics, in path order. A file that defines a kind an earlier
    file holds is in error; a file in error holds its `kept` kinds that clash with none (its last good)."""
    held: dict[str, Kind] = {}
    used: dict[str, tuple[Kind, ...]] = {}
    diagnostics: dict[str, list[LintDiagnostic]] = {}
    for path in sorted(loaded):
        kinds, found = loaded[path]
        found = found + [_duplicate(kind, held[kind.kind]) for kind in kinds if kind.kind in held]
        if any(d.severity == "error" for d in found):
            kinds = tuple(kind for kind in kept.get(path, ()) if kind.kind not in held)
        used[path] = kinds
        held.update((kind.kind, kind) for kind in kinds)
        diagnostics[path] = found
    return used, diagnostics


def _error_lines(diagnostics: dict[str, list[LintDiagnostic]]) -> dict[str, list[str]]:
    errors = {path: [str(d) for d in found if d.severity == "error"] for path, found in diagnostics.items()}
    return {path: lines for path, lines in errors.items() if lines}


def lint_kind_files(paths: Iterable[str]) -> list[LintDiagnostic]:
    """Every diagnostic about these kind files (`aios-engine lint`), kinds repeated across files included."""
    _, diagnostics = _merge({str(path): load_kinds_file(path) for path in paths}, {})
    return [d for found in diagnostics.values() for d in found]


def load_kinds(root: str | Path) -> tuple[KindSet, dict[str, list[str]]]:
    """The kinds of every good file under `root`, and each bad file's error lines (`file:line:col: ...`)."""
    try:
        paths = kind_files(root)
    except OSError as exc:
        return KindSet(), {str(exc.filename or root): [f"cannot list the directory: {_reason(exc)}"]}
    used, diagnostics = _merge({path: load_kinds_file(path) for path in paths}, {})
    return KindSet(kind for kinds in used.values() for kind in kinds), _error_lines(diagnostics)


class KindRegistry:
    """The kinds under `root`, reloaded with the rules: a file is parsed again only when its content changed,
    a bad or unreadable file keeps its last good kinds, a failed listing changes nothing; `health()` says so."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.kinds = KindSet()
        self.errors: dict[str, list[str]] = {}  # path → error lines, for each file (or root) in error
        self._cache: dict[str, tuple[bytes, Loaded]] = {}  # path → (content hash, what loading it gave)
        self._used: dict[str, tuple[Kind, ...]] = {}

    def reload(self) -> bool:
        """Read `root` again; True when the kinds in force changed."""
        try:
            paths = kind_files(self.root)
        except OSError as exc:
            listing = f"cannot list the directory: {_reason(exc)}"
            self._note({**self.errors, str(exc.filename or self.root): [listing]})
            return False
        loaded: dict[str, Loaded] = {}
        cache: dict[str, tuple[bytes, Loaded]] = {}
        for path in paths:
            try:
                digest = _digest(path)
            except FileNotFoundError:  # deleted since the listing: gone
                continue
            except OSError as exc:
                loaded[path] = (), [LintDiagnostic(Loc(path, 1, 1), f"cannot read: {_reason(exc)}", code="file")]
                continue
            known = self._cache.get(path)
            loaded[path] = known[1] if known is not None and known[0] == digest else load_kinds_file(path)
            if not any(d.code == "file" for d in loaded[path][1]):  # a failed read is tried again next time
                cache[path] = (digest, loaded[path])
        self._cache = cache
        self._used, diagnostics = _merge(loaded, self._used)
        self._note(_error_lines(diagnostics))
        kinds = KindSet(kind for found in self._used.values() for kind in found)
        if kinds.kinds == self.kinds.kinds:
            return False
        self.kinds = kinds
        return True

    def _note(self, errors: dict[str, list[str]]) -> None:
        """Keep `errors` for `health()`; log each file whose errors are news."""
        for path, lines in sorted(errors.items()):
            if self.errors.get(path) != lines:
                log.error("problem kinds: %s rejected, its last good kinds stay: %s", path, "; ".join(lines))
        self.errors = errors

    def health(self) -> dict[str, Any]:
        """`ok`, or `degraded` with the error lines of each file (or of `root`) in error."""
        return {"state": "degraded" if self.errors else "ok", "kinds": len(self.kinds), "files": len(self._used),
                "errors": {path: list(lines) for path, lines in self.errors.items()}}
