"""The weights in force: per agent (tuned), the fleet's (tuned for agents with too few labels), the defaults.

`data/score/weights.json` holds them with every version tuning made: what changed (each agent's weights
before and after, and the detection metrics before and after), so `tune --revert` undoes the last version
exactly. Versions are kept for a year of weekly tunings; the file is replaced atomically.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from engine.events import format_ts
from engine.osutil.files import atomic_write

log = logging.getLogger("aios.score")

MAX_VERSIONS = 52
FLEET = "*"  # the fleet's entry among the changes of a version


class WeightStore:
    """Blocking file I/O in `load`, `apply` and `revert`: call them from a thread in async code."""

    def __init__(self, data_dir: Path, defaults: Mapping[str, float]) -> None:
        self.path = Path(data_dir) / "score" / "weights.json"
        self.defaults = dict(defaults)
        self.version = 0
        self.fleet: dict[str, float] | None = None
        self.agents: dict[str, dict[str, float]] = {}
        self.history: list[dict[str, Any]] = []

    def load(self) -> None:
        """The file's weights; a missing file means the defaults, a damaged one is logged and ignored."""
        try:
            raw = orjson.loads(self.path.read_bytes())
            self.version, self.fleet = int(raw["version"]), raw.get("fleet")
            self.agents, self.history = dict(raw["agents"]), list(raw["history"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("weights file ignored: the defaults are used", extra={"file": str(self.path), "error": str(exc)})

    def weights_of(self, agent: str) -> dict[str, float]:
        return self.agents.get(agent) or self.fleet or self.defaults

    def apply(self, changes: Mapping[str, Mapping[str, Any]], now: float) -> int:
        """Make a version of `changes`: agent (or FLEET) -> {before, after, metrics_before, metrics_after,
        reason}; returns the new version (the current one when nothing changed)."""
        moved = {who: dict(change) for who, change in changes.items() if change["after"] != change["before"]}
        if not moved:
            return self.version
        for who, change in moved.items():
            self._set(who, dict(change["after"]))
        self.version += 1
        version = {"version": self.version, "at": format_ts(now), "changes": moved}
        self.history = [*self.history, version][-MAX_VERSIONS:]
        self._save()
        return self.version

    def revert(self) -> dict[str, Any] | None:
        """Undo the last version (its `before` weights come back); None when there is none to undo."""
        if not self.history:
            return None
        last = self.history[-1]
        for who, change in last["changes"].items():
            self._set(who, change["before"])
        self.history = self.history[:-1]
        self.version = self.history[-1]["version"] if self.history else 0
        self._save()
        return last

    def _set(self, who: str, weights: dict[str, float] | None) -> None:
        if who == FLEET:
            self.fleet = weights
        elif weights is None or weights == (self.fleet or self.defaults):
            self.agents.pop(who, None)
        else:
            self.agents[who] = weights

    def _save(self) -> None:
        atomic_write(self.path, orjson.dumps({"version": self.version, "fleet": self.fleet, "agents": self.agents,
                                              "history": self.history}, option=orjson.OPT_INDENT_2))
