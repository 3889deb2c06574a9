"""LocalAgents with real agent processes: start, restart (the old tree dies, runaways included), signal."""
from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from test_actions import gone, make_services, run_info

from engine.actions import get_action
from engine.agents.local import LocalAgents

AGENT = textwrap.dedent("""
    import json, os, signal, subprocess, sys, time
    signal.signal(signal.SIGUSR1, lambda *_: print("got usr1", flush=True))
    # A worker that leaves the session and is orphaned at once: only the start marker finds it.
    spawn = "import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], " \\
            "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"
    worker = int(subprocess.run([sys.executable, "-c", spawn], capture_output=True, check=True).stdout)
    print(json.dumps({"agent": os.environ["AIOS_AGENT"], "url": os.environ.get("AIOS_URL"), "extra":
                      os.environ.get("EXTRA"), "pid": os.getpid(), "worker": worker, "cwd": os.getcwd(),
                      "python": sys.executable}), flush=True)
    time.sleep(60)
""")


def started(log: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The first `count` start lines the agent wrote to its log, waiting for them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")] \
            if log.exists() else []
        if len(lines) >= count:
            return lines
        assert time.monotonic() < deadline, f"the agent never started {count} times"
        time.sleep(0.01)


@pytest.fixture
def agents(data_dir, tmp_path):
    local = LocalAgents({"coder": {"command": ["python", "-c", AGENT], "cwd": str(tmp_path), "env": {"EXTRA": "1"}},
                         "broken": {"command": ["/nonexistent/agent"]}},
                        data_dir, url="http://127.0.0.1:8765", grace_s=1.0)
    yield local
    asyncio.run(local.stop_all())


def test_restart_starts_a_new_process_and_kills_the_old_tree(agents, data_dir, tmp_path):
    log = data_dir / "agents" / "coder.log"
    services = make_services(data_dir, agents=agents)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], Any]:
        first = await agents.start("coder")
        again = await agents.start("coder")
        assert first["started"] and not again["started"] and again["pid"] == first["pid"] == agents.pid("coder")
        (before,) = started(log, 1)
        restarted = await get_action("restart_agent")(run_info(), services, {"agent": "coder"})
        return first, before, restarted

    first, before, restarted = asyncio.run(scenario())
    assert before == {"agent": "coder", "url": "http://127.0.0.1:8765", "extra": "1", "pid": first["pid"],
                      "worker": before["worker"], "cwd": str(tmp_path), "python": sys.executable}
    assert restarted.ok, restarted.error
    new_pid = restarted.detail["pid"]
    assert restarted.detail["old_pid"] == first["pid"] != new_pid == agents.pid("coder")
    assert {first["pid"], before["worker"]} <= set(restarted.detail["killed"])
    assert gone(first["pid"]) and gone(before["worker"])
    after = started(log, 2)[1]  # the log was appended to, not replaced
    assert after["pid"] == new_pid and not gone(after["worker"])
    killed = asyncio.run(agents.stop_all())
    assert {new_pid, after["worker"]} <= set(killed["coder"]) and gone(new_pid) and gone(after["worker"])
    assert agents.pid("coder") is None


def test_signal_reaches_the_agent_and_a_dead_agent_can_be_restarted(agents, data_dir):
    log = data_dir / "agents" / "coder.log"
    services = make_services(data_dir, agents=agents)
    signal_step = get_action("signal")

    async def scenario() -> None:
        pid = (await agents.start("coder"))["pid"]
        pump = agents.process("coder").pump.pid
        (first,) = started(log, 1)
        usr1 = await signal_step(run_info(), services, {"agent": "coder", "signal": "USR1"})
        assert usr1.ok and usr1.detail == {"agent": "coder", "signal": "SIGUSR1", "pid": pid}
        while "got usr1" not in log.read_text():
            await asyncio.sleep(0.01)
        assert agents.pid("coder") == pid
        term = await signal_step(run_info(), services, {"agent": "coder"})
        assert term.ok and term.detail["signal"] == "SIGTERM"
        while agents.pid("coder") is not None:
            await asyncio.sleep(0.01)
        assert gone(pid)
        dead = await signal_step(run_info(), services, {"agent": "coder", "signal": "HUP"})
        assert not dead.ok and dead.error == "cannot signal agent 'coder': agent 'coder' is not running"
        revived = await agents.restart("coder")
        assert revived["old_pid"] == pid != revived["pid"] == agents.pid("coder") and revived["started"]
        # the dead agent's runaway (and its log pump, if it had not finished writing yet)
        assert first["worker"] in revived["killed"] and set(revived["killed"]) <= {first["worker"], pump}
        assert gone(first["worker"]) and gone(pump)

    asyncio.run(scenario())
    assert agents.known("coder") and not agents.known("ghost")


def test_agents_that_cannot_start_and_agents_that_are_not_declared(agents, data_dir):
    services = make_services(data_dir, agents=agents)
    failed = asyncio.run(get_action("restart_agent")(run_info(), services, {"agent": "broken"}))
    assert not failed.ok and "cannot restart agent 'broken'" in failed.error and "/nonexistent/agent" in failed.error
    assert agents.pid("broken") is None
    with pytest.raises(KeyError, match="not declared"):
        asyncio.run(agents.start("ghost"))
    with pytest.raises(ValueError, match="unknown signal"):
        asyncio.run(agents.signal("coder", "BOOM"))
