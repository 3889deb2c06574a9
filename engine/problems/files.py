"""`data/problems/<id>.json`: one file per problem, replaced atomically when it changes.

One file per problem keeps a write proportional to what changed (a flood of problems does not rewrite one
big state file), and a torn write impossible (temp file, fsync, rename). Reading tolerates damage: a file
that does not parse is named in the log and skipped, never a reason not to start.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from engine.events import parse_ts
from engine.osutil.files import atomic_write

log = logging.getLogger("aios.problems")
_NAME = re.compile(r"^pr-[0-9A-Za-z]+\.json$")
MARK = ".tick"  # touched at every write pass: a restart catches up from the last pass, however quiet since


def problems_dir(data_dir: Path) -> Path:
    return data_dir / "problems"


class ProblemFiles:
    """Writes (from a thread) and reads the problem files of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = problems_dir(data_dir)

    def write(self, problems: dict[str, dict[str, Any]]) -> list[str]:
        """Encode and write each problem, then touch the mark; returns the ids that failed (kept to retry:
        a full disk degrades). Blocking: call it from a thread."""
        failed = []
        for problem_id, problem in problems.items():
            try:
                atomic_write(self.dir / f"{problem_id}.json", orjson.dumps(problem))
            except OSError as exc:
                failed.append(problem_id)
                log.error("problem file not written", extra={"problem": problem_id, "error": str(exc)})
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / MARK).touch()
        except OSError:  # a full disk: the catch-up reads from an older mark, which is only slower
            pass
        return failed

    def load(self) -> tuple[list[dict[str, Any]], float]:
        """Every readable problem, and when problems were last written (the mark's or the newest file's
        modification time; 0 when none)."""
        found: list[dict[str, Any]] = []
        newest = 0.0
        try:
            names = sorted(name for name in os.listdir(self.dir) if _NAME.match(name))
        except FileNotFoundError:
            return found, newest
        with contextlib.suppress(FileNotFoundError):
            newest = (self.dir / MARK).stat().st_mtime
        for name in names:
            path = self.dir / name
            try:
                newest = max(newest, path.stat().st_mtime)
                raw = orjson.loads(path.read_bytes())
                if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                    raise ValueError("not a problem object")
                found.append(raw)
            except (OSError, ValueError) as exc:
                log.error("problem file skipped", extra={"file": str(path), "error": str(exc)})
        return found, newest

    def prune(self, before: datetime) -> list[str]:
        """Delete problems that healed before `before` (or, forgotten or withdrawn, opened before it); open
        ones are never touched."""
        deleted = []
        problems, _ = self.load()
        for raw in problems:
            when = raw.get("resolved_at") if raw.get("status") == "resolved" else raw.get("opened_at")
            if raw.get("status") == "open" or not isinstance(when, str):
                continue
            try:
                if parse_ts(when) < before:
                    (self.dir / f"{raw['id']}.json").unlink(missing_ok=True)
                    deleted.append(raw["id"])
            except (OSError, ValueError):
                continue
        return deleted
