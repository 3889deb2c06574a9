"""Lint: every mistake in a set of playbook files, each at its `file:line:col`, before deploy.

The schema (`schemas/playbook.schema.json`, via `engine.playbooks.schema`) checks shapes, names and
value forms. This module adds what a schema cannot see: templates and the paths they look up, step
`needs` (unknown, cyclic), `matches` patterns (RE2, never templates), agents unknown to the config, ids
repeated across files, a playbook that can never win, one that triggers itself. A file with any error
contributes no playbook.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from engine.config import Config
from engine.dag import dependency_order
from engine.durations import parse_duration
from engine.playbooks.model import Playbook
from engine.playbooks.regex import compile_pattern, template_like
from engine.playbooks.schema import SCHEMA, Entry, LintDiagnostic, load_playbook_file
from engine.playbooks.templates import Ref, TemplateError, parse_template, refs
from engine.schemas import closest_name, fast_validator, load_schema, short_repr
from engine.yaml_loader import Document, Loc, pointer_join

SUFFIXES = (".yaml", ".yml")
KIND_SUFFIX = ".problems.yaml"  # problem kinds (engine.problems.kinds), beside the playbooks
STEP_RESULTS = ("stdout", "exit_code")
AGENT_ACTIONS = ("restart_agent", "signal")


@dataclass(slots=True)
class LintResult:
    """Diagnostics sorted by place, and the playbooks of the files that have no error."""

    playbooks: list[Playbook] = field(default_factory=list)
    diagnostics: list[LintDiagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    files_ok: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(d.severity == "error" for d in self.diagnostics)

    @property
    def warnings(self) -> int:
        return sum(d.severity == "warning" for d in self.diagnostics)

    @property
    def by_file(self) -> dict[str, list[LintDiagnostic]]:
        """Every linted file (clean ones too) with its diagnostics."""
        out: dict[str, list[LintDiagnostic]] = {name: [] for name in self.files}
        for diagnostic in self.diagnostics:
            out.setdefault(diagnostic.loc.file, []).append(diagnostic)
        return out


def lint_file(path: str | Path, config: Config | None = None) -> LintResult:
    """Lint one file (see `lint_paths`)."""
    return lint_paths([path], config)


def lint_paths(paths: list[str | Path], config: Config | None = None, jobs: int = 1) -> LintResult:
    """Lint files and directories (their *.yaml and *.yml files, recursively, sorted); `*.problems.yaml`
    files are problem kinds, checked by `engine.problems.kinds`.

    `config`, when given, is checked against: agents named by `restart_agent` and `signal` must be
    declared in it. Ids repeated across files are reported at the later file, in path order.
    `jobs` > 1 checks files in that many forked processes: only for a single-threaded caller (the CLI).
    """
    from engine.problems.kinds import lint_kind_files  # noqa: PLC0415 - that module imports this one

    files, problems = _expand_paths(paths)
    kind_files = [name for name in files if name.endswith(KIND_SUFFIX)]
    problems.extend(lint_kind_files(kind_files))
    reports = _check_files([name for name in files if not name.endswith(KIND_SUFFIX)], config, jobs)
    for report in reports:
        problems.extend(report.diagnostics)
    problems.extend(_duplicate_ids(reports))
    failed = {d.loc.file for d in problems if d.severity == "error"}
    result = LintResult(files=files, files_ok=[name for name in files if name not in failed])
    result.playbooks = [playbook for report in reports if report.path not in failed for playbook, _ in report.playbooks]
    problems.extend(_shadowed(result.playbooks))
    result.diagnostics = sorted(problems, key=lambda d: (d.loc.file, d.loc.line, d.loc.col, d.message))
    return result


@dataclass(slots=True)
class _FileReport:
    """What cross-file checks need from one file: its problems, and each playbook with its id's place."""

    path: str
    diagnostics: list[LintDiagnostic]
    playbooks: list[tuple[Playbook, Loc]]


