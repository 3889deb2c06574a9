"""`aios-engine run` as users run it: a real process, real agents, real signals."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import CLI, ROOT

DEMO_AGENTS = {"coder", "analyst", "monitor", "researcher"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EngineProcess:
    def __init__(self, *args: str, cwd: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "AIOS_LOG_LEVEL": "INFO"}
        self.proc = subprocess.Popen([*CLI, "run", "--port", str(self.port), *args], cwd=cwd, env=env,
                                     stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(lambda: any('"engine started"' in line for line in self.log), 30, "engine start")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_for(self, predicate, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited ({self.proc.returncode}) waiting for {what}:\n"
                                     + "".join(self.log[-20:]))
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n" + "".join(self.log[-20:]))

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def events(self, type_: str) -> list[dict[str, Any]]:
        return self.get(f"/api/events?type={type_}&limit=1000")["events"]

    def agent_pids(self) -> dict[str, int]:
        return {a["name"]: a["pid"] for a in self.get("/api/agents")["agents"] if a.get("declared") and a.get("pid")}


def demo_workers(url: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "engine.demo.worker" in " ".join(proc.info["cmdline"] or ()) and proc.environ().get("AIOS_URL") == url:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture
def demo(tmp_path: Path):
    """The shipped aios.yaml and rules, on a fresh data dir; every process is cleaned up afterwards."""
    engines: list[EngineProcess] = []

    def start(port: int | None = None) -> EngineProcess:
        engine = EngineProcess("--config", str(ROOT / "aios.yaml"), "--data", str(tmp_path / "data"),
                               "--rules", str(ROOT / "rules"), cwd=tmp_path, port=port)
        engines.append(engine)
        return engine

    yield start
    urls = {e.url for e in engines}
    for engine in engines:
        if engine.proc.poll() is None:
            engine.proc.kill()
            engine.proc.wait()
    for url in urls:
        for worker in demo_workers(url):
            worker.kill()


def test_a_killed_demo_agent_comes_back_through_the_shipped_playbook(demo):
    engine = demo()
    pids = engine.wait_for(lambda: (p := engine.agent_pids()) and set(p) == DEMO_AGENTS and p, 30, "4 agents")
    os.kill(pids["coder"], signal.SIGKILL)
    down = engine.wait_for(lambda: [e for e in engine.events("agent.down") if e["agent"] == "coder"], 15, "down")
    assert down[0]["data"]["signal"] == "SIGKILL"
    done = engine.wait_for(lambda: [e for e in engine.events("reactor.succeeded")
                                    if e["data"]["playbook"] == "restart-killed-agent"], 45, "restart")
    assert done[0]["agent"] == "coder" and done[0]["data"]["cause"] == down[0]["id"]
    new_pid = engine.agent_pids()["coder"]
    assert new_pid != pids["coder"] and psutil.pid_exists(new_pid)


def test_an_engine_killed_and_restarted_adopts_the_running_agents(demo):
    first = demo()
    pids = first.wait_for(lambda: (p := first.agent_pids()) and set(p) == DEMO_AGENTS and p, 30, "4 agents")
    first.proc.kill()
    first.proc.wait()
    assert all(psutil.pid_exists(pid) for pid in pids.values())  # agents outlive the engine

    restarted = demo(port=first.port)  # agents post to the URL they were started with
    adopted = restarted.wait_for(lambda: (p := restarted.agent_pids()) and set(p) == DEMO_AGENTS and p, 30,
                                 "adoption")
    assert adopted == pids
    view = {a["name"]: a for a in restarted.get("/api/agents")["agents"]}
    assert all(view[name]["adopted"] for name in DEMO_AGENTS)
    assert len(demo_workers(first.url)) == 4  # nothing started twice
    started = restarted.events("agent.started")
    assert sum(1 for e in started if e["data"].get("adopted")) == 4


def test_sigterm_lets_a_running_run_finish_then_exits_0(tmp_path: Path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "slow.yaml").write_text(
        "id: slow-fix\non: agent.error\nsteps:\n"
        "  - {id: work, action: shell, with: {argv: [sleep, '1.5']}}\n")
    (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\n")
    engine = EngineProcess("--config", str(tmp_path / "aios.yaml"), cwd=tmp_path)
    engine.post("/api/events", {"type": "agent.error", "agent": "coder"})
    started = engine.wait_for(lambda: engine.events("reactor.started"), 10, "run start")
    engine.proc.send_signal(signal.SIGTERM)
    assert engine.proc.wait(timeout=30) == 0
    run_id = started[0]["data"]["run_id"]
    record = json.loads((tmp_path / "data" / "runs" / run_id / "record.json").read_text())
    assert record["status"] == "succeeded"
    assert any('"engine stopped"' in line for line in engine.log)


def test_run_refuses_to_bind_off_loopback_without_a_token(tmp_path: Path, monkeypatch):
    from conftest import run_cli

    monkeypatch.delenv("AIOS_TOKEN", raising=False)
    (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\n")
    result = run_cli("run", "--host", "0.0.0.0", "--port", str(free_port()), "--config", str(tmp_path / "aios.yaml"),
                     cwd=tmp_path)
    assert result.returncode == 1
    assert "binding to 0.0.0.0 needs a token" in result.stderr and "Traceback" not in result.stderr
