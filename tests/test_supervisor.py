"""Supervisor with real agent processes: agent.down shapes, heartbeats on an injected clock, adoption by a
second supervisor (and refusal of a reused pid), restarts, start failures. Logs: test_agent_logs.py."""
from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_actions import gone
from test_service_api import small_filesystem

from engine.agents.supervisor import Supervisor
from engine.osutil import proctree

SLEEPER = ["python", "-c", "import time; time.sleep(60)"]
PARENT = ["python", "-c", ("import subprocess, sys, time; "
                           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)")]
EXITS_3 = ["python", "-c", "import sys, time; time.sleep(0.2); sys.exit(3)"]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tagged(url: str) -> dict[int, str | None]:
    """`{pid: marker}` of the live processes this test's supervisors started (AIOS_URL is unique to the test)."""
    found = {}
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
            if env.get("AIOS_URL") == url and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = env.get(proctree.MARK_ENV)
        except psutil.Error:
            continue
    return found


@pytest.fixture(name="url")
def url_fixture() -> Iterator[str]:
    """A URL that names this test; every process carrying it is killed afterwards, trees included."""
    tag = f"http://127.0.0.1:9/{uuid.uuid4().hex}"
    yield tag
    for pid, marker in tagged(tag).items():
        proctree.kill_tree(pid, marker, 0.5)


@pytest.fixture
def make(data_dir: Path, url: str) -> Callable[..., tuple[Supervisor, list[dict[str, Any]]]]:
    """`make(agents, **kw)`: a Supervisor on the test's data dir, and the list its events go to."""
    def build(agents: dict[str, Any], **kw: Any) -> tuple[Supervisor, list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []

        async def emit(event: dict[str, Any]) -> dict[str, Any]:
            events.append(event)
            return event

        return Supervisor(agents, data_dir, url, emit, grace_s=0.5, **kw), events
    return build


async def check_until(sup: Supervisor, events: list[dict[str, Any]], count: int, timeout: float = 5.0) -> None:
    """Run `check` until `count` events were emitted."""
    deadline = time.monotonic() + timeout
    while len(events) < count:
        assert time.monotonic() < deadline, f"only {events}"
        await sup.check(time.time())
        await asyncio.sleep(0.02)


def fill(filler: Path) -> Path:
    """Write `filler` until its filesystem is full (ENOSPC); `filler`."""
    with open(filler, "wb", buffering=0) as handle, pytest.raises(OSError) as full:
        while True:
            handle.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


def of(events: list[dict[str, Any]], type_: str, agent: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_ and e["agent"] == agent]


def test_exit_code_and_signal_become_one_agent_down_each_until_a_restart(make, data_dir):
    sup, events = make({"quitter": {"command": EXITS_3, "room": "meeting"}, "victim": {"command": SLEEPER}})

    async def scenario() -> None:
        await sup.start()
        started = {e["agent"]: e for e in events}
        assert {name: (e["type"], e["source"], e["data"]["adopted"]) for name, e in started.items()} == \
            {name: ("agent.started", "engine.supervisor", False) for name in ("quitter", "victim")}
        victim = started["victim"]["data"]["pid"]
        assert sup.pids() == {"quitter": started["quitter"]["data"]["pid"], "victim": victim}
        pidfile = json.loads((data_dir / "agents" / "victim.pid").read_text())
        assert pidfile["pid"] == victim and pidfile["create_time"] == psutil.Process(victim).create_time()
        assert pidfile["marker"].startswith("agent/victim/")

        await check_until(sup, events, 3)
        (down,) = of(events, "agent.down", "quitter")
        assert down["severity"] == "error" and down["data"]["exit_code"] == 3 and down["data"]["reason"] == "exited"
        os.kill(victim, signal.SIGKILL)
        await check_until(sup, events, 4)
        (killed,) = of(events, "agent.down", "victim")
        assert {k: killed["data"][k] for k in ("reason", "pid", "signal")} == \
            {"reason": "exited", "pid": victim, "signal": "SIGKILL"} and "exit_code" not in killed["data"]
        for _ in range(3):  # reported once per episode
            await sup.check(time.time() + 3600)
        assert len(events) == 4 and sup.pids() == {}
        assert {row["name"]: row["state"] for row in sup.view()} == {"quitter": "down", "victim": "down"}

        outcome = await sup.restart("victim")
        assert outcome["old_pid"] == victim != outcome["pid"] and outcome["started"]
        again = events[-1]
        assert again["type"] == "agent.started" and again["data"] == \
            {"pid": outcome["pid"], "adopted": False, "restarted": True, "room": "office"}
        row = next(r for r in sup.view() if r["name"] == "victim")
        assert (row["state"], row["pid"], row["restarts"], row["down"]) == ("starting", outcome["pid"], 1, None)
        await sup.check(time.time())
        assert sup.pids()["victim"] == outcome["pid"] and len(events) == 5

    asyncio.run(scenario())


def test_missed_heartbeats_on_an_injected_clock(make):
    clock = Clock(1000.0)
    sup, events = make({"coder": {"command": SLEEPER, "room": "meeting",
                                  "heartbeat": {"interval": "1s", "misses": 3}}}, clock=clock)

    def row() -> dict[str, Any]:
        return sup.view()[0]

    async def scenario() -> None:
        await sup.start()
        pid = events[0]["data"]["pid"]
        assert row()["state"] == "starting"
        await sup.check(1002.9)
        assert len(events) == 1
        await sup.check(1003.0)
        assert events[1]["type"] == "agent.down" and events[1]["data"] == \
            {"reason": "heartbeat", "pid": pid, "silent_s": 3.0, "last_heartbeat": None, "interval_s": 1.0, "misses": 3}
        await sup.check(1050.0)
        assert len(events) == 2 and row()["state"] == "down"

        clock.now = 1060.0
        sup.note({"type": "agent.heartbeat", "agent": "coder", "data": {"pid": pid}})
        assert (row()["state"], row()["down"]) == ("running", None)
        assert row()["last_heartbeat"] == "1970-01-01T00:17:40.000000Z"
        sup.note({"type": "agent.task_started", "agent": "coder", "data": {"task": "fix bug"}})
        assert (row()["state"], row()["task"]) == ("working", "fix bug")
        sup.note({"type": "agent.task_done", "agent": "coder", "data": {"ok": True, "duration_ms": 5}})
        sup.note({"type": "agent.learning", "agent": "coder", "data": {"active": True}})
        assert (row()["state"], row()["task"]) == ("learning", None)
        sup.note({"type": "agent.learning", "agent": "coder", "data": {"active": False}})
        clock.now = 1062.0
        assert row()["state"] == "degraded"  # two intervals late, not yet three
        await sup.check(1062.9)
        assert len(events) == 2
        await sup.check(1063.0)
        assert events[2]["data"]["reason"] == "heartbeat"
        assert events[2]["data"]["last_heartbeat"] == row()["last_heartbeat"]

        sup.note({"type": "agent.heartbeat", "agent": "outsider", "data": {"pid": 4242}})
        outsider = sup.view()[1]
        assert (outsider["name"], outsider["declared"], outsider["pid"], outsider["state"]) == \
            ("outsider", False, 4242, "running")
        clock.now = 1100.0
        assert sup.view()[1]["state"] == "down" and len(events) == 3  # shown, never reported: not supervised

    asyncio.run(scenario())


def test_a_silent_agent_that_speaks_again_is_recovered_but_one_whose_process_exited_is_not(make):
    clock = Clock(1000.0)
    beat = {"interval": "1s", "misses": 3}
    sup, events = make({"coder": {"command": SLEEPER, "heartbeat": beat},
                        "quitter": {"command": SLEEPER, "heartbeat": beat}}, clock=clock)

    def heartbeat(name: str) -> list[dict[str, Any]]:
        return sup.note({"type": "agent.heartbeat", "agent": name, "data": {"pid": pids[name]}})

    async def scenario() -> None:
        await sup.start()
        pids.update({e["agent"]: e["data"]["pid"] for e in events})
        clock.now = 1001.0
        assert heartbeat("coder") == heartbeat("quitter") == []  # up: nothing to say
        await sup.check(1004.0)
        assert {e["agent"]: (e["type"], e["data"]["reason"], e["data"]["silent_s"]) for e in events[2:]} == \
            {name: ("agent.down", "heartbeat", 3.0) for name in pids}

        os.kill(pids["quitter"], signal.SIGKILL)  # gone while it is down for its silence
        deadline = time.monotonic() + 5
        while sup.local.pid("quitter") is not None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        clock.now = 1010.0
        assert heartbeat("coder") == [{"type": "agent.recovered", "source": "engine.supervisor", "agent": "coder",
                                       "severity": "info",
                                       "data": {"reason": "heartbeat", "silent_s": 9.0, "pid": pids["coder"]}}]
        assert heartbeat("coder") == []  # once per episode
        assert heartbeat("quitter") == []  # an exited agent comes back only through a restart
        assert {row["name"]: row["state"] for row in sup.view()} == {"coder": "running", "quitter": "down"}
        await sup.check(1012.9)
        assert len(events) == 4  # coder's new episode starts from its last heartbeat
        await sup.check(1013.0)
        assert (events[-1]["type"], events[-1]["agent"], events[-1]["data"]["reason"]) == \
            ("agent.down", "coder", "heartbeat")

    pids: dict[str, int] = {}
    asyncio.run(scenario())


def test_a_second_supervisor_adopts_the_running_agents_and_can_restart_them(make, url):
    agents = {"coder": {"command": PARENT}, "analyst": {"command": SLEEPER}}
    first, first_events = make(agents)
    asyncio.run(first.start())
    pids = {e["agent"]: e["data"]["pid"] for e in first_events}
    asyncio.run(first.close())
    assert all(not gone(pid) for pid in pids.values())  # closing the engine leaves the agents running

    second, events = make(agents)

    async def scenario() -> None:
        await second.start()
        assert {e["agent"]: (e["data"]["pid"], e["data"]["adopted"]) for e in events} == \
            {name: (pid, True) for name, pid in pids.items()}
        coder = psutil.Process(pids["coder"])
        while not coder.children():
            await asyncio.sleep(0.01)
        (child,) = coder.children()
        assert second.pids() == pids and len(tagged(url)) == 3  # nothing started twice (coder has a child)
        assert all(row["adopted"] and row["state"] == "running" for row in second.view())

        outcome = await second.restart("coder")
        assert outcome["old_pid"] == pids["coder"] != outcome["pid"]
        assert {pids["coder"], child.pid} <= set(outcome["killed"])
        assert gone(pids["coder"]) and gone(child.pid) and second.pids()["coder"] == outcome["pid"]

        signalled = await second.signal("analyst", "KILL")
        assert signalled == {"agent": "analyst", "pid": pids["analyst"], "signal": "SIGKILL"}
        await check_until(second, events, 4)
        down = events[-1]
        assert down["type"] == "agent.down" and down["data"]["reason"] == "exited" and down["data"]["adopted"]
        assert "exit_code" not in down["data"] and "signal" not in down["data"]
        with pytest.raises(ProcessLookupError):
            await second.signal("analyst", "TERM")

    asyncio.run(scenario())


@pytest.mark.parametrize("forge", ["create_time", "marker"])
def test_a_pidfile_naming_another_process_is_not_adopted(make, data_dir, forge):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile = data_dir / "agents" / "coder.pid"
        pidfile.parent.mkdir()
        real = psutil.Process(stranger.pid).create_time()
        pidfile.write_text(json.dumps({"pid": stranger.pid, "marker": "agent/coder/0123456789ab",
                                       "create_time": real - 5.0 if forge == "create_time" else real}))
        sup, events = make({"coder": {"command": SLEEPER}})
        asyncio.run(sup.start())
        (started,) = events
        assert started["data"]["adopted"] is False and started["data"]["pid"] != stranger.pid
        assert stranger.poll() is None  # left alone
        assert json.loads(pidfile.read_text())["pid"] == started["data"]["pid"]
    finally:
        stranger.kill()
        stranger.wait()


def test_broken_pidfiles_and_agents_that_cannot_start(make, data_dir):
    (data_dir / "agents").mkdir()
    (data_dir / "agents" / "coder.pid").write_text("{not json")
    sup, events = make({"coder": {"command": SLEEPER}, "broken": {"command": ["/nonexistent/agent"]}})

    async def scenario() -> None:
        await sup.start()
        assert [(e["type"], e["agent"]) for e in events] == [("agent.started", "coder"), ("agent.down", "broken")]
        assert events[1]["data"]["reason"] == "start_failed" and "/nonexistent/agent" in events[1]["data"]["error"]
        await sup.check(time.time() + 3600)  # down already: no repeat; coder silent: reported
        assert [(e["type"], e["agent"], e["data"]["reason"]) for e in events[2:]] == \
            [("agent.down", "coder", "heartbeat")]
        with pytest.raises(OSError):
            await sup.restart("broken")
        assert not (data_dir / "agents" / "broken.pid").exists() and sup.known("broken") and not sup.known("ghost")

    asyncio.run(scenario())


def test_a_pidfile_the_full_disk_refused_is_written_at_a_later_check(tmp_path, url):
    disk = tmp_path / "disk"
    with small_filesystem(disk, "1m") as mounted:
        if not mounted:
            pytest.skip("needs root to mount a tmpfs")
        events: list[dict[str, Any]] = []

        async def emit(event: dict[str, Any]) -> dict[str, Any]:
            events.append(event)
            return event

        sup = Supervisor({"coder": {"command": SLEEPER}}, disk, url, emit, grace_s=0.5)
        pidfile = disk / "agents" / "coder.pid"

        async def scenario() -> None:
            await sup.start()
            first = json.loads(pidfile.read_text())["pid"]
            filler = fill(disk / "filler")
            outcome = await sup.restart("coder")  # the agent runs; its pidfile cannot be written
            assert events[-1]["type"] == "agent.started" and sup.pids() == {"coder": outcome["pid"]}
            assert json.loads(pidfile.read_text())["pid"] == first
            await sup.check(time.time())
            assert json.loads(pidfile.read_text())["pid"] == first
            filler.unlink()
            await sup.check(time.time())  # without it the next engine would start a second coder
            assert json.loads(pidfile.read_text())["pid"] == outcome["pid"] != first

        asyncio.run(scenario())
