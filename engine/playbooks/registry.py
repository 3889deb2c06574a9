"""The playbooks in `rules/`, reloaded file by file while the engine runs.

A file whose content changed is linted again. A clean file replaces its playbooks (`playbook.loaded`);
a broken one emits `playbook.rejected` with its lint lines and its last good playbooks keep running.
At start-up the good files load and `health()` names the bad ones. Only the event types whose
playbooks changed are recompiled; the rulesets they replace are freed, so memory stays flat however
often files change. Events go out through the `emit` callback (the engine's bus); this module never
calls back up the chain.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import Config
from engine.playbooks.compiler import Index
from engine.playbooks.lint import lint_file, rule_files
from engine.playbooks.model import Playbook

SOURCE = "engine.rules"


@dataclass(slots=True)
class _File:
    """What the registry knows of one file: its content hash, last good playbooks, current errors."""

    digest: bytes = b""
    playbooks: tuple[Playbook, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reload:
    """Files (paths) loaded, rejected and removed by one `reload()`."""

    loaded: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.loaded or self.rejected or self.removed)


@dataclass(slots=True)
class Registry:
    """Call `reload()` at start-up, then whenever `rules/` may have changed (a poll, `POST /api/reload`).

    `index` is the compiled set of the last good playbooks of every file; hand it to the matcher
    (`matcher.index = registry.index`) after a reload that `changed`.
    """

    rules_dir: Path
    emit: Callable[[dict[str, Any]], None] = lambda event: None
    config: Config | None = None
    index: Index = field(default_factory=lambda: Index(()))
    _files: dict[str, _File] = field(default_factory=dict)

    def reload(self) -> Reload:
        """Re-read every rule file; lint and load those whose content changed."""
        names = rule_files(Path(self.rules_dir))
        removed = tuple(name for name in self._files if name not in names)
        for name in removed:
            gone = self._files.pop(name)
            self.emit(_event("playbook.loaded", "info", file=name, playbooks=[], removed=[p.id for p in gone.playbooks]))
        digests = {name: _digest(name) for name in names}
        changed = [name for name in names if name not in self._files or self._files[name].digest != digests[name]]
        if changed or removed:  # a rejected file may have been waiting for another to drop an id
            changed = sorted({*changed, *(name for name, known in self._files.items() if known.errors)})
        loaded: list[str] = []
        rejected = changed
        while rejected:  # another pass while files keep loading: one may free an id the next one wants
            failed = [name for name in rejected if not self._check(name, digests[name])]
            progress = [name for name in rejected if name not in failed]
            loaded += progress
            if not progress or not failed:
                rejected = failed
                break
            rejected = failed
        outcome = Reload(tuple(sorted(loaded)), tuple(rejected), removed)
        if outcome.changed:
            self.index = Index((p for known in self._files.values() for p in known.playbooks), previous=self.index)
        return outcome

    def _check(self, name: str, digest: bytes) -> bool:
        """Lint one file and keep its playbooks when clean; emit what happened when it is news."""
        known = self._files.setdefault(name, _File())
        before = (known.playbooks, known.errors)
        known.digest = digest
        result = lint_file(name, self.config)
        errors = [str(d) for d in result.diagnostics if d.severity == "error"]
        errors += self._duplicates(name, result.playbooks) if not errors else []
        if errors:
            known.errors = tuple(errors)
            if known.errors != before[1]:
                self.emit(_event("playbook.rejected", "error", file=name, errors=errors,
                                 kept=[p.id for p in known.playbooks]))
            return False
        known.playbooks, known.errors = tuple(result.playbooks), ()
        if (known.playbooks, known.errors) != before:
            self.emit(_event("playbook.loaded", "info", file=name, playbooks=[p.id for p in known.playbooks],
                             warnings=[str(d) for d in result.diagnostics]))
        return True

    def _duplicates(self, name: str, playbooks: list[Playbook]) -> list[str]:
        """Ids of `playbooks` that another file already defines (the file that had it first keeps it)."""
        owners = {p.id: (other, p) for other, known in self._files.items() if other != name for p in known.playbooks}
        return [f"{p.loc or name}: error: duplicate playbook id '{p.id}' (already defined at "
                f"{owners[p.id][1].loc or owners[p.id][0]})" for p in playbooks if p.id in owners]

    @property
    def playbooks(self) -> dict[str, Playbook]:
        return self.index.playbooks

    def health(self) -> dict[str, Any]:
        """`ok`, or `degraded` with each rejected file's lint lines (its last good playbooks still run)."""
        rejected = {name: list(known.errors) for name, known in self._files.items() if known.errors}
        return {"state": "degraded" if rejected else "ok", "playbooks": len(self.index.playbooks),
                "files": len(self._files), "rejected": rejected}


def _digest(name: str) -> bytes:
    """Hash of the content (a change within one mtime tick, same size, is still seen)."""
    try:
        return hashlib.blake2b(Path(name).read_bytes()).digest()
    except OSError:  # vanished or unreadable since the listing: lint reports it
        return b""


def _event(type_: str, severity: str, **data: Any) -> dict[str, Any]:
    return {"type": type_, "source": SOURCE, "severity": severity, "data": data}
