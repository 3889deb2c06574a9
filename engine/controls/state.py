"""The operators' controls on disk: `data/controls/state.json`, replaced atomically (fsync) on every change.

A control is acknowledged only once it is in this file, so silences, the pause and runtime disables hold
across restarts. A damaged file is set aside as `state.json.damaged-<time>` and the engine starts with no
controls, saying so in its log: it never refuses to start (and so to remediate) over it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engine.controls.model import Hold, Silence
from engine.osutil.files import atomic_write

log = logging.getLogger("aios.controls")
VERSION = 1


@dataclass(slots=True)
class ControlState:
    silences: dict[str, Silence] = field(default_factory=dict)
    pause: Hold | None = None
    disabled: dict[str, Hold] = field(default_factory=dict)  # playbook id -> its runtime disable
    stopped: dict[str, Hold] = field(default_factory=dict)  # agent -> an operator's stop (until started)

    def to_bytes(self, now: float) -> bytes:
        return orjson.dumps({"version": VERSION,
                             "silences": [s.view(now) for s in self.silences.values()],
                             "pause": self.pause.view() if self.pause else None,
                             "disabled": {pid: hold.view() for pid, hold in self.disabled.items()},
                             "stopped": {name: hold.view() for name, hold in self.stopped.items()}},
                            option=orjson.OPT_INDENT_2)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ControlState:
        doc: dict[str, Any] = orjson.loads(raw)
        state = cls()
        for item in doc.get("silences") or ():
            silence = Silence.from_view(item)
            state.silences[silence.id] = silence
        if doc.get("pause"):
            state.pause = Hold.from_view(doc["pause"])
        state.disabled = {pid: Hold.from_view(hold) for pid, hold in (doc.get("disabled") or {}).items()}
        state.stopped = {name: Hold.from_view(hold) for name, hold in (doc.get("stopped") or {}).items()}
        return state


def state_path(data_dir: Path) -> Path:
    return data_dir / "controls" / "state.json"


def load_state(path: Path) -> ControlState:
    """The saved controls; none when there is no file; a damaged file is moved aside (logged)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ControlState()
    try:
        return ControlState.from_bytes(raw)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        path.replace(aside)
        log.error("controls file damaged: starting without silences, pause or disables",
                  extra={"path": str(path), "moved_to": str(aside), "error": f"{type(exc).__name__}: {exc}"})
        return ControlState()


def save_state(path: Path, data: bytes) -> None:
    """Blocking (fsync): call it from a thread."""
    atomic_write(path, data)
