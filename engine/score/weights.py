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


def same(a: Mapping[str, float] | None, b: Mapping[str, float] | None) -> bool:
    """Equal weights, up to float rounding (a projection lands 1e-17 away from the same point)."""
    if a is None or b is None:
        return a is b
    return set(a) == set(b) and all(abs(a[k] - b[k]) <= 1e-9 for k in a)


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
        """The file's weights; a missing file means the defaults, a damaged one (not JSON, or weights that
        are not four numbers in [0, 1]) is logged and ignored as a whole."""
        try:
            raw = orjson.loads(self.path.read_bytes())
            version, fleet, agents, history = int(raw["version"]), raw["fleet"], dict(raw["agents"]), raw["history"]
            for weights in (fleet, *agents.values()):
                if weights is not None and not self._valid(weights):
                    raise ValueError(f"not weights: {weights!r}")
            if not isinstance(history, list):
                raise ValueError("history is not a list")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("weights file ignored: the defaults are used", extra={"file": str(self.path), "error": str(exc)})
            return
        self.version, self.fleet, self.agents, self.history = version, fleet, agents, history

    def _valid(self, weights: Any) -> bool:
        return isinstance(weights, dict) and set(weights) == set(self.defaults) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in weights.values())

    def weights_of(self, agent: str) -> dict[str, float]:
        return self.agents.get(agent) or self.fleet or self.defaults

    def apply(self, changes: Mapping[str, Mapping[str, Any]], now: float) -> int:
        """Make a version of `changes`: agent (or FLEET) -> {before, after, metrics_before, metrics_after,
        reason}; returns the new version (the current one when nothing changed). The fleet goes first, so
        an agent whose weights become the fleet's keeps no entry of its own. Written before it takes effect:
        a refused write changes nothing."""
        moved = {who: dict(change) for who, change in changes.items() if not same(change["after"], change["before"])}
        if not moved:
            return self.version
        fleet, agents = self.fleet, dict(self.agents)
        if FLEET in moved:
            moved[FLEET]["previous"], fleet = fleet, dict(moved[FLEET]["after"])
        for who, change in moved.items():
            if who != FLEET:
                change["previous"] = agents.get(who)  # what revert restores, exactly (None: it had none)
                after = dict(change["after"])
                if same(after, fleet or self.defaults):
                    agents.pop(who, None)
                else:
                    agents[who] = after
        version = {"version": self.version + 1, "at": format_ts(now), "changes": moved}
        history = [*self.history, version][-MAX_VERSIONS:]
        self._save(self.version + 1, fleet, agents, history)
        self.version, self.fleet, self.agents, self.history = self.version + 1, fleet, agents, history
        return self.version

    def revert(self) -> dict[str, Any] | None:
        """Undo the last version: every entry it changed is as it was; None when there is none to undo."""
        if not self.history:
            return None
        last = self.history[-1]
        fleet, agents = self.fleet, dict(self.agents)
        for who, change in last["changes"].items():
            previous = change.get("previous", change["before"])
            if who == FLEET:
                fleet = previous
            elif previous is None:
                agents.pop(who, None)
            else:
                agents[who] = previous
        history = self.history[:-1]
        version = history[-1]["version"] if history else 0
        self._save(version, fleet, agents, history)
        self.version, self.fleet, self.agents, self.history = version, fleet, agents, history
        return last

    def _save(self, version: int, fleet: dict[str, float] | None, agents: dict[str, dict[str, float]],
              history: list[dict[str, Any]]) -> None:
        atomic_write(self.path, orjson.dumps({"version": version, "fleet": fleet, "agents": agents,
                                              "history": history}, option=orjson.OPT_INDENT_2))