def _check_file(path: str, config: Config | None) -> _FileReport:
    """Everything that one file alone can show: YAML, schema and per-playbook semantics."""
    loaded = load_playbook_file(path)
    report = _FileReport(path, loaded.diagnostics, [])
    if loaded.doc is None:
        return report
    for entry in loaded.entries:
        report.diagnostics.extend(_EntryChecker(loaded.doc, entry, config).run())
        report.playbooks.append((entry.playbook, loaded.doc.loc(pointer_join(entry.pointer, "id"))))
    return report


# Files handed to a worker at a time: big enough that pickling results stays a small cost.
_CHUNK = 64


def _check_files(files: list[str], config: Config | None, jobs: int) -> list[_FileReport]:
    """Per-file checks, in file order; in a fork pool when there is enough work for several processes."""
    if jobs <= 1 or len(files) < 2 * _CHUNK:
        return [_check_file(name, config) for name in files]
    import multiprocessing  # noqa: PLC0415 - only the CLI's parallel lint needs it, never the engine

    fast_validator(SCHEMA)  # compiled once here, inherited by every worker
    load_schema("event")
    with multiprocessing.get_context("fork").Pool(min(jobs, len(files) // _CHUNK)) as pool:
        return pool.starmap(_check_file, [(name, config) for name in files], chunksize=_CHUNK)


def _expand_paths(paths: list[str | Path]) -> tuple[list[str], list[LintDiagnostic]]:
    """The files to lint, in order and without repeats, plus a diagnostic for each unusable path."""
    files: list[str] = []
    problems: list[LintDiagnostic] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                found = rule_files(path, of="all")
            except OSError as exc:
                problems.append(LintDiagnostic(Loc(str(exc.filename or path), 1, 1),
                                               f"cannot list this directory: {exc.strerror or exc}", code="file"))
                continue
            if not found:
                problems.append(LintDiagnostic(Loc(str(path), 1, 1), "no *.yaml or *.yml files here", "warning",
                                               "no-files"))
            files.extend(found)
        elif path.is_file():
            files.append(str(path))
        else:
            what = "not a regular file" if path.exists() else "no such file or directory"
            problems.append(LintDiagnostic(Loc(str(path), 1, 1), what, code="file"))
    return list(dict.fromkeys(files)), problems


def rule_files(root: str | Path, of: Literal["playbooks", "kinds", "all"] = "playbooks") -> list[str]:
    """The YAML files under `root`, sorted: the playbook files, the problem-kind files (`*.problems.yaml`) or
    all. Hidden files and directories (editor backups, .git) are skipped, so are symlinked directories and
    anything but a regular file (a FIFO would block its reader).

    OSError (missing, EACCES, EMFILE...) when any directory cannot be listed: a partial listing would
    look like deleted files.
    """
    found: list[str] = []
    folders = [os.fspath(root)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif entry.name.endswith(SUFFIXES) and entry.is_file():
                    if of == "all" or (of == "kinds") == entry.name.endswith(KIND_SUFFIX):
                        found.append(entry.path)
    return sorted(found)


def _closest(word: str, options: Any) -> str:
    close = closest_name(word, options)
    return f" (did you mean '{close}'?)" if close else ""


class _EntryChecker:
    """The semantic checks of one schema-valid playbook; `run()` returns its diagnostics."""

    def __init__(self, doc: Document, entry: Entry, config: Config | None) -> None:
        self.doc = doc
        self.base = entry.pointer
        self.raw = entry.raw
        self.playbook = entry.playbook
        self.config = config
        self.out: list[LintDiagnostic] = []
        self.event_fields: dict[str, Any] = load_schema("event")["properties"]
        self.needs = {step["id"]: step.get("needs", []) for step in self.raw["steps"]}
        self.position = {name: i for i, name in enumerate(self.needs)}
        self.edges = {name: [n for n in needs if n in self.needs and n != name] for name, needs in self.needs.items()}
        self.order = dependency_order(self.edges)
        self.ancestors: dict[str, int] = {}  # each step's ancestors as bits over positions: linear for long chains
        for name in self.order:
            bits = 0
            for need in self.edges[name]:
                bits |= self.ancestors[need] | 1 << self.position[need]
            self.ancestors[name] = bits

    def run(self) -> list[LintDiagnostic]:
        raw = self.raw
        self._conditions(raw.get("when", {}), "/when", rendered=False)
        key = raw.get("throttle", {}).get("key", [])
        for i, path in enumerate([key] if isinstance(key, str) else key):
            self._event_path(path, "/throttle/key" if isinstance(key, str) else f"/throttle/key/{i}")
        for i, text in enumerate(raw.get("snapshot", [])):
            self._template(text, f"/snapshot/{i}", step=None)
        self._step_ids()
        self._needs()
        for group in ("steps", "rollback"):
            for i, step in enumerate(raw.get(group, [])):
                self._step(step, f"/{group}/{i}", step.get("id") if group == "steps" else None)
        return self.out

    # -- places and reporting ------------------------------------------------------------------
    def _at(self, pointer: str, key: bool = False) -> Loc:
        full = self.base + pointer
        return self.doc.key_loc(full) if key else self.doc.loc(full)

    def _error(self, pointer: str, message: str, code: str, key: bool = False, severity: str = "error") -> None:
        self.out.append(LintDiagnostic(self._at(pointer, key), message, severity, code))

    # -- conditions and paths ------------------------------------------------------------------
    def _event_path(self, path: str, pointer: str, key: bool = False) -> None:
        head, _, rest = path.partition(".")
        spec = self.event_fields.get(head)
        if spec is None:
            inside = f" in '{path}'" if rest else ""
            self._error(pointer, f"unknown event field '{head}'{inside}{_closest(head, self.event_fields)} "
                        f"(fields: {', '.join(self.event_fields)})", "event-path", key)
        elif rest and spec.get("type") not in ("object", "array"):
            self._error(pointer, f"event field '{head}' is a {spec.get('type', 'value')}: '{path}' looks inside "
                        "it (only data and chain have sub-fields)", "event-path", key)

    def _conditions(self, conditions: dict[str, Any], pointer: str, rendered: bool, step: str | None = None) -> None:
        """`when`, or a `wait_for`'s `where` (`rendered`: its strings are templates)."""
        for path, spec in conditions.items():
            here = pointer_join(pointer, path)
            self._event_path(path, here, key=True)
            operators = spec if isinstance(spec, dict) else {"eq": spec}
            for op, value in operators.items():
                at = here if not isinstance(spec, dict) else pointer_join(here, op)
                if op == "matches":
                    self._regex(value, at)
                elif rendered:
                    self._tree(value, at, step)
                elif isinstance(value, str) and self._has_refs(value):
                    self._error(at, f"{short_repr(value)} is compared as written: templates are not rendered in "
                                "'when' (only in step fields)", "template", severity="warning")

    @staticmethod
    def _has_refs(text: str) -> bool:
        try:
            return bool(refs(text))
        except TemplateError:
            return False

    @staticmethod
    def _literal(text: str) -> str | None:
        """What a template renders to when it looks nothing up (`{{` becomes `{`), else None."""
        try:
            parts = parse_template(text)
        except TemplateError:
            return None
        if any(isinstance(part, Ref) for part in parts):
            return None
        return "".join(part for part in parts if isinstance(part, str))

    def _regex(self, pattern: Any, pointer: str) -> None:
        """A `matches` operand is an RE2 pattern written as is: never a template (in `when` and in a
        wait_for `where` alike, so an event never supplies one), and one RE2 compiles."""
        if not isinstance(pattern, str):
            return  # the schema reports it
        lookalike = template_like(pattern)
        if lookalike is not None:
            self._error(pointer, f"{short_repr(pattern)}: a 'matches' pattern is never a template, yet {lookalike} "
                        "reads as one (a pattern must not come from the event); write \\{ and \\} for literal "
                        "braces", "regex-template")
            return
        error = compile_pattern(pattern)[1]
        if error is not None:
            self._error(pointer, f"invalid regular expression {short_repr(pattern)}: {error} (RE2 syntax, as in "
                        "Prometheus: no backreferences, no lookaround)", "regex")

    # -- templates -----------------------------------------------------------------------------
    def _tree(self, value: Any, pointer: str, step: str | None) -> None:
        if isinstance(value, str):
            self._template(value, pointer, step)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._tree(item, pointer_join(pointer, key), step)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self._tree(item, pointer_join(pointer, i), step)

    def _template(self, text: str, pointer: str, step: str | None) -> None:
        """Syntax, then each lookup: an event path, or a result of a step that `step` needs."""
        try:
            found = refs(text)
        except TemplateError as exc:
            self._error(pointer, f"template {short_repr(text)}: {exc}", "template")
            return
        for ref in found:
            if ref.path.split(".", 1)[0] == "steps":
                self._step_ref(ref.path, pointer, step)
            else:
                self._event_path(ref.path, pointer)

    def _step_ref(self, path: str, pointer: str, step: str | None) -> None:
        parts = path.split(".")
        if step is None:
            message = "step results exist only for steps: rollback, snapshot and when see the event alone"
        elif len(parts) != 3 or parts[2] not in STEP_RESULTS:
            message = "a step result is written {steps.<id>.stdout} or {steps.<id>.exit_code}"
        elif parts[1] not in self.needs:
            message = f"no step '{parts[1]}' in this playbook{_closest(parts[1], self.needs)}"
        elif not self._needs_transitively(step, parts[1]):
            message = f"step '{step}' does not need '{parts[1]}': add it to needs so it has run first"
        else:
            return
        self._error(pointer, f"'{{{path}}}': {message}", "template-path")

    def _needs_transitively(self, step: str, other: str) -> bool:
        """Whether `other` runs before `step` (a step inside a cycle, reported already, passes)."""
        if step not in self.ancestors:
            return True
        return bool(self.ancestors[step] >> self.position[other] & 1)

    # -- steps ---------------------------------------------------------------------------------
    def _step_ids(self) -> None:
        first: dict[str, str] = {}
        for group in ("steps", "rollback"):
            for i, step in enumerate(self.raw.get(group, [])):
                if "id" not in step:
                    continue
                pointer = f"/{group}/{i}/id"
                if step["id"] in first:
                    self._error(pointer, f"duplicate step id '{step['id']}' (first at {self._at(first[step['id']])})",
                                "duplicate-step")
                else:
                    first[step["id"]] = pointer

    def _needs(self) -> None:
        for i, step in enumerate(self.raw["steps"]):
            for j, name in enumerate(step.get("needs", [])):
                if name == step["id"]:
                    self._error(f"/steps/{i}/needs/{j}", f"step '{name}' needs itself", "needs-cycle")
                elif name not in self.needs:
                    self._error(f"/steps/{i}/needs/{j}", f"unknown step '{name}' in needs{_closest(name, self.needs)}",
                                "needs-unknown")
        cycle = self._cycle(set(self.needs) - set(self.order))
        if cycle:
            index = next(i for i, step in enumerate(self.raw["steps"]) if step["id"] == cycle[0])
            self._error(f"/steps/{index}/needs", f"steps need each other in a cycle: {' → '.join(cycle)}",
                        "needs-cycle", key=True)

    def _cycle(self, stuck: set[str]) -> list[str]:
        """One cycle among the `stuck` steps (those `_order` left out), as a path back to its start, or []."""
        if not stuck:
            return []
        path: list[str] = []
        seen: dict[str, int] = {}
        name = next(n for n in self.needs if n in stuck)
        while name not in seen:
            seen[name] = len(path)
            path.append(name)
            name = next(n for n in self.edges[name] if n in stuck)
        return path[seen[name]:] + [name]

    def _step(self, step: dict[str, Any], pointer: str, step_id: str | None) -> None:
        action, with_ = step["action"], step.get("with", {})
        at = f"{pointer}/with"
        if action == "wait_for":
            self._conditions(with_.get("where", {}), f"{at}/where", rendered=True, step=step_id)
            timeout_s = parse_duration(step["timeout"]) if "timeout" in step else self.playbook.timeout_s
            if parse_duration(with_["within"]) > timeout_s:
                self._error(f"{at}/within", f"waits {with_['within']} but the step times out after {timeout_s:g}s: "
                            "raise the step's timeout", "timeout", severity="warning")
        else:
            self._tree(with_, at, step_id)
        if action in AGENT_ACTIONS:
            self._agent(with_["agent"], f"{at}/agent")
        if action == "notify":
            self._target(with_["target"], f"{at}/target")
        if action == "emit" and with_["type"] in self.playbook.on:
            self._error(f"{at}/type", f"emits '{with_['type']}', which triggers this playbook again (a loop)",
                        "loop", severity="warning")

    def _target(self, name: str, pointer: str) -> None:
        name = self._literal(name)
        targets = self.config.raw["notifications"]["targets"] if self.config is not None else {}
        if self.config is None or name is None or name in targets:
            return
        where = self.config.source or "the config"
        self._error(pointer, f"unknown notification target '{name}'{_closest(name, targets)} (targets in {where}: "
                    f"{', '.join(targets) or 'none'})", "unknown-target")

    def _agent(self, name: str, pointer: str) -> None:
        name = self._literal(name)
        if self.config is None or name is None or name in self.config.agents:
            return
        where = self.config.source or "the config"
        declared = ", ".join(self.config.agents) or "none"
        self._error(pointer, f"unknown agent '{name}'{_closest(name, self.config.agents)} "
                    f"(agents declared in {where}: {declared})", "unknown-agent")


def _duplicate_ids(reports: list[_FileReport]) -> list[LintDiagnostic]:
    """Each id defined again after its first definition, in path order, naming the first place."""
    first: dict[str, Loc] = {}
    out = []
    for report in reports:
        for playbook, loc in report.playbooks:
            if playbook.id in first:
                out.append(LintDiagnostic(loc, f"duplicate playbook id '{playbook.id}' (first defined at "
                                          f"{first[playbook.id]})", code="duplicate-id"))
            else:
                first[playbook.id] = loc
    return out


def _condition_key(playbook: Playbook) -> frozenset[tuple[str, str, bytes]]:
    return frozenset((c.path, c.op, orjson.dumps(c.value, option=orjson.OPT_SORT_KEYS)) for c in playbook.when)


def _winner_over(playbook: Playbook, best: dict[tuple[str, frozenset[Any]], Playbook]) -> Playbook | None:
    """The playbook that beats `playbook` on every one of its event types, if there is one."""
    key = _condition_key(playbook)
    winner = None
    for type_ in playbook.on:
        options = [best.get((type_, key)), best.get((type_, frozenset()))]
        stronger = [p for p in options if p is not None and p.confidence > playbook.confidence]
        if not stronger:
            return None
        winner = winner or max(stronger, key=lambda p: p.confidence)
    return winner


def _shadowed(playbooks: list[Playbook]) -> list[LintDiagnostic]:
    """Exclusive playbooks that can never win: for each of their event types, another exclusive one that
    always matches too (same conditions, or none), is never set aside (no sustained, no throttle) and
    has a higher confidence."""
    best: dict[tuple[str, frozenset[Any]], Playbook] = {}
    for playbook in playbooks:
        if playbook.enabled and playbook.exclusive and not playbook.sustained and not playbook.throttle:
            key = _condition_key(playbook)
            for type_ in playbook.on:
                held = best.get((type_, key))
                if held is None or playbook.confidence > held.confidence:
                    best[(type_, key)] = playbook
    out = []
    for playbook in playbooks:
        winner = _winner_over(playbook, best) if playbook.enabled and playbook.exclusive else None
        if winner is not None:
            out.append(LintDiagnostic(playbook.loc, f"'{playbook.id}' never runs: exclusive playbook '{winner.id}' "
                                      f"({winner.loc}) matches every event it matches and has a higher confidence "
                                      f"({winner.confidence} > {playbook.confidence})", "warning", "shadowed"))
    return out
