"""The playbooks in `rules/`, reloaded file by file while the engine runs.

A file whose content changed is linted again. A clean file replaces its playbooks (`playbook.loaded`);
a broken one emits `playbook.rejected` with its lint lines and its last good playbooks keep running.
At start-up the good files load and `health()` names the bad ones. Only the event types whose
playbooks changed are recompiled; the rulesets they replace are freed, so memory stays flat however
often files change. Events go out through the `emit` callback (the engine's bus); this module never
calls back up the chain.

Only a file that is really gone, absent from a listing that succeeded (or not found when read), unloads
its playbooks. A listing that fails (EMFILE when the process is out of descriptors, EACCES, a missing
`rules/`) changes nothing, and a file that cannot be read keeps its last good playbooks: both turn
`health()` degraded with the path and the error, until a later pass reads them again.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import Config
from engine.playbooks.compiler import Index
from engine.playbooks.lint import lint_file, rule_files
from engine.playbooks.model import Playbook
from engine.yaml_loader import MAX_BYTES

SOURCE = "engine.rules"
log = logging.getLogger("aios.rules")


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
    _unreadable: dict[str, str] = field(default_factory=dict)  # path → why the last pass could not read it

    def reload(self) -> Reload:
        """Re-read every rule file; lint and load those whose content changed (see the module docstring
        for what a failed listing or read does)."""
        try:
            names = rule_files(Path(self.rules_dir))
        except OSError as exc:
            self._report({str(exc.filename or self.rules_dir): f"cannot list the directory: {_reason(exc)}"})
            return Reload()
        digests: dict[str, bytes] = {}
        unreadable: dict[str, str] = {}
        for name in names:
            try:
                digests[name] = _digest(name)
            except FileNotFoundError:  # deleted since the listing: gone
                continue
            except OSError as exc:
                unreadable[name] = f"cannot read: {_reason(exc)}"
        removed = tuple(name for name in self._files if name not in digests and name not in unreadable)
        for name in removed:
            gone = self._files.pop(name)
            self.emit(_event("playbook.loaded", "info", file=name, playbooks=[], removed=[p.id for p in gone.playbooks]))
        changed = [name for name in digests if name not in self._files or self._files[name].digest != digests[name]]
        if changed or removed:  # a rejected file may have been waiting for another to drop an id
            changed = sorted({*changed, *(name for name, known in self._files.items() if known.errors
                                          and name in digests)})
        loaded: list[str] = []
        rejected = changed
        while rejected:  # another pass while files keep loading: one may free an id the next one wants
            results = {name: self._check(name, digests[name], unreadable) for name in rejected}
            progress = [name for name in rejected if results[name] is True]
            failed = [name for name in rejected if results[name] is False]
            loaded += progress
            rejected = failed
            if not progress:
                break
        self._report(unreadable)
        outcome = Reload(tuple(sorted(loaded)), tuple(rejected), removed)
        if outcome.changed:
            self.index = Index((p for known in self._files.values() for p in known.playbooks), previous=self.index)
        return outcome

    def _report(self, unreadable: dict[str, str]) -> None:
        """Keep what this pass could not read for `health()`; log it when it changes."""
        if unreadable != self._unreadable:
            for path, reason in sorted(unreadable.items()):
                log.warning("rules: %s: %s (its last good playbooks keep running)", path, reason)
            if not unreadable:
                log.info("rules: every file is readable again")
        self._unreadable = unreadable

    def _check(self, name: str, digest: bytes, unreadable: dict[str, str]) -> bool | None:
        """Lint one file and keep its playbooks when clean; emit what happened when it is news. True when
        loaded, False when rejected, None when lint could not read it (it is tried again next pass)."""
        result = lint_file(name, self.config)
        failed_read = next((d for d in result.diagnostics if d.code == "file"), None)
        if failed_read is not None:
            unreadable[name] = failed_read.message
            if name in self._files:
                self._files[name].digest = b""
            return None
        known = self._files.setdefault(name, _File())
        before = (known.playbooks, known.errors)
        known.digest = digest
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

    def playbook(self, playbook_id: str) -> Playbook | None:
        """The loaded playbook with this id, as of now (the index is replaced on reload)."""
        return self.index.playbooks.get(playbook_id)

    def health(self) -> dict[str, Any]:
        """`ok`, or `degraded` with each rejected file's lint lines and each path that could not be read or
        listed (`unreadable`: path → error); the last good playbooks keep running either way."""
        rejected = {name: list(known.errors) for name, known in self._files.items() if known.errors}
        return {"state": "degraded" if rejected or self._unreadable else "ok", "playbooks": len(self.index.playbooks),
                "files": len(self._files), "rejected": rejected, "unreadable": dict(self._unreadable)}


def _reason(exc: OSError) -> str:
    """`Too many open files (EMFILE)`: the text for people, the code for searching."""
    code = errno.errorcode.get(exc.errno or 0)
    return f"{exc.strerror or exc} ({code})" if code else str(exc.strerror or exc)


def _digest(name: str) -> bytes:
    """Hash of the content (a change within one mtime tick, same size, is still seen). A file over the
    loader's size limit is not read: its size and mtime stand for it (lint refuses it). Opened without
    blocking, and refused unless regular: a FIFO put there since the listing must not stall the reload."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        if info.st_size > MAX_BYTES:
            return f"size {info.st_size} mtime {info.st_mtime_ns}".encode()
        return hashlib.blake2b(file.read()).digest()


def _event(type_: str, severity: str, **data: Any) -> dict[str, Any]:
    return {"type": type_, "source": SOURCE, "severity": severity, "data": data}
