"""Actions that act through the engine's services (`emit`, `wait_for`, `compact`, `restart_agent`, `signal`)
and `write_file` on real files."""
from __future__ import annotations

import os
import stat
from typing import Any

import pytest
from test_actions import act, make_services

from engine.actions.base import ActionError
from engine.events import EventError


class Recorder:
    """Engine-side services that record what the actions asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def emit(self, type_: str, data: dict[str, Any], severity: str, agent: str | None) -> dict[str, Any]:
        if type_ == "bad.too-big":
            raise EventError("data is 70000 bytes serialized; the limit is 65536", "/data")
        self.calls.append(("emit", type_, data, severity, agent))
        return {"id": "01EMITTED", "type": type_}

    async def wait_for(self, type_: str, where: dict[str, Any], within_s: float) -> dict[str, Any] | None:
        self.calls.append(("wait_for", type_, where, within_s))
        return {"id": "01SEEN"} if where.get("agent") == "coder" else None

    async def compact(self) -> dict[str, Any]:
        self.calls.append(("compact",))
        return {"archived": ["2026-01-01"], "deleted": []}


class FakeAgents:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, ...]] = []

    def known(self, name: str) -> bool:
        return name == "coder"

    async def restart(self, name: str) -> dict[str, Any]:
        if self.fail:
            raise FileNotFoundError(2, "No such file or directory", "/opt/coder")
        self.calls.append(("restart", name))
        return {"pid": 2, "old_pid": 1}

    async def signal(self, name: str, signal_name: str) -> dict[str, Any]:
        if self.fail:
            raise ProcessLookupError(f"agent {name!r} is not running")
        self.calls.append(("signal", name, signal_name))
        return {"pid": 1}


@pytest.fixture
def engine(data_dir):
    recorder = Recorder()
    return recorder, make_services(data_dir, emit=recorder.emit, wait_for=recorder.wait_for,
                                   compact=recorder.compact)


def test_emit_posts_with_defaults_and_refuses_the_engines_types(engine):
    recorder, services = engine
    result = act("emit", {"type": "ops.notification", "data": {"about": "agent.down"}, "agent": "coder"}, services)
    assert result.ok and result.detail == {"id": "01EMITTED", "type": "ops.notification"}
    assert recorder.calls == [("emit", "ops.notification", {"about": "agent.down"}, "info", "coder")]
    for reserved in ("scheduler.decision", "reactor.succeeded", "score.updated", "playbook.loaded"):
        with pytest.raises(ActionError, match="reserved for the engine"):
            act("emit", {"type": reserved}, services)
    with pytest.raises(ActionError, match="`severity` must be one of"):
        act("emit", {"type": "ops.x", "severity": "loud"}, services)
    with pytest.raises(ActionError, match="the event was refused: event /data: data is 70000 bytes"):
        act("emit", {"type": "bad.too-big"}, services)
    assert len(recorder.calls) == 1


def test_wait_for_succeeds_when_the_event_comes_and_fails_when_it_does_not(engine):
    recorder, services = engine
    seen = act("wait_for", {"type": "agent.heartbeat", "where": {"agent": "coder"}, "within": "500ms"}, services)
    assert seen.ok and seen.detail["id"] == "01SEEN" and seen.detail["within_s"] == 0.5
    missed = act("wait_for", {"type": "agent.heartbeat", "where": {"agent": "x"}, "within": "2m"}, services)
    assert not missed.ok and missed.detail["id"] is None and "within 2m" in missed.error
    assert recorder.calls[1] == ("wait_for", "agent.heartbeat", {"agent": "x"}, 120.0)
    with pytest.raises(ActionError, match="`within`: invalid duration"):
        act("wait_for", {"type": "agent.heartbeat", "within": "soon"}, services)
    with pytest.raises(ActionError, match="`within` is required"):
        act("wait_for", {"type": "agent.heartbeat"}, services)


def test_compact_runs_retention_and_shows_its_report(engine):
    recorder, services = engine
    result = act("compact", {}, services)
    assert result.ok and result.detail == {"archived": ["2026-01-01"], "deleted": []}
    assert recorder.calls == [("compact",)]


def test_write_file_writes_bytes_atomically_with_the_mode(data_dir, tmp_path):
    services = make_services(data_dir)
    target = tmp_path / "etc" / "coder.override"
    result = act("write_file", {"path": str(target), "content": "max_tasks: 1\nnaïve\n", "mode": "0640"}, services)
    assert result.ok, result.error
    assert target.read_bytes() == "max_tasks: 1\nnaïve\n".encode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert result.detail == {"path": str(target), "bytes": 20, "mode": "0640"}
    assert not list(target.parent.glob("*.tmp"))
    act("write_file", {"path": str(target), "content": "v2", "mode": 0o600}, services)  # YAML 1.1 octal int
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    kept = act("write_file", {"path": str(target), "content": "v3"}, services)  # no mode: keeps the file's
    assert target.read_text() == "v3" and kept.detail["mode"] == "0600"
    for mode in ("rw-r--r--", "0999", 0o17777, "644 "):
        with pytest.raises(ActionError, match="mode"):
            act("write_file", {"path": str(target), "content": "x", "mode": mode}, services)
    blocked = tmp_path / "file"
    blocked.write_text("")
    failed = act("write_file", {"path": str(blocked / "under-a-file"), "content": "x"}, services)
    assert not failed.ok and "cannot write" in failed.error


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_write_file_permission_denied_is_a_failed_step(data_dir, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = act("write_file", {"path": str(locked / "f"), "content": "x"}, make_services(data_dir))
    assert not result.ok and "Permission denied" in result.error


def test_restart_and_signal_go_through_agent_control(data_dir):
    agents = FakeAgents()
    services = make_services(data_dir, agents=agents)
    restarted = act("restart_agent", {"agent": "coder"}, services)
    assert restarted.ok and restarted.detail == {"agent": "coder", "pid": 2, "old_pid": 1}
    for given, sent in (("HUP", "SIGHUP"), ("SIGUSR1", "SIGUSR1"), ("term", "SIGTERM"), (None, "SIGTERM")):
        result = act("signal", {"agent": "coder", **({"signal": given} if given else {})}, services)
        assert result.ok and result.detail == {"agent": "coder", "signal": sent, "pid": 1}
    assert agents.calls == [("restart", "coder"), ("signal", "coder", "SIGHUP"), ("signal", "coder", "SIGUSR1"),
                            ("signal", "coder", "SIGTERM"), ("signal", "coder", "SIGTERM")]
    with pytest.raises(ActionError, match="not declared in the config"):
        act("restart_agent", {"agent": "ghost"}, services)
    with pytest.raises(ActionError, match="not declared in the config"):
        act("signal", {"agent": "ghost"}, services)
    with pytest.raises(ActionError, match="unknown signal 'BOOM'"):
        act("signal", {"agent": "coder", "signal": "BOOM"}, services)


def test_agent_control_os_errors_are_failed_steps(data_dir):
    services = make_services(data_dir, agents=FakeAgents(fail=True))
    restarted = act("restart_agent", {"agent": "coder"}, services)
    assert not restarted.ok and "cannot restart agent 'coder'" in restarted.error and "/opt/coder" in restarted.error
    signalled = act("signal", {"agent": "coder", "signal": "HUP"}, services)
    assert not signalled.ok and signalled.error == "cannot signal agent 'coder': agent 'coder' is not running"
