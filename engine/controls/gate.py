"""The operators' brakes, as the dispatcher and the matcher ask them (docs/controls.md).

`check` answers for one decision, spending nothing, in this order: the global pause (`paused`: the
decision is still matched and stored with what would have run), an agent an operator stopped
(`stopped:<agent>`: no playbook brings it back), an open maintenance window
(`maintenance:<name>`), an active silence (`silenced:<id>`). Each answer carries `retry_at` when it is
known, so the problem book decides the problem again when the hold ends, without a new event. `disabled`
is the runtime disable of one playbook, which the matcher treats like `enabled: false` (the next-best
playbook may run).

Every change is a `control.*` event naming who made it and the reason, stored before the change is saved;
`data.lifts` names the reason codes a change ends, so the problem book decides again the problems those
held. `tick` ends what has lapsed (silences, timed pauses and disables) and announces maintenance windows
opening and closing.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from engine.admission.dispatch import target_agents, touched_agents
from engine.admission.guards import SetAside
from engine.admission.priorities import decision_priority
from engine.controls.inhibit import Inhibitions
from engine.controls.maintenance import Window
from engine.controls.model import ControlError, Hold, NotFound, Selector, Silence, checked, ends
from engine.controls.state import ControlState, load_state, save_state, state_path
from engine.events import format_ts
from engine.playbooks.matcher import HoldCheck
from engine.playbooks.model import Playbook

log = logging.getLogger("aios.controls")
# emit(type, data, agent) -> the stored event
Emit = Callable[[str, dict[str, Any], str | None], Awaitable[dict[str, Any]]]


class ControlUnavailable(ControlError):
    """The control cannot be recorded now (its file cannot be written): 503, nothing changed."""


class ControlConflict(ControlError):
    """A request that is well formed but cannot be done now (409): unknown id, too many silences."""


class Controls:
    def __init__(self, data_dir: Path | None, windows: Iterable[Window], *, emit: Emit, new_id: Callable[[], str],
                 clock: Callable[[], float], max_silences: int = 1000, default_silence_s: float = 3600.0) -> None:
        """`data_dir` None: no file, the state comes only from `fold` (a replay of stored events)."""
        self.path = state_path(data_dir) if data_dir is not None else None
        self.state: ControlState = load_state(self.path) if self.path is not None else ControlState()
        self.windows = list(windows)
        self._emit = emit
        self._new_id = new_id
        self.clock = clock
        self.max_silences = max_silences
        self.default_silence_s = default_silence_s
        self._selectors: dict[str, Selector] = {}
        self._sync_selectors()
        self._open: set[str] = {w.name for w in self.windows if w.open_until(clock()) is not None}
        self._saving = asyncio.Lock()
        self._live: tuple[float, int, dict[str, Any]] = (float("-inf"), -1, {})
        self.version = 0  # bumped on every change: the live view is rebuilt on a change, else once a second

    # -- asked per decision ------------------------------------------------------------------------
    def check(self, playbook_id: str, labels: Mapping[str, Any], event: Mapping[str, Any],
              agents: Iterable[str], would: str) -> SetAside | None:
        """Why a decision must be set aside now by an operator's control (None: none holds it).
        `would` says what would have run, for a paused engine's record."""
        now = self.clock()
        pause = self.state.pause
        if pause is not None and pause.active(now):
            return SetAside("paused", f"automation paused by {pause.by}: {pause.reason}; would run {would}",
                            retry_at=pause.until)
        agents = tuple(agents)
        stopped = next((a for a in agents if a in self.state.stopped), None)
        if stopped is not None:
            hold = self.state.stopped[stopped]
            return SetAside(f"stopped:{stopped}", f"{stopped} was stopped by {hold.by}: {hold.reason} "
                            f"(aios-engine agent start {stopped})")
        event_type = str(event.get("type", ""))
        for window in self.windows:
            until = window.open_until(now)
            if until is not None and window.selector.matches(playbook_id, labels, event_type, agents):
                return SetAside(f"maintenance:{window.name}", f"{window.reason} (until {format_ts(until)})",
                                retry_at=until)
        for silence in self.state.silences.values():
            if silence.active(now) and self._selectors[silence.id].matches(playbook_id, labels, event_type, agents):
                return SetAside(f"silenced:{silence.id}", f"silenced by {silence.by} until "
                                f"{format_ts(silence.ends_at)}: {silence.reason}", retry_at=silence.ends_at)
        return None

    def disabled(self, playbook_id: str) -> tuple[str, float | None] | None:
        """(detail, until) while `playbook_id` is disabled at run time; None otherwise."""
        hold = self.state.disabled.get(playbook_id)
        if hold is None or not hold.active(self.clock()):
            return None
        until = "until enabled" if hold.until is None else f"until {format_ts(hold.until)}"
        return f"disabled by {hold.by} {until}: {hold.reason}", hold.until

    # -- changes -----------------------------------------------------------------------------------
    async def add_silence(self, body: Any, by: str) -> Silence:
        now = self.clock()
        if len(self.state.silences) >= self.max_silences:
            raise ControlConflict(f"{len(self.state.silences)} silences are held (controls.max_silences); "
                                  "expire some first")
        silence = Silence.from_body(body, id_=self._new_id(), by=by, now=now, default_s=self.default_silence_s)
        await self._change("control.silence_added", {"by": by, "reason": silence.reason, "silence": silence.view(now)},
                           silence.agent if silence.agent and not _is_glob(silence.agent) else None)
        return silence

    async def expire_silence(self, silence_id: str, by: str, reason: str = "") -> Silence:
        silence = self.state.silences.get(silence_id)
        if silence is None:
            raise NotFound(f"no silence {silence_id} (silence list shows those held)")
        await self._end_silence(silence, by, reason or "expired by hand")
        return silence

    def _hold(self, control: str, body: Any, by: str) -> Hold:
        """The hold a pause or disable `body` asks for, from now (ControlError naming a bad field)."""
        body = checked(control, body)
        now = self.clock()
        return Hold(now, ends(body, now), body["reason"], by)

    async def pause(self, body: Any, by: str) -> Hold:
        hold = self._hold("pause", body, by)
        await self._change("control.paused", {"by": by, "reason": hold.reason, "pause": hold.view()})
        return hold

    async def resume(self, by: str, reason: str = "") -> Hold:
        hold = self.state.pause
        if hold is None:
            raise ControlConflict("automation is not paused")
        await self._resumed(hold, by, reason or "resumed")
        return hold

    async def disable(self, playbook_id: str, body: Any, by: str) -> Hold:
        hold = self._hold("disable", body, by)
        await self._change("control.playbook_disabled", {"by": by, "reason": hold.reason, "playbook": playbook_id,
                                                         "disable": hold.view()})
        return hold

    async def enable(self, playbook_id: str, by: str, reason: str = "") -> Hold:
        hold = self.state.disabled.get(playbook_id)
        if hold is None:
            raise ControlConflict(f"playbook {playbook_id} is not disabled at run time")
        await self._enabled(playbook_id, hold, by, reason or "enabled")
        return hold

    async def stop_agent(self, name: str, reason: str, by: str) -> Hold:
        """Record an operator's stop of `name` (the supervisor does the stopping): held until started."""
        hold = Hold(self.clock(), None, reason, by)
        await self._change("control.agent_stop", {"by": by, "reason": reason, "agent": name, "stop": hold.view()},
                           name)
        return hold

    async def start_agent(self, name: str, reason: str, by: str) -> dict[str, Any]:
        """End an operator's stop; the `control.agent_start` event (the start's cause)."""
        hold = self.state.stopped.get(name)
        if hold is None:
            raise ControlConflict(f"{name} was not stopped by an operator (use agent restart)")
        return await self._change("control.agent_start", {"by": by, "reason": reason, "agent": name,
                                                          "lifts": [f"stopped:{name}"], "stop": hold.view()}, name)

    async def audit(self, type_: str, data: dict[str, Any], agent: str | None = None) -> dict[str, Any]:
        """A control the guards carry out themselves (a budget or breaker reset): its event, stored."""
        return await self._emit(type_, data, agent)

    # -- time ----------------------------------------------------------------------------------------
    async def tick(self) -> None:
        """End what has lapsed and announce maintenance windows opening and closing (every few seconds)."""
        now = self.clock()
        for silence in [s for s in self.state.silences.values() if now >= s.ends_at]:
            await self._end_silence(silence, "timer", "ended")
        if self.state.pause is not None and not self.state.pause.active(now):
            await self._resumed(self.state.pause, "timer", "pause ended")
        for playbook_id, hold in [(p, h) for p, h in self.state.disabled.items() if not h.active(now)]:
            await self._enabled(playbook_id, hold, "timer", "disable ended")
        for window in self.windows:
            until = window.open_until(now)
            if until is not None and window.name not in self._open:
                self._open.add(window.name)
                await self._emit("control.maintenance_started", {"by": "schedule", "window": window.name,
                                                                 "reason": window.reason,
                                                                 "until": format_ts(until)}, None)
            elif until is None and window.name in self._open:
                self._open.discard(window.name)
                await self._emit("control.maintenance_ended", {"by": "schedule", "window": window.name,
                                                               "reason": window.reason,
                                                               "lifts": [f"maintenance:{window.name}"]}, None)

    async def _change(self, type_: str, data: dict[str, Any], agent: str | None = None) -> dict[str, Any]:
        """One control change, all or nothing: the new state is saved (fsync) first, then its event stored, then
        it holds. A file that cannot be written is ControlUnavailable (503) with nothing changed; an event that
        cannot be stored puts the file back. The state is only ever a fold of the control events (`_apply`)."""
        candidate = self.state.copy()
        _apply(candidate, type_, data)
        await self._save(candidate)
        try:
            event = await self._emit(type_, data, agent)
        except BaseException:
            with contextlib.suppress(OSError, ControlUnavailable):
                await self._save(self.state)
            raise
        self.state = candidate
        self._sync_selectors()
        return event

    async def _end_silence(self, silence: Silence, by: str, reason: str) -> None:
        await self._change("control.silence_expired", {"by": by, "reason": reason, "lifts": [f"silenced:{silence.id}"],
                                                       "silence": silence.view(self.clock())})

    async def _resumed(self, hold: Hold, by: str, reason: str) -> None:
        await self._change("control.resumed", {"by": by, "reason": reason, "lifts": ["paused"], "pause": hold.view()})

    async def _enabled(self, playbook_id: str, hold: Hold, by: str, reason: str) -> None:
        await self._change("control.playbook_enabled", {"by": by, "reason": reason, "playbook": playbook_id,
                                                        "lifts": [f"disabled:{playbook_id}"], "disable": hold.view()})

    async def _save(self, state: ControlState) -> None:
        self.version += 1
        if self.path is None:
            return
        async with self._saving:  # one writer at a time: the file holds the latest state, never an older one
            try:
                await asyncio.to_thread(save_state, self.path, state.to_bytes(self.clock()))
            except OSError as exc:
                log.error("controls file not written", extra={"path": str(self.path), "error": str(exc)})
                raise ControlUnavailable(f"the controls file cannot be written ({exc.strerror or exc}): "
                                         "nothing was changed") from None

    def fold(self, event: Mapping[str, Any]) -> None:
        """Take a stored `control.*` event of the engine's own into the state without storing or saving
        anything: `replay` sees the silences, pauses, disables and stops of the time its events happened."""
        if event.get("source") != "engine.controls":  # only the engine writes these (control.* is reserved)
            return
        try:
            _apply(self.state, str(event.get("type")), event.get("data") or {})
        except (KeyError, TypeError, ValueError, AttributeError):  # a damaged record: replay goes on without it
            log.warning("control event not understood", extra={"event": event.get("id"), "type": event.get("type")})
        self._sync_selectors()

    def _sync_selectors(self) -> None:
        """Compiled matchers for exactly the silences held (new ones compiled, ended ones dropped)."""
        for silence_id in [sid for sid in self._selectors if sid not in self.state.silences]:
            del self._selectors[silence_id]
        for silence_id, silence in self.state.silences.items():
            if silence_id not in self._selectors:
                self._selectors[silence_id] = _selector(silence)

    # -- asked by the matcher -------------------------------------------------------------------------
    def holds(self, inhibitions: Inhibitions) -> HoldCheck:
        """The matcher's `hold`: an operator's control, else the playbook's own inhibition (engine and replay)."""
        def hold(playbook: Playbook, event: dict[str, Any]) -> tuple[str, str, float | None] | None:
            would = f"{playbook.id} at {decision_priority(playbook.priority, event)}"
            held = self.check(playbook.id, playbook.labels, event,
                              touched_agents(event, target_agents(playbook, event)), would)
            if held is None and playbook.inhibited_by:
                held = inhibitions.check(playbook, event, self.clock())
            return None if held is None else (held.reason, held.detail, held.retry_at)
        return hold

    # -- views ---------------------------------------------------------------------------------------
    def live(self, limit: int = 50) -> dict[str, Any]:
        """`view()` for the live state (read up to ten times a second): cached, at most `limit` silences."""
        now = self.clock()
        at, version, cached = self._live
        if version != self.version or now - at >= 1.0:
            cached = self.view()
            cached["silences_total"] = len(cached["silences"])
            cached["silences"] = cached["silences"][:limit]
            self._live = (now, self.version, cached)
        return cached

    def view(self) -> dict[str, Any]:
        now = self.clock()
        pause = self.state.pause
        return {"paused": pause.view() if pause is not None and pause.active(now) else None,
                "silences": sorted((s.view(now) for s in self.state.silences.values()), key=lambda s: s["ends_at"]),
                "disabled": {pid: hold.view() for pid, hold in sorted(self.state.disabled.items())
                             if hold.active(now)},
                "stopped": {name: hold.view() for name, hold in sorted(self.state.stopped.items())},
                "maintenance": [window.view(now) for window in self.windows]}


def _apply(state: ControlState, type_: str, data: Mapping[str, Any]) -> None:
    """What one control event does to the state: the one place it changes (live, and in replay)."""
    if type_ == "control.silence_added":
        silence = Silence.from_view(data["silence"])
        state.silences[silence.id] = silence
    elif type_ == "control.silence_expired":
        state.silences.pop(data["silence"]["id"], None)
    elif type_ == "control.paused":
        state.pause = Hold.from_view(data["pause"])
    elif type_ == "control.resumed":
        state.pause = None
    elif type_ == "control.playbook_disabled":
        state.disabled[data["playbook"]] = Hold.from_view(data["disable"])
    elif type_ == "control.playbook_enabled":
        state.disabled.pop(data["playbook"], None)
    elif type_ == "control.agent_stop":
        state.stopped[data["agent"]] = Hold.from_view(data["stop"])
    elif type_ == "control.agent_start":
        state.stopped.pop(data["agent"], None)


def _selector(silence: Silence) -> Selector:
    return Selector(silence.agent, silence.playbook, silence.type, silence.labels)


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")
