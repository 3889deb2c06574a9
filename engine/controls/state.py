"""The operators' controls on disk: `data/controls/state.json`, replaced atomically (fsync) on every change.

A control is acknowledged only once it is in this file, so silences, the pause and runtime disables hold
across restarts. A damaged file is set aside as `state.json.damaged-<time>` and the engine starts with no
controls, saying so in its log: it never refuses to start (and so to remediate) over it.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
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

    def copy(self) -> ControlState:
        """A state to change without touching this one (the records themselves are frozen)."""
        return ControlState(dict(self.silences), self.pause, dict(self.disabled), dict(self.stopped))

    def to_bytes(self, now: float) -> bytes:
        return orjson.dumps({"version": VERSION,
                             "silences": [s.view(now) for s in self.silences.values()],
                             "pause": self.pause.view() if self.pause else None,
                             "disabled": {pid: hold.view() for pid, hold in self.disabled.items()},
                             "stopped": {name: hold.view() for name, hold in self.stopped.items()}},
                            option=orjson.OPT_INDENT_2)

    @classmethod
    def from_bytes(cls, raw: bytes) -> tuple[ControlState, list[str]]:
        """The state, and what was skipped: one bad record costs that record, never the others."""
        doc: dict[str, Any] = orjson.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        if int(doc.get("version", VERSION)) > VERSION:
            raise NewerVersion(f"written by a newer engine (version {doc['version']}, this one reads {VERSION})")
        state, skipped = cls(), []

        def each(items: Any, where: str, keep: Callable[[Any, Any], None]) -> None:
            pairs = items.items() if isinstance(items, dict) else enumerate(items or ())
            for key, item in pairs:
                try:
                    keep(key, item)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    skipped.append(f"{where}/{key}: {type(exc).__name__}: {exc}")

        def silence(_: Any, item: Any) -> None:
            found = Silence.from_view(item)
            state.silences[found.id] = found

        def pause(_: Any, item: Any) -> None:
            state.pause = Hold.from_view(item)

        each(doc.get("silences"), "/silences", silence)
        each({"pause": doc["pause"]} if doc.get("pause") else {}, "", pause)
        each(doc.get("disabled"), "/disabled", lambda pid, item: state.disabled.__setitem__(pid, Hold.from_view(item)))
        each(doc.get("stopped"), "/stopped", lambda name, item: state.stopped.__setitem__(name, Hold.from_view(item)))
        return state, skipped


def state_path(data_dir: Path) -> Path:
    return data_dir / "controls" / "state.json"


class NewerVersion(ValueError):
    """A controls file this engine does not know how to read whole: it is kept, never saved over."""


def load_state(path: Path) -> ControlState:
    """The saved controls; none when there is no file. A record that cannot be read is skipped (logged); a file
    that cannot be read at all, or one from a newer engine, is moved aside (logged) and the engine starts
    without controls: a broken file must not stop remediation."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ControlState()
    except OSError as exc:
        log.error("controls file unreadable: starting without controls", extra={"path": str(path), "error": str(exc)})
        return ControlState()
    try:
        state, skipped = ControlState.from_bytes(raw)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        kind = "newer" if isinstance(exc, NewerVersion) else "damaged"
        aside = path.with_name(f"{path.name}.{kind}-{int(time.time())}")
        path.replace(aside)
        log.error(f"controls file {kind}: starting without silences, pause, disables or stops",
                  extra={"path": str(path), "moved_to": str(aside), "error": f"{type(exc).__name__}: {exc}"})
        return ControlState()
    for what in skipped:
        log.error("controls record skipped", extra={"path": str(path), "record": what})
    return state


def save_state(path: Path, data: bytes) -> None:
    """Blocking (fsync): call it from a thread."""
    atomic_write(path, data)
